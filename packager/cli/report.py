"""`edgepack report`: the fleet in one self-contained HTML page (or --json), from stored reports."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .output import echo, guarded, print_json


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        reports: Path = typer.Option(Path("edgepack-reports"), "--reports",
                                     help="the folder `edgepack push --reports` wrote"),
        inventory: Optional[Path] = typer.Option(None, "--inventory", "-i",
                                                 help="Ansible YAML inventory: every host and "
                                                      "its groups (the page filters by group)"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write"),
        as_json: bool = typer.Option(False, "--json", help="the summary as JSON on stdout"),
    ):
        """The fleet at a glance: per device its release, verdict, latency, parity, memory,
        runtime; failed devices first; latency per release. No device is contacted."""
        from .. import report as rep
        from ..errors import UsageError
        from ..fleet import load_inventory

        if out is None and not as_json:
            guarded(_raise, UsageError("say where the page goes: --out fleet.html",
                                       "or pass --json for the summary"))
        inv = guarded(load_inventory, str(inventory)) if inventory else None
        summary = guarded(rep.summarize, str(reports), inv)
        path = guarded(rep.write, summary, str(out)) if out else None
        if as_json:
            print_json(summary if path is None else {**summary, "html": path})
            return
        counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items())
        echo(f"report   {path}  ({len(summary['devices'])} devices: {counts})")


def _raise(exc):
    raise exc
