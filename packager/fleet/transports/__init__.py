"""The transport interface push, status and rollback talk through: run, start, put, close.

A transport is a parameter (httpx style): `push(..., connect=lambda host: LocalTransport(host.name))`
in tests, SSHTransport (paramiko) for a fleet. Each implementation turns its own
failures into the errors below at its boundary, so nothing above it sees a paramiko or socket
exception. Every remote command is an argv list joined with `command_line`: nothing from an
inventory or a bundle ever reaches a remote shell unquoted.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional, Sequence

from packager.errors import EdgepackError

COMMAND_TIMEOUT = 600.0


class TransportError(EdgepackError):
    """A device could not be reached or a transfer broke. Fails that device only."""


class HostKeyError(TransportError):
    """Unknown or changed host key: nothing is sent to the device."""


class CommandTimeout(TransportError):
    """A remote command ran past its time limit."""


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


class Transport:
    """One connection to one device. `name` is the inventory name, for messages."""

    name = "?"

    def run(self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT,
            cwd: str | None = None) -> Result:
        """Run a command to its end; a non-zero exit is a Result, not an error."""
        raise NotImplementedError

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

    def close(self) -> None:
        raise NotImplementedError


def quietly(fn, *args) -> None:
    """Best-effort cleanup: fn(*args), whatever it raises is dropped."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass
