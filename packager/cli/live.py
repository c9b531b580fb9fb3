"""The live display of long work (packager/progress.py events), chosen once per command:

- stdout is a terminal (no --json): a live table on stdout (rich): every device with the step
  it is in or how it ended, a running count and an ETA; build steps as a spinner with the time.
  It is transient: the command's own table follows it.
- stdout is not a terminal (no --json): one plain line per device as it finishes
  (`[3/8] cam02  activated  1.2s`), then the command's table.
- --json: nothing extra on stdout; the live display goes to stderr when stderr is a terminal.

Library code only emits events (packager.progress); this module is the one that renders them.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import contextmanager

from .. import progress
from .output import guarded

DONE_STYLE = {True: "green", False: "red"}


def _own_copy(stream):
    """A file on a duplicate of the stream's descriptor: the display still reaches the terminal
    (or pipe) while a build points fds 1 and 2 elsewhere to keep third-party output off it."""
    try:
        return os.fdopen(os.dup(stream.fileno()), "w", buffering=1, encoding="utf-8",
                         errors="replace", closefd=True), True
    except (AttributeError, OSError, ValueError):
        return stream, False


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def choose(as_json: bool, plain_lines: bool = True):
    """The display for this command (or None)."""
    if not as_json and _isatty(sys.stdout):
        return RichDisplay(sys.stdout)
    if as_json:
        return RichDisplay(sys.stderr) if _isatty(sys.stderr) else None
    return PlainLines(sys.stdout) if plain_lines else None


def fleet_run(action: str, as_json: bool, fn, *args):
    """Run a long command (push / status / rollback / tune) with its live board."""
    display = choose(as_json)
    if display is None:
        return guarded(fn, *args)
    with progress.use(display):
        try:
            return guarded(fn, *args)
        finally:
            display.stop()


@contextmanager
def build_display(as_json: bool):
    """Build steps as a spinner on a terminal; nothing otherwise (the log says what runs)."""
    display = choose(as_json, plain_lines=False)
    if display is None:
        yield
        return
    with progress.use(display):
        try:
            yield
        finally:
            display.stop()


class _Board:
    def __init__(self, name, items):
        self.name, self.items = name, list(items)
        self.state = {i: ("waiting", None, None) for i in self.items}  # text, ok, seconds
        self.began: dict = {}  # item -> when its first step came
        self.started = time.monotonic()
        self.done = 0
        self.failed = 0

    def update(self, item, text):
        if item in self.state and self.state[item][1] is None:
            self.state[item] = (text, None, None)
            self.began.setdefault(item, time.monotonic())

    def finish(self, item, ok, text, seconds):
        if item in self.state and self.state[item][1] is None:
            self.done += 1
            self.failed += 0 if ok else 1
        self.state[item] = (text, bool(ok), seconds)

    def headline(self) -> str:
        total = len(self.items)
        elapsed = time.monotonic() - self.started
        busy = sum(1 for t, ok, _ in self.state.values() if ok is None and t != "waiting")
        line = f"{self.name}: {self.done}/{total} done"
        if self.failed:
            line += f", {self.failed} failed"
        line += f", {busy} in progress, {elapsed:.0f}s"
        if 0 < self.done < total:
            line += f", ETA {elapsed / self.done * (total - self.done):.0f}s"
        return line


class PlainLines:
    """One line per finished device, for logs and pipes."""

    def __init__(self, stream):
        self.stream, self._owned = _own_copy(stream)
        self.lock = threading.Lock()
        self.board = None

    def event(self, e: progress.Event) -> None:
        with self.lock:
            if e.kind == "board-start":
                self.board = _Board(e.name, e.items)
            elif e.kind == "item-done" and self.board is not None:
                self.board.finish(e.item, e.ok, e.text, e.seconds)
                took = f"  {e.seconds:.1f}s" if e.seconds is not None else ""
                width = max(len(i) for i in self.board.items)
                self.stream.write(f"[{self.board.done}/{len(self.board.items)}] "
                                  f"{e.item:<{width}}  {e.text}{took}\n")
                self.stream.flush()
            elif e.kind == "board-end":
                self.board = None

    def stop(self) -> None:
        if self._owned:
            self.stream.close()
            self._owned = False


class RichDisplay:
    """A rich Live region: the fleet board as a table, or the build step as a spinner."""

    def __init__(self, stream):
        from rich.console import Console

        self.stream, self._owned = _own_copy(stream)
        self.on_stdout = stream is sys.stdout
        self.console = Console(file=self.stream, force_terminal=True, highlight=False)
        self.lock = threading.RLock()
        self.live = None
        self.board = None
        self.steps: list = []  # (name, started), innermost last
        self._handlers: list = []

    # -- events (any thread)
    def event(self, e: progress.Event) -> None:
        with self.lock:
            if e.kind == "board-start":
                self.board = _Board(e.name, e.items)
            elif e.kind == "item" and self.board is not None:
                self.board.update(e.item, e.text)
            elif e.kind == "item-done" and self.board is not None:
                self.board.finish(e.item, e.ok, e.text, e.seconds)
            elif e.kind == "board-end":
                self.board = None
            elif e.kind == "step-start":
                self.steps.append((e.name, e.at))
            elif e.kind == "step-end":
                for i in range(len(self.steps) - 1, -1, -1):
                    if self.steps[i][0] == e.name:
                        del self.steps[i]
                        break
            active = self.board is not None or bool(self.steps)
            if active and self.live is None:
                self._start()
            if self.live is not None:
                self.live.update(self._render(), refresh=True)
                if not active:
                    self._stop_live()

    def stop(self) -> None:
        with self.lock:
            self._stop_live()
            if self._owned:
                self.stream.close()
                self._owned = False

    # -- rendering
    def _start(self):
        from rich.live import Live

        self.live = Live(self._render(), console=self.console, transient=True,
                         refresh_per_second=4, get_renderable=self._render,
                         redirect_stdout=self.on_stdout, redirect_stderr=True)
        self.live.start()
        # Log lines (edgepack: ...) go above the live region instead of through it.
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and h.stream in (sys.__stderr__, sys.__stdout__):
                self._handlers.append((h, h.stream))
                h.setStream(sys.stderr)

    def _stop_live(self):
        if self.live is not None:
            for h, stream in self._handlers:
                h.setStream(stream)
            self._handlers = []
            self.live.stop()
            self.live = None

    def _render(self):
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        with self.lock:
            if self.board is not None:
                b = self.board
                t = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
                for col in ("HOST", "STEP / RESULT", "SECONDS"):
                    t.add_column(col)
                now = time.monotonic()
                for item in b.items:
                    text, ok, seconds = b.state[item]
                    style = DONE_STYLE.get(ok, "yellow" if text != "waiting" else "dim")
                    began = b.began.get(item)
                    shown = f"{seconds:.1f}" if seconds is not None else (
                        f"{now - began:.0f}" if began is not None else "")
                    t.add_row(item, Text(text, style=style), shown)
                return Group(Text(b.headline(), style="bold"), t)
            if self.steps:
                name, started = self.steps[-1]
                outer = " > ".join(n for n, _ in self.steps[:-1])
                label = f"{outer} > {name}" if outer else name
                return Spinner("dots", text=f"{label}  {time.monotonic() - started:.0f}s")
            return Text("")
