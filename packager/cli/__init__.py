"""edgepack command line: the typer app, split by command group (one module each).

Each command parses its options, calls one library function through `output.guarded` (which maps
errors to one line and an exit code) and renders the result with `output`. Heavy imports (torch,
onnx, onnxruntime, paramiko) happen inside the commands, so `edgepack --help` stays instant.
"""
from __future__ import annotations

import typer

from . import build, diagnose, export, fleet, output, profiles, publish, report, selftest, tune

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Convert, quantize, validate and ship ML models to edge devices.")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks and third-party logs"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors on stderr")):
    output.setup_logging(debug, quiet)


for _group in (profiles, build, diagnose, selftest, tune, fleet, report, publish, export):
    _group.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
