"""LocalTransport: the device is this machine (the tests' pushes without sshd).

It runs the same quoted command line through `/bin/sh -c` that SSH would send, so a local push
exercises the quoting and the device protocol exactly as a remote one does.
"""
from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess

from packager.fleet.transports import (COMMAND_TIMEOUT, CommandTimeout, Process, Result,
                                       Transport, TransportError, command_line, quietly)


class LocalTransport(Transport):
    def __init__(self, name: str = "local"):
        self.name = name

    def run(self, argv, timeout=COMMAND_TIMEOUT, cwd=None):
        try:
            p = subprocess.run(["/bin/sh", "-c", command_line(argv, cwd)], capture_output=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"{self.name}: command timed out after {timeout:.0f}s: "
                                 f"{shlex.quote(argv[0])} ...",
                                 hint="raise the timeout or check the device")
        return Result(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))

    def start(self, argv):
        p = subprocess.Popen(["/bin/sh", "-c", command_line(argv)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
        return self.p.stderr.read().decode("utf-8", "replace")[-2000:]

    def close(self):
        quietly(self.p.stdin.close)
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()
