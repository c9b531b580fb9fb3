"""`edgepack profiles list | show | validate`."""
from __future__ import annotations

import typer

from .output import echo, guarded, print_json, table

profiles_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="List, show and validate device profiles.")


@profiles_app.command("list")
def profiles_list(as_json: bool = typer.Option(False, "--json", help="machine-readable output")):
    """Table of shipped profiles: name, format, precision, runtime, description."""
    from .. import profiles

    profs = guarded(profiles.list_profiles)
    if as_json:
        print_json([{"name": p.name, "format": p.format, "precision": p.precision, "runtime": p.runtime_name,
                     "description": p.description} for p in profs])
        return
    rows = [[p.name, p.format, p.precision, p.runtime_name, p.description] for p in profs]
    echo(table(rows, ["NAME", "FORMAT", "PRECISION", "RUNTIME", "DESCRIPTION"]))


@profiles_app.command("show")
def profiles_show(name: str = typer.Argument(..., help="profile name or YAML file"),
                  as_json: bool = typer.Option(False, "--json")):
    """The resolved profile (after `extends`)."""
    import yaml

    from .. import profiles

    prof = guarded(profiles.load, name)
    if as_json:
        print_json(prof.to_dict())
    else:
        echo(f"# {prof.name} (from {prof.source}, resolved)")
        echo(yaml.safe_dump(prof.to_dict(), sort_keys=False).rstrip())


@profiles_app.command("validate")
def profiles_validate(file: str = typer.Argument(..., help="YAML profile file")):
    """Check a profile file: exit 0 if valid, 2 with every problem otherwise."""
    from .. import profiles

    prof = guarded(profiles.load, file)
    echo(f"{file}: valid profile '{prof.name}' ({prof.format} {prof.precision})")


def register(app: typer.Typer) -> None:
    app.add_typer(profiles_app, name="profiles")
