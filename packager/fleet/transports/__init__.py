"""The transport interface push, status and rollback talk through: run, start, put, close.

A transport is a parameter (httpx style): `push(..., connect=lambda host: LocalTransport(host.name))`
in tests, SSHTransport (paramiko) for a fleet. Each implementation turns its own
failures into the errors below at its boundary, so nothing above it sees a paramiko or socket
exception. Every remote command is an argv list joined with `command_line`: nothing from an
inventory or a bundle ever reaches a remote shell unquoted.
"""
from __future__ import annotations

import re
import shlex
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

from packager.errors import EdgepackError

COMMAND_TIMEOUT = 600.0
KILL_GRACE_SECONDS = 3.0  # SIGTERM, then this long for the group to go, then SIGKILL
PGID_MARK = "edgepack-pgid"
_MARK_RE = re.compile(rb"^%s (\d+)\n" % PGID_MARK.encode(), re.M)


class TransportError(EdgepackError):
    """A device could not be reached or a transfer broke. Fails that device only."""


class HostKeyError(TransportError):
    """Unknown or changed host key: nothing is sent to the device."""


class CommandTimeout(TransportError):
    """A remote command ran past its time limit (its process group was ended)."""


class Interrupted(TransportError):
    """The user pressed Ctrl-C while a remote command ran (its process group was ended)."""


@dataclass
class Result:
    argv: Sequence[str]
    rc: int
    stdout: str
    stderr: str


def command_line(argv: Sequence[str], cwd: Optional[str] = None) -> str:
    """The one place a remote shell line is made: every word quoted."""
    line = " ".join(shlex.quote(str(a)) for a in argv)
    if cwd:
        line = "cd %s && %s" % (shlex.quote(cwd), line)
    return line


def marked_line(argv: Sequence[str], cwd: Optional[str] = None) -> str:
    """`command_line`, run so that it can be ended as a whole: the shell first tells its pid on
    stderr (`edgepack-pgid N`), then `exec`s the command. sshd starts every command in a new
    session (setsid), so N is the process group of the command and of all it starts; the
    local transport starts its shell the same way (start_new_session)."""
    line = "exec " + command_line(argv)
    if cwd:
        line = "cd %s && %s" % (shlex.quote(cwd), line)
    return "printf '%s %%s\\n' \"$$\" >&2; %s" % (PGID_MARK, line)


def split_mark(stderr: bytes):
    """(process group id or None, stderr without the mark line)."""
    m = _MARK_RE.search(stderr)
    if not m:
        return None, stderr
    return int(m.group(1)), stderr[:m.start()] + stderr[m.end():]


def kill_group_line(pgid: int, grace: float = KILL_GRACE_SECONDS) -> str:
    """A POSIX shell line that ends process group `pgid`: SIGTERM (device.py passes it on to a
    self-test's own group), up to `grace` seconds for it to go, then SIGKILL. Exit 0 always."""
    g = int(pgid)
    if g <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    ticks = max(1, int(grace * 10))
    return (f"kill -s TERM -- -{g} 2>/dev/null || exit 0; i=0; "
            f"while [ $i -lt {ticks} ] && kill -s 0 -- -{g} 2>/dev/null; "
            f"do sleep 0.1; i=$((i+1)); done; kill -s KILL -- -{g} 2>/dev/null; exit 0")


class Transport:
    """One connection to one device. `name` is the inventory name, for messages.

    `cancel`, when set by the fleet (Ctrl-C), ends every interruptible command in flight: the
    command's remote process group is ended and `Interrupted` raised. A command that runs past
    its `timeout` has its process group ended too, then raises `CommandTimeout`."""

    name = "?"
    cancel: Optional[threading.Event] = None

    def run(self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT,
            cwd: str | None = None, interruptible: bool = True) -> Result:
        """Run a command to its end; a non-zero exit is a Result, not an error.
        `interruptible=False` (cleanup after a failure) ignores `cancel`."""
        raise NotImplementedError

    def cancelled(self, interruptible: bool = True) -> bool:
        return bool(interruptible and self.cancel is not None and self.cancel.is_set())

    def start(self, argv: Sequence[str]) -> "Process":
        """Start a long-lived command (the device lock); stdin stays open."""
        raise NotImplementedError

    def put(self, local: str, remote: str) -> None:
        """Upload to remote + '.part', then rename; the .part is removed on failure."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Process:
    """A started command: readline() from stdout, write() to stdin, close()."""

    def readline(self, timeout: float) -> str:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def stderr_tail(self) -> str:
        """What the command wrote on stderr so far (for error messages)."""
        return ""

    def kill(self) -> None:
        """End the command's whole process group on the device (it did not answer)."""
        raise NotImplementedError

    def finished(self) -> bool:
        """The command has exited."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def timeout_error(name: str, argv: Sequence[str], timeout: float, killed: Optional[str]):
    return CommandTimeout(f"{name}: {shlex.quote(str(argv[0]))} did not finish within "
                          f"{timeout:.0f}s; {killed or 'its processes could not be ended'}",
                          hint="check the device (a hung Python?); raise the timeout if it is "
                               "just slow")


def interrupted_error(name: str, killed: Optional[str]):
    return Interrupted(f"{name}: interrupted (Ctrl-C); {killed or 'its processes could not be ended'}",
                       hint="push again when ready; the device keeps its current release")


def quietly(fn, *args) -> None:
    """Best-effort cleanup: fn(*args), whatever it raises is dropped."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass
