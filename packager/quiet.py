"""Keep third-party chatter off the user's terminal: edgepack's stdout carries only its own output."""
from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def quiet_stdout():
    """Converters print progress on stdout: send it to stderr (where --quiet/--debug decide)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
