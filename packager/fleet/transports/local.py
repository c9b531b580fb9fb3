"""LocalTransport: the device is this machine (the tests' pushes without sshd).

It runs the same quoted command line through `/bin/sh -c` that SSH would send, in a new session
as sshd starts it, so a local push exercises the quoting, the device protocol and the ending of a
timed-out or interrupted command's process group exactly as a remote one does.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import time

from packager.fleet.transports import (COMMAND_TIMEOUT, Process, Result, Transport,
                                       TransportError, interrupted_error, kill_group_line,
                                       marked_line, quietly, split_mark, timeout_error)


class LocalTransport(Transport):
    def __init__(self, name: str = "local"):
        self.name = name

    def run(self, argv, timeout=COMMAND_TIMEOUT, cwd=None, interruptible=True):
        p = subprocess.Popen(["/bin/sh", "-c", marked_line(argv, cwd)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                out, err = p.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if self.cancelled(interruptible):
                    raise interrupted_error(self.name, self._end(p))
                if time.monotonic() > deadline:
                    raise timeout_error(self.name, argv, timeout, self._end(p))
        _, err = split_mark(err)
        return Result(argv, p.returncode, out.decode("utf-8", "replace"),
                      err.decode("utf-8", "replace"))

    def _end(self, p) -> str:
        kill_group(p.pid)
        quietly(p.communicate, None, 10)
        return "its processes were ended"

    def start(self, argv):
        p = subprocess.Popen(["/bin/sh", "-c", marked_line(argv)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        return _LocalProcess(p)

    def put(self, local, remote):
        part = remote + ".part"
        try:
            shutil.copyfile(local, part)
            os.replace(part, remote)
        except OSError as exc:
            quietly(os.unlink, part)
            raise TransportError(f"{self.name}: upload of {os.path.basename(local)} failed: {exc}",
                                 hint="free space on the device or check its permissions")


def kill_group(pgid: int) -> None:
    """The same line the SSH transport sends, run here."""
    subprocess.run(["/bin/sh", "-c", kill_group_line(pgid)], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


class _LocalProcess(Process):
    def __init__(self, p):
        self.p = p

    def readline(self, timeout):
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        return self.p.stdout.readline().decode("utf-8", "replace") if ready else ""

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def stderr_tail(self):
        if self.p.poll() is None:
            return ""
        _, err = split_mark(self.p.stderr.read())
        return err.decode("utf-8", "replace")[-2000:]

    def finished(self):
        return self.p.poll() is not None

    def kill(self):
        if self.p.poll() is None:
            kill_group(self.p.pid)

    def close(self):
        quietly(self.p.stdin.close)
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            quietly(self.p.wait, 5)
