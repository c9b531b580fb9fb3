"""`edgepack export ansible`: hand the gated rollout to Ansible (docs/SCALE.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .output import echo, guarded, print_json

export_app = typer.Typer(no_args_is_help=True, help="Hand the rollout to another engine.")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


@export_app.command("ansible")
def ansible(
    bundle: Path = typer.Argument(..., help="bundle folder (or .tar.gz) from `edgepack build`"),
    inventory: Path = typer.Option(..., "--inventory", "-i", help="Ansible YAML inventory "
                                   "(the one the playbook will run with)"),
    out: Path = typer.Option(Path("deploy"), "--out", "-o", help="folder to write"),
    limit: Optional[str] = typer.Option(None, "--limit", "-l", help="check only these hosts"),
    canary: int = typer.Option(0, "--canary", help="the first N hosts go first; stop if any fails"),
    max_fail: Optional[float] = typer.Option(None, "--max-fail", help="stop once more than PCT "
                                             "percent of the hosts failed"),
    selftest_timeout: float = typer.Option(600.0, "--selftest-timeout", help="seconds"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out folder"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable result on stdout"),
):
    """Write a self-contained Ansible playbook doing push's staged, verified, gated activation."""
    from ..export import export_ansible
    from ..fleet import load_inventory

    inv = guarded(load_inventory, str(inventory))
    hosts = guarded(inv.select, limit)
    res = guarded(export_ansible, str(bundle), hosts, str(out), canary, max_fail,
                  selftest_timeout, force, str(inventory))
    if as_json:
        print_json(res.to_dict())
        return
    echo(f"wrote {res.out}/ (site.yml, tasks/, vars/, bundle/ with {res.files} files) for "
         f"release {res.release_id[:12]}, {res.hosts} host(s) in the inventory")
    echo(f"run: {res.command}")
