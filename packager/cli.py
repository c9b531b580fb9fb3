"""edgepack command line. Parses, calls one library function, maps errors to exit codes.

Heavy imports (torch, onnx, onnxruntime, paramiko) happen inside the commands, so
`edgepack --help` stays instant.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional

import typer

from .errors import EXIT_BAD_INPUT, EdgepackError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Convert, quantize, validate and ship ML models to edge devices.")
profiles_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="List, show and validate device profiles.")
app.add_typer(profiles_app, name="profiles")

STATE = {"debug": False}


def _err(text: str) -> None:
    typer.echo(text, err=True)


def run_guarded(fn, *args, **kwargs):
    """Run a library call; EdgepackError -> one line + its exit code; anything else -> exit 2."""
    try:
        return fn(*args, **kwargs)
    except EdgepackError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        _err(f"edgepack: {exc.one_line()}")
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("edgepack: interrupted")
        raise typer.Exit(130)
    except typer.Exit:
        raise
    except Exception as exc:  # a bug or an unexpected library failure: still one line
        if STATE["debug"]:
            traceback.print_exc()
        text = " ".join(str(exc).split())[:300]
        _err(f"edgepack: unexpected {type(exc).__name__}: {text} (fix: run again with --debug for the "
             "traceback and report it)")
        raise typer.Exit(EXIT_BAD_INPUT)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks and debug logs"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors on stderr")):
    STATE["debug"] = debug
    level = logging.DEBUG if debug else (logging.ERROR if quiet else logging.INFO)
    logging.basicConfig(level=level, format="edgepack: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("onnxruntime", "onnx", "paramiko", "torch"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*header).rstrip()]
    lines += [fmt.format(*[str(c) for c in r]).rstrip() for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- profiles

@profiles_app.command("list")
def profiles_list(as_json: bool = typer.Option(False, "--json", help="machine-readable output")):
    """Table of shipped profiles: name, format, precision, runtime, description."""
    from . import profiles

    profs = run_guarded(profiles.list_profiles)
    if as_json:
        _print_json([{"name": p.name, "format": p.format, "precision": p.precision, "runtime": p.runtime,
                      "description": p.data.get("description", "")} for p in profs])
        return
    rows = [[p.name, p.format, p.precision, p.runtime, p.data.get("description", "")] for p in profs]
    typer.echo(_table(rows, ["NAME", "FORMAT", "PRECISION", "RUNTIME", "DESCRIPTION"]))


@profiles_app.command("show")
def profiles_show(name: str = typer.Argument(..., help="profile name or YAML file"),
                  as_json: bool = typer.Option(False, "--json")):
    """The resolved profile (after `extends`)."""
    import yaml

    from . import profiles

    prof = run_guarded(profiles.load, name)
    if as_json:
        _print_json(prof.data)
    else:
        typer.echo(f"# {prof.name} (from {prof.source}, resolved)")
        typer.echo(yaml.safe_dump(prof.data, sort_keys=False).rstrip())


@profiles_app.command("validate")
def profiles_validate(file: str = typer.Argument(..., help="YAML profile file")):
    """Check a profile file: exit 0 if valid, 2 with the problem otherwise."""
    from . import profiles

    prof = run_guarded(profiles.load, file)
    typer.echo(f"{file}: valid profile '{prof.name}' ({prof.format} {prof.precision})")


# ----------------------------------------------------------------------------- build

@app.command()
def build(
    source: str = typer.Argument(..., help="model.onnx, model.pt (TorchScript), model.pt2 (ExportedProgram), "
                                 "model.keras, a SavedModel folder, path/to/file.py:factory or package.module:factory"),
    profile: str = typer.Option(..., "--profile", "-p", help="profile name (edgepack profiles list) or YAML file"),
    out: Path = typer.Option(Path("dist"), "--out", "-o", help="folder to write the bundle into"),
    fmt: Optional[str] = typer.Option(None, "--format", help="override the profile's format: onnx, tflite, torchscript"),
    precision: Optional[str] = typer.Option(None, "--precision",
                                            help="override: fp32, fp16, int8, int8-dynamic, int8-static"),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help="NAME=AxBxC (repeatable)"),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help=".npz of real sample inputs, keyed by input name"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help=".npz of calibration inputs for static int8"),
    name: Optional[str] = typer.Option(None, "--name", help="bundle name (default: from the source)"),
    version: Optional[str] = typer.Option(None, "--version", help="bundle version (default: source hash prefix)"),
    budget: Optional[float] = typer.Option(None, "--latency-budget-ms", help="fail self-tests above this latency"),
    torchscript_mode: Optional[str] = typer.Option(
        None, "--torchscript-mode",
        help="TorchScript targets: auto (trace, checked on perturbed inputs; script if unsafe), trace, script"),
    archive: bool = typer.Option(False, "--archive", help="also write BUNDLE.tar.gz"),
    sign_key: Optional[Path] = typer.Option(None, "--sign-key", help="sign the manifest with this SSH private key"),
    force: bool = typer.Option(False, "--force", help="replace an existing bundle of the same name"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
):
    """Load a model, convert and quantize it for a profile, check parity, write a bundle."""
    from .pipeline import BuildOptions
    from .pipeline import build as do_build
    from .profiles import FORMATS

    if fmt is not None and fmt not in FORMATS:
        _err(f"edgepack: unknown --format '{fmt}' (fix: use one of {', '.join(FORMATS)})")
        raise typer.Exit(EXIT_BAD_INPUT)
    opts = BuildOptions(source=source, profile=profile, out=out, format=fmt, precision=precision,
                        input_shapes=list(input_shape or []), inputs=inputs, calibration=calibration,
                        name=name, version=version, budget_ms=budget, force=force, sign_key=sign_key,
                        torchscript_mode=torchscript_mode,
                        command=" ".join(["edgepack"] + sys.argv[1:]))
    result = run_guarded(do_build, opts)  # signs inside the build, before the bundle appears
    archive_path = None
    if archive:
        from .bundle import make_archive
        archive_path = run_guarded(make_archive, result.bundle)
    for w in result.warnings:
        _err(f"edgepack: warning: {w}")
    m = result.manifest
    if as_json:
        _print_json({"bundle": str(result.bundle), "archive": str(archive_path) if archive_path else None,
                     "warnings": result.warnings, "manifest": m})
        return
    rows = []
    for o in m["host_parity"]["outputs"]:
        rows.append([o["name"], "PASS" if o["passed"] else "FAIL", f"{o.get('max_abs', float('nan')):.3g}",
                     f"{o.get('cosine', float('nan')):.6f}",
                     f"{o['top1_agreement']:.3f}" if "top1_agreement" in o else "-"])
    typer.echo(f"bundle   {result.bundle}")
    if archive_path:
        typer.echo(f"archive  {archive_path}")
    quant = m.get("quantization") or {}
    extra = f" ({quant.get('mode')}, calibration {quant.get('calibration')})" if m["precision"] == "int8" else ""
    typer.echo(f"model    {m['format']} {m['precision']}{extra}, {m['model']['size']} bytes, profile {m['profile']['name']}")
    typer.echo("host parity (original vs converted, %d samples):" % m["vectors"]["samples"])
    typer.echo(_table(rows, ["OUTPUT", "RESULT", "MAX_ABS", "COSINE", "TOP1"]))
    typer.echo(f"next:    edgepack selftest {result.bundle}")


# ----------------------------------------------------------------------------- selftest

@app.command()
def selftest(
    bundle: Path = typer.Argument(..., help="bundle folder or .tar.gz"),
    python: Optional[str] = typer.Option(None, "--python", help="interpreter to run the agent with (default: this one)"),
    runs: Optional[int] = typer.Option(None, "--runs", help="override the probe's minimum run count"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="override the probe's minimum time"),
    as_json: bool = typer.Option(False, "--json", help="print the report (JSON) on stdout, nothing else"),
):
    """Run the bundle's own agent in a separate process, as a device would."""
    from .selftest import run_local

    report, code = run_guarded(run_local, bundle, python=python, runs=runs, seconds=seconds)
    if as_json:
        _print_json(report)
    else:
        typer.echo(render_report(report))
    if code != 0:
        _err(f"edgepack: {verdict_line(bundle, report)}")
    raise typer.Exit(code)


def verdict_line(bundle, report: dict) -> str:
    """One stderr line for a self-test that did not pass: what, why and the fix."""
    v = report.get("verdict") or {}
    reasons = list(v.get("reasons") or ["no reason given"])
    what, _, fix = " ".join(reasons[0].split()).partition(" (fix: ")
    more = f" (+{len(reasons) - 1} more, see the report)" if len(reasons) > 1 else ""
    fix = fix[:-1] if fix.endswith(")") else fix
    if not fix:
        fix = ("rebuild or copy the bundle again" if v.get("status") == "unusable" else
               "see the report; loosen the profile's thresholds or budget only if the result is acceptable")
    return f"self-test of {bundle} {str(v.get('status', 'fail')).upper()}: {what}{more} (fix: {fix})"


def render_report(r: dict) -> str:
    v = r["verdict"]
    b = r.get("bundle") or {}
    lines = [f"bundle   {b.get('name', '?')}-{b.get('version', '?')}-{b.get('profile', '?')}  "
             f"(id {str(r.get('bundle_id'))[:12]})"]
    rt = r.get("runtime")
    dev = r.get("device") or {}
    if rt:
        lines.append(f"runtime  {rt['name']} {rt['version']}  provider {rt.get('provider')}  threads {rt.get('threads')}"
                     f"  on {dev.get('hostname')} ({dev.get('arch')}, Python {dev.get('python')})")
        for fb in rt.get("fallbacks") or []:
            lines.append(f"         fallback: {fb}")
    rows = []
    integ = r.get("integrity")
    if integ:
        rows.append(["integrity", "PASS" if integ["passed"] else "FAIL",
                     f"{integ['files_checked']}/{integ['files_listed']} files" if integ["passed"]
                     else "; ".join(integ["problems"][:3])])
    par = r.get("parity")
    if par:
        for o in par["outputs"]:
            detail = (f"max_abs {o['max_abs']:.3g}  cosine {o['cosine']:.6f}" if "cosine" in o
                      else "; ".join(o["failures"]))
            if "top1_agreement" in o:
                detail += f"  top1 {o['top1_agreement']:.3f}"
            rows.append([f"parity {o['name']}", "PASS" if o["passed"] else "FAIL", detail])
    lat = r.get("latency")
    if lat:
        budget = lat.get("budget") or {}
        res = "-" if budget.get("passed") is None else ("PASS" if budget["passed"] else "FAIL")
        detail = (f"p50 {lat['p50_ms']:.3f} ms  p90 {lat['p90_ms']:.3f} ms  mean {lat['mean_ms']:.3f} ms  "
                  f"({lat['runs']} runs; load {lat['load_ms']:.1f} ms, first {lat['first_run_ms']:.2f} ms)")
        if budget.get("budget_ms") is not None:
            detail += f"  budget {budget['metric']} <= {budget['budget_ms']} ms"
        rows.append(["latency", res, detail])
    if r.get("peak_rss_bytes"):
        rows.append(["peak RSS", "-", f"{r['peak_rss_bytes'] / 2**20:.1f} MiB"])
    rows.append(["verdict", v["status"].upper(), "; ".join(v["reasons"])])
    lines.append(_table(rows, ["CHECK", "RESULT", "DETAIL"]))
    for note in r.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _register_fleet() -> None:
    try:
        from . import cli_fleet
    except ImportError:
        return
    cli_fleet.register(app)


_register_fleet()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
