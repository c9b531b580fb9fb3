"""Keep third-party chatter off the user's terminal; edgepack's own lines stay.

Three leaks, one remedy each (packager/cli/output.py wires them once, at the boundary):
- Python logging: libraries that log on the root logger (onnxruntime's quantizer: "Please consider
  to run pre-processing", "Expected bias ... to be an initializer") or on their own loggers.
  `OwnRecords` lets only edgepack's loggers (packager.*, agent.*) reach the terminal without --debug.
- Python warnings (torch deprecations, TracerWarning): `logging.captureWarnings` turns them into
  records of the `py.warnings` logger, which the same filter holds back.
- Writes to file descriptors 1 and 2 from C/C++ code (onnxruntime, TensorFlow/absl banners), from
  libraries that print (transformers' "Loading weights" bar, onnx2tf's progress, torch's own
  `_pytree` log handler) and from child processes: `third_party_output()` points fds 1 and 2 at a
  temp file for the block and replays what was written, line by line, to the debug log. edgepack's
  log lines inside the block still reach the terminal: `TerminalHandler` writes to a copy of the
  terminal's stderr taken before the redirect.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

OWN = ("packager", "agent", "edgepack")
THIRD_PARTY = "edgepack.third_party"   # the logger replayed output goes to (shown only with --debug)
_STATE: dict = {"terminal": None, "depth": 0}

# Environment defaults that silence progress bars and banners at their source (set only when the
# user has not chosen a value; child processes such as onnx2tf inherit them).
ENV_DEFAULTS = {
    "TF_CPP_MIN_LOG_LEVEL": "2",                # TensorFlow C++ INFO/WARNING (oneDNN, cuda banners)
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "2",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",        # huggingface_hub / transformers progress bars
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_env_defaults() -> None:
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


class OwnRecords(logging.Filter):
    """Passes edgepack's own records; everything else only with --debug."""

    def __init__(self, debug: bool):
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".")[0] in OWN and record.name != THIRD_PARTY
        if not own:
            record.edgepack_prefix = f"edgepack[debug] {record.name}: "
        else:
            record.edgepack_prefix = "edgepack: "
        return own or self.debug


class TerminalHandler(logging.StreamHandler):
    """stderr, or, while third_party_output() holds fd 2, the terminal's stderr saved before it."""

    def __init__(self):
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = _STATE["terminal"] or sys.stderr
        super().emit(record)


def install(debug: bool, level: int) -> None:
    """The root logger's one handler: edgepack's records, third-party ones only with --debug."""
    handler = TerminalHandler()
    handler.addFilter(OwnRecords(debug))
    handler.setFormatter(logging.Formatter("%(edgepack_prefix)s%(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    if not debug:
        set_env_defaults()


@contextlib.contextmanager
def third_party_output(what: str = "third-party output", debug: bool = False):
    """fds 1 and 2 -> a temp file for the block; replayed to the debug log afterwards. With debug,
    fd 2 flows as it comes and fd 1 joins it (stdout stays for edgepack's --json). Without real
    file descriptors (an in-process test runner) or when nested, it does nothing."""
    fds = _real_fds()
    if _STATE["depth"] or fds is None:
        _STATE["depth"] += 1
        try:
            yield
        finally:
            _STATE["depth"] -= 1
        return
    _flush()
    saved = {fd: os.dup(fd) for fd in fds}
    sink = None if debug else tempfile.TemporaryFile()    # unlinked at once: nothing left on disk
    terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
    _STATE.update(terminal=terminal, depth=1)
    try:
        if sink is None:
            os.dup2(saved[2], 1)
        else:
            for fd in fds:
                os.dup2(sink.fileno(), fd)
        yield
    finally:
        _flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        _STATE.update(terminal=None, depth=0)
        terminal.close()
        if sink is not None:
            replay(sink, what)


def replay(sink, what: str) -> None:
    sink.seek(0)
    text = sink.read().decode("utf-8", errors="replace")
    sink.close()
    log = logging.getLogger(THIRD_PARTY)
    for line in text.replace("\r", "\n").splitlines():
        if line.strip():
            log.debug("%s: %s", what, line.rstrip())


def _real_fds() -> list[int] | None:
    """[1, 2] when sys.stdout / sys.stderr are the process's fds 1 and 2; None otherwise."""
    try:
        if sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2:
            return [1, 2]
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:  # C stdio buffers (printf from C code) before the fds move
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except Exception:
        pass


@contextlib.contextmanager
def quiet_stdout():
    """Converters print progress on stdout: send it to stderr (where --quiet/--debug decide)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
