"""One device over one transport: agent/device.py's commands, their JSON answers, the lock.

A device needs nothing of edgepack installed: device.py travels as `python3 -B -c SOURCE COMMAND
--root ROOT ...` the first time, and that run keeps a copy at `<root>/.agent/device-<sha256>.py`.
Every later command sends only a short stub that runs the kept copy after checking its sha256
(`device_stub`); when the copy is missing or differs, the stub answers `agent_missing` (exit 97)
and the command is sent again with the whole source. Each command prints one JSON object
(`{"ok": true, ...}` or `{"ok": false, "error": ...}`) as its last line. `session()` is the
connect -> lock -> ... -> unlock -> close frame every fleet command runs a device in.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import importlib.util
import json
import os
import socket
import threading
import time
import zlib
from contextlib import contextmanager
from typing import Callable, Optional

from packager.errors import EXIT_CHECK_FAILED, EdgepackError
from packager.fleet.inventory import Host
from packager.fleet.results import DeviceResult
from packager.fleet.transports import Transport, interrupted_error

HEARTBEAT_SECONDS = 5.0
LEASE_TTL_SECONDS = 30.0
DEVICE_COMMAND_TIMEOUT = 300.0

_DEVICE_SRC: Optional[str] = None
_DEVICE_DIGEST: Optional[str] = None
AGENT_MISSING_RC = 97  # the stub's exit code when <root>/.agent holds no copy with the right hash
# What runs once `s` (device.py's bytes) and `p` (its file name) are defined: device.py's main().
RUN_DEVICE = "exec(compile(s,p,'exec'),{'__name__':'__main__','__file__':p})"


class DeviceRefused(EdgepackError):
    """The device (or the host on its behalf) refused a step; fails that device only."""

    exit_code = EXIT_CHECK_FAILED


def _device_bytes() -> bytes:
    spec = importlib.util.find_spec("agent.device")
    if spec is None or not spec.origin:
        raise EdgepackError("agent/device.py not found next to the packager",
                            hint="reinstall edgepack")
    with open(spec.origin, "rb") as f:
        return f.read()


def device_digest() -> str:
    """sha256 of agent/device.py: the name of its kept copy on a device."""
    global _DEVICE_DIGEST
    if _DEVICE_DIGEST is None:
        _DEVICE_DIGEST = hashlib.sha256(_device_bytes()).hexdigest()
    return _DEVICE_DIGEST


def device_source(root: Optional[str] = None, then: str = RUN_DEVICE) -> str:
    """agent/device.py, sent as `python3 -c SOURCE` (zlib + base64): works before any bundle is on
    the device. With `root`, the run also keeps a copy under <root>/.agent/ for `device_stub`
    (written to a temp name and renamed; copies of other versions beyond the 3 newest removed)."""
    global _DEVICE_SRC
    if _DEVICE_SRC is None:
        packed = base64.b64encode(zlib.compress(_device_bytes(), 9)).decode("ascii")
        # Compressed: 29 kB -> 11 kB.
        _DEVICE_SRC = ("import base64,zlib;s=zlib.decompress(base64.b64decode('%s'))\n"
                       "p='agent/device.py'\n" % packed)
    if root is None:
        return _DEVICE_SRC + then
    keep = (
        "def _keep(s, root, name):\n"
        " import os\n"
        " try:\n"
        "  d = os.path.join(os.path.expanduser(root), '.agent')\n"
        "  os.makedirs(d, 0o755, exist_ok=True)\n"
        "  t = os.path.join(d, '.%d.tmp' % os.getpid())\n"
        "  with open(t, 'wb') as f:\n"
        "   f.write(s)\n"
        "  os.chmod(t, 0o444)\n"
        "  os.replace(t, os.path.join(d, name))\n"
        "  old = sorted((n for n in os.listdir(d) if n.startswith('device-') and n != name),\n"
        "               key=lambda n: os.path.getmtime(os.path.join(d, n)))\n"
        "  for n in old[:-2]:\n"
        "   os.unlink(os.path.join(d, n))\n"
        " except OSError:\n"
        "  pass\n")
    return (_DEVICE_SRC + keep + "_keep(s, %r, %r)\n" % (root, "device-%s.py" % device_digest())
            + then)


def device_stub(root: str, then: str = RUN_DEVICE) -> str:
    """The short `python3 -c` line that runs the copy kept under <root>/.agent/ once its sha256
    matches (else: `{"ok": false, "agent_missing": true}`, exit 97)."""
    digest = device_digest()
    return ("import hashlib,os,sys\n"
            "p=os.path.join(os.path.expanduser(%r),'.agent','device-%s.py')\n"
            "try:\n with open(p,'rb') as f:s=f.read()\nexcept OSError:s=b''\n"
            "if hashlib.sha256(s).hexdigest()!='%s':\n"
            " sys.stdout.write('{\"ok\": false, \"agent_missing\": true}\\n');sys.exit(%d)\n"
            "%s" % (root, digest, digest, AGENT_MISSING_RC, then))


def agent_missing(rc: int, answer) -> bool:
    return rc == AGENT_MISSING_RC and isinstance(answer, dict) and bool(answer.get("agent_missing"))


def holder_name() -> str:
    return f"edgepack push by {getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


class Device:
    def __init__(self, host: Host, transport: Transport,
                 timeout: float = DEVICE_COMMAND_TIMEOUT):
        self.host, self.t = host, transport
        self.timeout = timeout  # a device command that runs longer is ended on the device
        self.root = host.root  # the lock answers the expanded root ('~' resolved on the device)
        self.lease_token: Optional[str] = None
        self._lease_proc = None
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None
        self.agent_sent = 0  # commands that had to carry the whole device.py (its copy was missing)
        self.prepared: Optional[dict] = None  # `lock --prepare`'s answer
        self.device_facts: Optional[dict] = None  # `lock --facts`'s answer
        self.prepare_error: Optional[str] = None

    def argv(self, command: str, *args: str, full: bool = False) -> list:
        code = device_source(self.root) if full else device_stub(self.root)
        return self.host.python + ["-B", "-c", code, command, "--root", self.root] + list(args)

    def call(self, command: str, *args: str, timeout: Optional[float] = None,
             lease: bool = True, interruptible: bool = True) -> dict:
        """Run a device.py command (under our lease); its answer, or DeviceRefused.
        `interruptible=False`: cleanup that must run even after Ctrl-C."""
        r, data = self._run(command, args, timeout or self.timeout, lease, interruptible)
        if data is None:
            raise DeviceRefused(f"{self.host.name}: device command {command!r} failed "
                                f"(exit {r.rc}): {tail(r.stderr) or tail(r.stdout) or 'no output'}",
                                hint=python_hint(self.host, r.rc, r.stderr))
        if not data.get("ok"):
            raise DeviceRefused(f"{self.host.name}: {data.get('error') or command + ' refused'}",
                                hint=None)
        return data

    def selftest(self, release_id: str, timeout: float, command: str = "stage-selftest") -> dict:
        """`stage-selftest` (or `release-selftest`, push --retest): the agent's self-test,
        killed on the device after `timeout`; the host gives up 60 s later and ends the
        command's process group. Its answer as it is: {"ok", "error", "report", "report_file"}."""
        r, out = self._run(command, ("--id", release_id, "--timeout", str(timeout)),
                           timeout + 60, lease=True)
        if out is None:
            raise DeviceRefused(f"{self.host.name}: self-test runner failed (exit {r.rc}): "
                                f"{tail(r.stderr) or 'no output'}")
        return out

    def _run(self, command: str, args: tuple, timeout: float, lease: bool,
             interruptible: bool = True):
        if lease and self.lease_token:
            args += ("--lease", self.lease_token)
        r = self.t.run(self.argv(command, *args), timeout=timeout, interruptible=interruptible)
        data = last_json(r.stdout)
        if agent_missing(r.rc, data):  # the device's copy of device.py is missing or differs
            self.agent_sent += 1
            r = self.t.run(self.argv(command, *args, full=True), timeout=timeout, interruptible=interruptible)
            data = last_json(r.stdout)
        return r, data

    def facts(self, stage: str, runtime: Optional[str] = None) -> dict:
        """`python3 -m agent facts --json` from the stage: Python, arch, numpy, runtimes (with
        `runtime`, only that one is probed: importing every runtime can take seconds)."""
        extra = ["--runtime", runtime] if runtime else []
        r = self.t.run(self.host.python + ["-B", "-m", "agent", "facts", "--json"] + extra,
                       cwd=stage, timeout=min(120.0, self.timeout))
        try:
            facts = json.loads(r.stdout)
        except ValueError:
            facts = None
        if r.rc != 0 or not isinstance(facts, dict):
            raise DeviceRefused(f"{self.host.name}: `agent facts` failed (exit {r.rc}): "
                                f"{tail(r.stderr) or 'no output'}",
                                hint=python_hint(self.host, r.rc, r.stderr))
        return facts

    # -- the lock: held while the channel lives and heartbeats arrive
    def lock(self, ttl: float = LEASE_TTL_SECONDS, prepare: Optional[str] = None):
        """Take the device lock (and with `prepare`, run `prepare --id` in the same process:
        its answer in `self.prepared`, its refusal in `self.prepare_error`; the device's facts come
        with it, in `self.device_facts`)."""
        argv = ("lock", "--ttl", str(ttl), "--holder", holder_name()) + \
            (("--prepare", prepare, "--facts") if prepare else ())
        wait_s = min(60.0, self.timeout)
        proc = self.t.start(self.argv(*argv))
        data = self._lock_answer(proc, wait_s)
        if data is not None and data.get("agent_missing"):
            proc.close()
            self.agent_sent += 1
            proc = self.t.start(self.argv(*argv, full=True))
            data = self._lock_answer(proc, wait_s)
        if data is None:
            err = proc.stderr_tail()
            hung = not proc.finished()
            if hung:  # a Python that never answers (hung at start-up): end it, not just leave
                proc.kill()
            proc.close()
            why = tail(err) or (f"no answer within {wait_s:.0f}s" if hung else "no answer")
            if hung:
                why += "; its processes on the device were ended"
            hint = (f"check that `{' '.join(self.host.python)} -c pass` returns on the device"
                    if hung else python_hint(self.host, 127, err))
            raise DeviceRefused(f"{self.host.name}: cannot start the edgepack lock on the device: "
                                f"{why}", hint=hint)
        if not data.get("ok"):
            proc.close()
            raise DeviceRefused(f"{self.host.name}: {data.get('error')}",
                                hint="wait for the other push to finish, then retry")
        self.lease_token, self.root, self._lease_proc = data["token"], data["root"], proc
        self.prepared, self.prepare_error = data.get("prepared"), data.get("prepare_error")
        self.device_facts = data.get("device_facts")
        self._beat = threading.Thread(target=self._heartbeat, args=(ttl,), daemon=True)
        self._beat.start()
        return data

    def _lock_answer(self, proc, wait_s: float):
        """The lock command's first line, read in slices so Ctrl-C is seen; what came is kept."""
        line, deadline = "", time.monotonic() + wait_s
        while not line.endswith("\n"):
            if self.t.cancelled():
                proc.kill()
                proc.close()
                raise interrupted_error(self.host.name, "the lock command was ended")
            exited = proc.finished()  # read once more after it exited: its answer may be there
            line += proc.readline(timeout=0.5)
            if exited or time.monotonic() > deadline:
                break
        return last_json(line)

    def _heartbeat(self, ttl: float):
        interval = min(HEARTBEAT_SECONDS, ttl / 3)
        while not self._stop.wait(interval):
            try:
                self._lease_proc.write(b".\n")
            except Exception:  # noqa: BLE001 - the link is gone; the main thread will see it
                return

    def unlock(self):
        self._stop.set()
        if self._lease_proc is not None:
            try:
                self._lease_proc.close()
            except Exception:  # noqa: BLE001
                pass
            self._lease_proc = None
        self.lease_token = None


@contextmanager
def session(host: Host, connect: Callable[[Host], Transport], res: DeviceResult, lock: bool,
            timeout: float = DEVICE_COMMAND_TIMEOUT, cancel=None, prepare: Optional[str] = None):
    """Connect (and take the device lock; with `prepare`, prepare that release under it in the
    same round trip): the Device; unlocked and disconnected on the way out, whatever happens.
    `res.step` says how far it got; `cancel` (Ctrl-C) ends its commands."""
    res.at("connect")
    t = connect(host)
    t.cancel = cancel
    try:
        dev = Device(host, t, timeout)
        if lock:
            res.at("lock")
            dev.lock(prepare=prepare)
        try:
            yield dev
        finally:
            dev.unlock()
    finally:
        t.close()


def last_json(text: str):
    for line in reversed((text or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def tail(text: str, n: int = 2) -> str:
    lines = [x.strip() for x in (text or "").strip().splitlines() if x.strip()]
    return " | ".join(lines[-n:])[-400:]


def python_hint(host: Host, rc: int, stderr: str) -> str:
    if rc == 127 or "not found" in (stderr or "") or "No such file" in (stderr or ""):
        return (f"install Python >= 3.8 on {host.name} or set ansible_python_interpreter "
                f"(now {' '.join(host.python)})")
    return "run the same command by hand on the device with --debug to see more"
