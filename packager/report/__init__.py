"""`edgepack report`: the fleet at a glance, from the reports `push` stored (no device contacted).

    from packager.report import summarize, render, write
    summary = summarize("edgepack-reports", inventory)   # the dict `--json` prints
    write(summary, "fleet.html")                          # one self-contained HTML file

summary.py reads the stored results and reports; charts.py draws inline SVG; html.py lays out
the page (failed devices first, a group filter, no network).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from packager.report.html import render
from packager.report.summary import summarize

__all__ = ["render", "summarize", "write"]


def write(summary: dict, out: str) -> str:
    """The page, written to a temporary file beside `out` and renamed into place."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(summary))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path)
