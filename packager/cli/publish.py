"""OCI registry commands: `edgepack publish BUNDLE REF`, and `push --from REF` (the devices pull)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .output import echo, fail, guarded, print_json

REF_HELP = "REGISTRY/REPO:TAG, e.g. registry.example.com:5000/cams/detector:v3"


def pull_options(bundle: Optional[Path], ref: Optional[str], plain_http: bool,
                 ca_file: Optional[Path], credentials: Optional[Path]):
    """`push --from REF`'s options (one line and exit 2 for BUNDLE and --from together, or neither)."""
    from ..fleet import PullOptions

    if bundle is not None:
        fail("push takes a BUNDLE or --from REF, not both (fix: drop one)")
    if not ref:
        fail("push needs a BUNDLE folder or --from REGISTRY/REPO:TAG (fix: pass one)")
    return PullOptions(plain_http=plain_http, ca_file=str(ca_file) if ca_file else None,
                       credentials=str(credentials) if credentials else None)


def register(app: typer.Typer) -> None:
    @app.command()
    def publish(
        bundle: Path = typer.Argument(..., help="bundle folder (or .tar.gz) from `edgepack build`"),
        ref: str = typer.Argument(..., help=REF_HELP),
        plain_http: bool = typer.Option(False, "--plain-http",
                                        help="the registry speaks HTTP, not TLS (as oras)"),
        ca_file: Optional[Path] = typer.Option(None, "--ca-file",
                                               help="CA certificates to trust for the registry"),
        credentials: Optional[Path] = typer.Option(None, "--credentials",
                                                   help="Docker-style config.json (default "
                                                        "~/.docker/config.json)"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable result on stdout"),
    ):
        """Publish a bundle to an OCI registry (one layer per file; docs/SCALE.md)."""
        from ..oci import publish as publish_bundle

        res = guarded(publish_bundle, str(bundle), ref, plain_http,
                      str(ca_file) if ca_file else None, str(credentials) if credentials else None)
        d = res.to_dict()
        if as_json:
            print_json(d)
            return
        echo(f"published {res.ref}")
        echo(f"digest     {res.digest}")
        echo(f"release    {res.release_id}")
        echo(f"layers     {res.layers} ({res.uploaded} uploaded, {res.uploaded_bytes} bytes; "
             f"{res.existing} already there) in {res.seconds:.1f}s")
        echo(f"devices:   edgepack push --from {d['pinned_ref']} -i fleet.yaml")
