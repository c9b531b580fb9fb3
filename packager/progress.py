"""Live progress of long work: the library says what it is doing, the CLI decides how to show it.

    from packager import progress

    with progress.step("onnx2tf"):                  # a build step (steps may nest)
        ...
    board = progress.board("push", ["cam01", "cam02"])   # fleet work: one line per device
    board.update("cam01", "upload")                # the step a device is in now
    board.finish("cam01", ok=True, status="activated")
    board.close()

With no display installed (library use, tests) every call is a cheap no-op and nothing is
written anywhere. The CLI installs one for the length of a command:

    with progress.use(display):                    # display.event(Event) gets every event
        ...

A display is called from whichever thread did the work (fleet devices run in threads), so it
must lock what it shares. This module imports nothing of edgepack (anything may use it).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Optional

_lock = threading.Lock()
_displays: list = []  # a stack: the innermost `use` gets the events


@dataclass(frozen=True)
class Event:
    kind: str  # step-start | step-end | board-start | item | item-done | board-end
    name: str = ""  # the step's or the board's name
    item: Optional[str] = None  # a board's item (a device)
    text: Optional[str] = None  # the item's step, or a final status
    ok: Optional[bool] = None
    seconds: Optional[float] = None
    items: tuple = ()  # board-start: every item, in order
    at: float = field(default_factory=time.monotonic)


def _emit(event: Event) -> None:
    display = _displays[-1] if _displays else None
    if display is None:
        return
    try:
        display.event(event)
    except Exception:  # noqa: BLE001 - showing progress must never break the work
        pass


def active() -> bool:
    """Whether a display listens (to skip work that only feeds it)."""
    return bool(_displays)


@contextmanager
def use(display):
    """Send every event to `display` (an object with `event(Event)`) until the block ends."""
    with _lock:
        _displays.append(display)
    try:
        yield display
    finally:
        with _lock:
            if display in _displays:
                _displays.remove(display)


@contextmanager
def step(name: str):
    """A step of a build (conversion, calibration, recovery ...): shown while it runs."""
    started = time.monotonic()
    _emit(Event("step-start", name=name))
    ok = False
    try:
        yield
        ok = True
    finally:
        _emit(Event("step-end", name=name, ok=ok, seconds=time.monotonic() - started))


class Board:
    """Items (devices) worked on in parallel: each one's current step, then its outcome."""

    def __init__(self, name: str, items: Iterable[str]):
        self.name = name
        self.items = tuple(items)
        self.started = time.monotonic()
        self._closed = False
        _emit(Event("board-start", name=name, items=self.items))

    def update(self, item: str, text: str) -> None:
        if not self._closed:
            _emit(Event("item", name=self.name, item=item, text=text))

    def finish(self, item: str, ok: bool, status: str, seconds: Optional[float] = None) -> None:
        if not self._closed:
            _emit(Event("item-done", name=self.name, item=item, text=status, ok=ok,
                        seconds=seconds))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _emit(Event("board-end", name=self.name,
                        seconds=time.monotonic() - self.started))


def board(name: str, items: Iterable[str]) -> Board:
    return Board(name, items)


_here = threading.local()


@contextmanager
def working_on(b: Optional[Board], item: str):
    """This thread now works on `item` of board `b`: `at(text)` below updates its line."""
    prev = getattr(_here, "slot", None)
    _here.slot = (b, item) if b is not None else None
    try:
        yield
    finally:
        _here.slot = prev


def at(text: str) -> None:
    """The step this thread's item is in (no-op outside `working_on`)."""
    slot = getattr(_here, "slot", None)
    if slot is not None:
        slot[0].update(slot[1], text)
