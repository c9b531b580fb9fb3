"""`edgepack build`: load, convert, quantize, check parity, write a bundle."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import live
from .output import STATE, echo, err, fail, guarded, print_json, table


def build(
    source: str = typer.Argument(..., help="model.onnx, model.pt (TorchScript), model.pt2 (ExportedProgram), "
                                 "model.keras, a SavedModel folder, path/to/file.py:factory or package.module:factory"),
    profile: str = typer.Option(..., "--profile", "-p", help="profile name (edgepack profiles list) or YAML file"),
    out: Path = typer.Option(Path("dist"), "--out", "-o", help="folder to write the bundle into"),
    fmt: Optional[str] = typer.Option(None, "--format", help="override the profile's format (edgepack profiles list)"),
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
    from ..pipeline import BuildOptions
    from .. import formats
    from ..pipeline import build as do_build

    if fmt is not None and fmt not in formats.names():
        fail(f"unknown --format '{fmt}' (fix: use one of {', '.join(formats.names())})")
    opts = BuildOptions(source=source, profile=profile, out=out, format=fmt, precision=precision,
                        input_shapes=list(input_shape or []), inputs=inputs, calibration=calibration,
                        name=name, version=version, budget_ms=budget, force=force, sign_key=sign_key,
                        torchscript_mode=torchscript_mode,
                        command=" ".join(["edgepack"] + sys.argv[1:]))
    failure: dict = {}
    try:
        with live.build_display(as_json):  # the step that runs, on a terminal
            # signs inside the build; third-party output -> --debug log
            result = guarded(_build, do_build, opts, failure, capture=True)
    except typer.Exit:
        if as_json:   # parity: every output, the recipes tried, the per-tensor table; else the one line
            print_json(failure or STATE.get("error") or {"error": "failed"})
        raise
    archive_path = None
    if archive:
        from ..bundle import make_archive
        archive_path = guarded(make_archive, result.bundle)
    for w in result.warnings:
        err(f"edgepack: warning: {w}")
    m = result.manifest
    if as_json:
        print_json({"bundle": str(result.bundle), "archive": str(archive_path) if archive_path else None,
                    "warnings": result.warnings, "manifest": m})
        return
    echo(f"bundle   {result.bundle}")
    if archive_path:
        echo(f"archive  {archive_path}")
    quant = m.get("quantization") or {}
    extra = (f" ({quant.get('recipe_label') or quant.get('mode')}, calibration {quant.get('calibration')})"
             if m["precision"] == "int8" else "")
    echo(f"model    {m['format']} {m['precision']}{extra}, {m['model']['size']} bytes, profile {m['profile']['name']}")
    for line in recipe_lines(quant):
        echo(line)
    echo("host parity (original vs converted, %d samples):" % m["vectors"]["samples"])
    echo(parity_table(m["host_parity"]))
    echo(f"next:    edgepack selftest {result.bundle}")


def _build(do_build, opts, failure: dict):
    """The build; on a parity failure, its details (every output, the recipes tried, the per-tensor
    table) are kept in `failure` for --json, printed once the capture of third-party output ended."""
    from ..parity import ParityFailed

    try:
        return do_build(opts)
    except ParityFailed as exc:
        failure.update({"error": exc.one_line(), "exit_code": exc.exit_code, **exc.details})
        raise


def parity_table(parity: dict) -> str:
    rows = []
    for o in parity["outputs"]:
        ws = o.get("worst_slice")
        rows.append([o["name"], "PASS" if o["passed"] else "FAIL", f"{o.get('max_abs', float('nan')):.3g}",
                     f"{o.get('cosine', float('nan')):.6f}",
                     _worst_sample(o.get("worst_sample")),
                     f"{ws['cosine']:.6f} (axis {ws['axis']} #{ws['index']})" if ws else "-",
                     f"{o['top1_agreement']:.3f}" if "top1_agreement" in o else "-"])
    return table(rows, ["OUTPUT", "RESULT", "MAX_ABS", "COSINE", "WORST SAMPLE", "WORST SLICE", "TOP1"])


def _worst_sample(ws: dict | None) -> str:
    if not ws:
        return "-"
    return f"|diff| {ws['max_abs']:.3g}" if "cosine" not in ws else f"{ws['cosine']:.6f}"


def recipe_lines(quant: dict) -> list[str]:
    """The recipes measured (int8), the nodes left in float and what they cost."""
    attempts = quant.get("attempts") or []
    lines = []
    if len(attempts) > 1 or quant.get("float_nodes"):
        lines.append(f"recipes  {len(attempts)} measured in {quant.get('search_seconds') or 0:.1f} s:")
        rows = []
        for i, a in enumerate(attempts, 1):
            result = "skipped" if "skipped" in a else "pass" if a.get("passed") else "fail"
            rows.append([str(i), a.get("label", "?"), result,
                         f"{a['score']:.5f}" if "score" in a else "-", f"{a.get('seconds', 0):.1f}",
                         a.get("skipped") or a.get("error") or ""])
        lines.append(table(rows, ["#", "RECIPE", "RESULT", "SCORE", "SECONDS", "NOTE"]))
    nodes = quant.get("float_nodes") or []
    if nodes:
        cost = quant.get("fallback_cost") or {}
        what = (f": {cost['with_fallbacks_ms']:.3f} vs {cost['full_int8_ms']:.3f} ms "
                f"({(cost['latency_ratio'] - 1) * 100:+.0f} %), {cost['extra_bytes'] / 1024:+.0f} KiB vs full int8"
                if cost else "")
        lines.append(f"float    {len(nodes)} node{'s' if len(nodes) != 1 else ''} left in float{what}: "
                     + ", ".join(nodes))
    return lines


def register(app: typer.Typer) -> None:
    app.command()(build)
