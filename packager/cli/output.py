"""The one place the CLI writes to the terminal: error lines, tables, JSON, and the guard that
maps every exception to one line and an exit code (httpx-style: mapped once, at the boundary).

Library code never prints; commands call these helpers.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback

import typer

from .. import quiet as quiet_mod
from ..errors import EXIT_BAD_INPUT, EdgepackError, short

STATE = {"debug": False, "quiet": False}

# Third-party loggers that speak only under --debug (edgepack's own warnings stay). The root
# handler's filter (packager/quiet.py) already holds back every record that is not edgepack's;
# setting these levels also saves formatting records nobody will see.
NOISY_LOGGERS = ("onnxruntime", "onnx", "paramiko", "torch", "tensorflow", "absl", "h5py", "jax",
                 "onnx2tf", "ai_edge_quantizer", "litert_torch", "transformers", "py.warnings")


def setup_logging(debug: bool, quiet: bool) -> None:
    """edgepack's records on stderr ("edgepack: ..."); third-party records, Python warnings and
    (see guarded) writes to fds 1/2 only with --debug ("edgepack[debug] <logger>: ...")."""
    STATE["debug"], STATE["quiet"] = debug, quiet
    level = logging.DEBUG if debug else (logging.ERROR if quiet else logging.INFO)
    quiet_mod.install(debug, level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.ERROR)


def err(text: str) -> None:
    typer.echo(text, err=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """One error line and the exit code (for usage errors found by the CLI itself)."""
    err(f"edgepack: {message}")
    raise typer.Exit(code)


def guarded(fn, *args, capture: bool = False, **kwargs):
    """Run a library call; EdgepackError -> one line + its exit code; anything else -> exit 2.

    While it runs, whatever a library prints on Python's stdout goes to stderr: edgepack's stdout
    carries only its own output (the --json contract). capture: the call's writes to fds 1 and 2
    (C++ libraries, progress bars, child processes) go to the debug log instead of the terminal;
    with --debug they flow to stderr as they come."""
    hold = quiet_mod.third_party_output(debug=STATE["debug"]) if capture else contextlib.nullcontext()
    try:
        with hold, contextlib.redirect_stdout(sys.stderr):
            return fn(*args, **kwargs)
    except EdgepackError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        err(f"edgepack: {exc.one_line()}")
        STATE["error"] = {"error": exc.one_line(), "exit_code": exc.exit_code, "kind": type(exc).__name__}
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        err("edgepack: interrupted")
        STATE["error"] = {"error": "interrupted", "exit_code": 130, "kind": "interrupted"}
        raise typer.Exit(130)
    except typer.Exit:
        raise
    except Exception as exc:  # a bug or an unexpected library failure: still one line
        if STATE["debug"]:
            traceback.print_exc()
        line = (f"unexpected {type(exc).__name__}: {short(exc)} (fix: run again with --debug for the "
                "traceback and report it)")
        err(f"edgepack: {line}")
        STATE["error"] = {"error": line, "exit_code": EXIT_BAD_INPUT, "kind": "unexpected"}
        raise typer.Exit(EXIT_BAD_INPUT)


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*header).rstrip()]
    lines += [fmt.format(*[str(c) for c in r]).rstrip() for r in rows]
    return "\n".join(lines)


def echo(text: str = "") -> None:
    typer.echo(text)
