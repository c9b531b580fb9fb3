"""`edgepack diagnose`: where a converted or quantized model leaves the original, tensor by tensor."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .output import echo, err, guarded, print_json, table

ROWS = 25   # the table on the terminal: the first diverging tensor, the largest drops, the outputs


def diagnose(
    source: str = typer.Argument(..., help="a model SOURCE (as for build) or a bundle folder"),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="profile (not needed for a bundle)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="override the profile's format"),
    precision: Optional[str] = typer.Option(None, "--precision",
                                            help="override: fp32, fp16, int8, int8-dynamic, int8-static"),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help="NAME=AxBxC (repeatable)"),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help=".npz of real sample inputs, keyed by input name"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help=".npz of calibration inputs for static int8"),
    all_rows: bool = typer.Option(False, "--all", help="print every tensor, not only the first diverging and the worst"),
    as_json: bool = typer.Option(False, "--json", help="print the whole table as JSON on stdout"),
):
    """Show where a conversion or int8 leaves the float model: the first diverging tensor (node, op,
    SQNR, cosine), the largest drops, the recipes tried and every output's parity."""
    from .. import diagnose as diag
    from ..pipeline import BuildOptions

    guarded(diag.check_source_args, source, profile)
    if diag.is_bundle(source) and not profile:
        result = guarded(diag.diagnose_bundle, Path(source), capture=True)
    else:
        opts = BuildOptions(source=source, profile=profile, format=fmt, precision=precision,
                            input_shapes=list(input_shape or []), inputs=inputs, calibration=calibration)
        result = guarded(diag.diagnose, opts, capture=True)
    if as_json:
        print_json(result)
    else:
        echo(render(result, all_rows))
    if not result.get("parity_passed"):
        err(f"edgepack: {result.get('error') or 'host parity failed (see the table)'}")
        raise typer.Exit(1)


def render(r: dict, all_rows: bool = False) -> str:
    from .build import parity_table, recipe_lines

    lines = [f"source   {r.get('source')}  profile {r.get('profile')}"
             + (f"  bundle {r['bundle']}" if r.get("bundle") else "")]
    lines += recipe_lines(r)
    d = r.get("diagnosis") or {}
    if not d.get("covered"):
        lines.append(f"tensors  not compared: {d.get('note', 'no per-tensor comparison')}")
    else:
        first = d.get("first_diverging")
        lines.append(f"tensors  {d['tensors_compared']} compared ({d['kind']}, {d['samples']} samples, "
                     f"{d['seconds']:.1f} s); floor {d.get('floor_db', 0):g} dB")
        if first:
            from ..quant.tensors import describe

            lines.append(f"first    {describe(first)} ({first.get('why', '')})")
        rows = d.get("rows") or []
        keep = rows if all_rows else _interesting(rows, first)
        lines.append(table([[_short(r_["node"]), r_["op"], "=" if r_["tensor"] == r_["node"] else _short(r_["tensor"]),
                             f"{r_['sqnr_db']:g}", f"{r_['effective_sqnr_db']:g}",
                             "-" if r_["drop_db"] is None else f"{r_['drop_db']:g}", f"{r_['cosine']:.5f}"]
                            for r_ in keep],
                           ["NODE", "OP", "TENSOR", "SQNR_DB", "WORST_DB", "DROP_DB", "COSINE"]))
        if not all_rows and len(rows) > len(keep):
            lines.append(f"         ({len(rows) - len(keep)} more tensors: --all or --json)")
    if r.get("host_parity"):
        lines.append("outputs  (original vs converted):")
        lines.append(parity_table(r["host_parity"]))
    return "\n".join(lines)


def _short(name: str, width: int = 48) -> str:
    """Converters write very long tensor names (litert-torch: the module path, ';'-joined): keep the end."""
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _interesting(rows: list[dict], first: dict | None) -> list[dict]:
    """The first diverging tensor, the largest drops and the outputs' producers, in graph order."""
    drops = sorted((r for r in rows if r["drop_db"]), key=lambda r: -r["drop_db"])[:ROWS - 5]
    names = {r["tensor"] for r in drops} | {r["tensor"] for r in rows[-3:]}
    if first:
        names.add(first["tensor"])
    return [r for r in rows if r["tensor"] in names]


def register(app: typer.Typer) -> None:
    app.command()(diagnose)
