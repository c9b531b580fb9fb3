"""`edgepack build`: load, convert, quantize, check parity, write a bundle."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import live
from .output import echo, err, fail, guarded, print_json, table


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
    with live.build_display(as_json):  # the step that runs, on a terminal
        result = guarded(do_build, opts, capture=True)  # signs inside the build; third-party output -> --debug log
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
    rows = []
    for o in m["host_parity"]["outputs"]:
        rows.append([o["name"], "PASS" if o["passed"] else "FAIL", f"{o.get('max_abs', float('nan')):.3g}",
                     f"{o.get('cosine', float('nan')):.6f}",
                     f"{o['top1_agreement']:.3f}" if "top1_agreement" in o else "-"])
    echo(f"bundle   {result.bundle}")
    if archive_path:
        echo(f"archive  {archive_path}")
    quant = m.get("quantization") or {}
    extra = f" ({quant.get('mode')}, calibration {quant.get('calibration')})" if m["precision"] == "int8" else ""
    echo(f"model    {m['format']} {m['precision']}{extra}, {m['model']['size']} bytes, profile {m['profile']['name']}")
    echo("host parity (original vs converted, %d samples):" % m["vectors"]["samples"])
    echo(table(rows, ["OUTPUT", "RESULT", "MAX_ABS", "COSINE", "TOP1"]))
    echo(f"next:    edgepack selftest {result.bundle}")


def register(app: typer.Typer) -> None:
    app.command()(build)
