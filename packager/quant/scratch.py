"""Run third-party quantization tools so that they can neither write into the user's current
directory nor talk on the user's terminal.

onnxruntime's `quant_pre_process` / symbolic shape inference write `sym_shape_infer_temp.onnx` and
uuid-named `.data` files into the *current directory*, and its quantizers speak through the root
logger ("Please consider to run pre-processing ...", "Expected bias ... to be an initializer") and
`print`. Inside `sandbox(workdir)`:
- the current directory is a fresh folder under the build's own temp folder (removed after);
- records logged straight to the root logger (what those tools do) and Python warnings go to
  edgepack's log at DEBUG (seen with --debug only); so do their prints on stdout and their
  progress bars on sys.stderr (edgepack's own log handler keeps the real stderr);
- onnxruntime's own C++ logger is set to errors only.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


class _ToDebug(logging.Filter):
    """On the root logger: a record logged there directly is re-logged at DEBUG under our name."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root":
            log.debug("[third-party] %s", record.getMessage())
            return False
        return True


def _ort_quiet() -> int | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    ort.set_default_logger_severity(3)
    return 2


@contextlib.contextmanager
def sandbox(workdir: Path):
    """Current directory, root-logger records, warnings and stdout of the tools run inside, contained."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="cwd-", dir=workdir))
    old_cwd = os.getcwd()
    root = logging.getLogger()
    demote = _ToDebug()
    root.addFilter(demote)
    out = io.StringIO()
    restore = _ort_quiet()
    caught: list = []
    os.chdir(scratch)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            warnings.simplefilter("always")
            yield scratch
    finally:
        os.chdir(old_cwd)
        root.removeFilter(demote)
        if restore is not None:
            import onnxruntime as ort
            ort.set_default_logger_severity(restore)
        for w in caught or []:
            log.debug("[third-party warning] %s: %s", w.category.__name__, w.message)
        for line in out.getvalue().splitlines():
            if line.strip():
                log.debug("[third-party] %s", line)
        left = sorted(p.name for p in scratch.iterdir()) if scratch.exists() else []
        if left:
            log.debug("removed what the tools left in their working folder: %s", ", ".join(left[:10]))
        shutil.rmtree(scratch, ignore_errors=True)
