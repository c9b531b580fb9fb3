"""Push a bundle to a fleet: per device connect, lock, stage, verify, self-test, activate.

Devices run in parallel (forks); a failure on one device never stops the others, except where
the user asked for it (--canary, --max-fail). A failed device keeps its `current` release, its
stage and partial uploads are removed, and its result says which step failed and why.
"""
from __future__ import annotations

import base64
import getpass
import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import zlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from packager.errors import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, EXIT_PARTIAL,
                             BundleError, EdgepackError)
from packager.fleet.inventory import Host
from packager.fleet.transport import SSHTransport, Transport, TransportError

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
LEASE_TTL_SECONDS = 30.0
DEVICE_COMMAND_TIMEOUT = 300.0
OK_STATUSES = ("activated", "unchanged", "rolled-back", "reachable")


class DeviceRefused(EdgepackError):
    """The device (or the host on its behalf) refused a step; fails that device only."""

    exit_code = EXIT_CHECK_FAILED


@dataclass
class FleetOptions:
    forks: int = 16
    canary: int = 0
    max_fail: Optional[float] = None  # percent of the selected devices
    known_hosts: Optional[str] = None
    accept_new_hosts: bool = False
    connect_timeout: float = 10.0
    selftest_timeout: float = 600.0
    dead_after: int = 10
    reports_dir: Optional[str] = "edgepack-reports"


@dataclass
class DeviceResult:
    host: str
    status: str = "failed"  # activated | unchanged | rolled-back | reachable | failed | skipped
    step: Optional[str] = None  # the step reached (where it failed, for a failure)
    reason: Optional[str] = None
    hint: Optional[str] = None
    release_id: Optional[str] = None
    current: Optional[str] = None
    previous: Optional[str] = None
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    reused_files: int = 0
    seconds: float = 0.0
    verdict: Optional[dict] = None
    p50_ms: Optional[float] = None
    report_file: Optional[str] = None  # local copy of the device's report
    facts: Optional[dict] = None
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


@dataclass
class FleetResult:
    action: str
    devices: list
    bundle: Optional[dict] = None
    halted: Optional[str] = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if not self.devices:
            return EXIT_BAD_INPUT
        good = sum(1 for d in self.devices if d.ok)
        if good == len(self.devices):
            return EXIT_OK
        return EXIT_CHECK_FAILED if good == 0 else EXIT_PARTIAL

    def to_dict(self) -> dict:
        return {"action": self.action, "bundle": self.bundle, "halted": self.halted,
                "seconds": round(self.seconds, 3), "exit_code": self.exit_code,
                "summary": {s: sum(1 for d in self.devices if d.status == s)
                            for s in sorted({d.status for d in self.devices})},
                "devices": [asdict(d) for d in self.devices]}


# ---------------------------------------------------------------------------- the bundle

@dataclass
class Bundle:
    path: str
    manifest: dict
    release_id: str
    tmpdir: Optional[str] = None
    source: Optional[str] = None  # what the user passed (a folder or a .tar.gz)

    @property
    def profile(self) -> Optional[str]:
        p = self.manifest.get("profile")
        return p.get("name") if isinstance(p, dict) else p

    def summary(self) -> dict:
        m = self.manifest
        return {"path": self.source or self.path, "id": self.release_id, "name": m.get("name"),
                "version": m.get("version"), "profile": self.profile, "runtime": m.get("runtime"),
                "signed": os.path.isfile(os.path.join(self.path, "signature"))}

    def files(self) -> dict:
        return self.manifest["files"]

    def cleanup(self):
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def open_bundle(path: str) -> Bundle:
    """A verified bundle (folder, or .tar.gz extracted safely). Raises BundleError."""
    from packager import bundle as bundle_mod

    tmpdir = None
    p = Path(path)
    if not p.exists():
        raise BundleError(f"bundle {path} does not exist", hint="pass the folder `edgepack build` "
                                                                "wrote (dist/NAME-VERSION-PROFILE)")
    if p.is_file():
        tmpdir = tempfile.mkdtemp(prefix="edgepack-push-")
        try:
            p = bundle_mod.extract_archive(p, Path(tmpdir))
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
    try:
        manifest = bundle_mod.verify(p)
        rid = bundle_mod.release_id(p)
    except BaseException:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return Bundle(str(p), manifest, rid, tmpdir, source=str(path))


# ---------------------------------------------------------------------------- device commands

_DEVICE_SRC: Optional[str] = None


def device_source() -> str:
    """agent/device.py, sent as `python3 -c SOURCE` (zlib + base64): works before any bundle is on the device."""
    global _DEVICE_SRC
    if _DEVICE_SRC is None:
        spec = importlib.util.find_spec("agent.device")
        if spec is None or not spec.origin:
            raise EdgepackError("agent/device.py not found next to the packager",
                                hint="reinstall edgepack")
        with open(spec.origin, "rb") as f:
            packed = base64.b64encode(zlib.compress(f.read(), 9)).decode("ascii")
        # Compressed: this line travels with every device command (29 kB -> 11 kB).
        _DEVICE_SRC = ("import base64,zlib;exec(compile(zlib.decompress(base64.b64decode('%s')),"
                       "'agent/device.py','exec'))" % packed)
    return _DEVICE_SRC


def holder_name() -> str:
    return f"edgepack push by {getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


class Device:
    """One device over one transport: the device.py commands, parsed and checked."""

    def __init__(self, host: Host, transport: Transport):
        self.host, self.t = host, transport
        self.root = host.root
        self.lease_token: Optional[str] = None
        self._lease_proc = None
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None

    def argv(self, command: str, *args: str) -> list:
        return self.host.python + ["-B", "-c", device_source(), command, "--root", self.root] + \
            list(args)

    def call(self, command: str, *args: str, timeout: float = DEVICE_COMMAND_TIMEOUT,
             lease: bool = True) -> dict:
        extra = list(args)
        if lease and self.lease_token:
            extra += ["--lease", self.lease_token]
        r = self.t.run(self.argv(command, *extra), timeout=timeout)
        data = _last_json(r.stdout)
        if data is None:
            raise DeviceRefused(f"{self.host.name}: device command {command!r} failed "
                                f"(exit {r.rc}): {_tail(r.stderr) or _tail(r.stdout) or 'no output'}",
                                hint=_python_hint(self.host, r.rc, r.stderr))
        if not data.get("ok"):
            raise DeviceRefused(f"{self.host.name}: {data.get('error') or command + ' refused'}",
                                hint=None)
        return data

    def lock(self, ttl: float = LEASE_TTL_SECONDS):
        proc = self.t.start(self.host.python + ["-B", "-c", device_source(), "lock", "--root",
                                                self.root, "--ttl", str(ttl),
                                                "--holder", holder_name()])
        line = proc.readline(timeout=60)
        data = _last_json(line)
        if data is None:
            err = proc.stderr_tail()
            proc.close()
            raise DeviceRefused(f"{self.host.name}: cannot start the edgepack lock on the device: "
                                f"{_tail(err) or 'no answer'}", hint=_python_hint(self.host, 127, err))
        if not data.get("ok"):
            proc.close()
            raise DeviceRefused(f"{self.host.name}: {data.get('error')}",
                                hint="wait for the other push to finish, then retry")
        self.lease_token, self.root, self._lease_proc = data["token"], data["root"], proc
        self._beat = threading.Thread(target=self._heartbeat, args=(ttl,), daemon=True)
        self._beat.start()
        return data

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


def _last_json(text: str):
    for line in reversed((text or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _tail(text: str, n: int = 2) -> str:
    lines = [x.strip() for x in (text or "").strip().splitlines() if x.strip()]
    return " | ".join(lines[-n:])[-400:]


def _python_hint(host: Host, rc: int, stderr: str) -> str:
    if rc == 127 or "not found" in (stderr or "") or "No such file" in (stderr or ""):
        return (f"install Python >= 3.8 on {host.name} or set ansible_python_interpreter "
                f"(now {' '.join(host.python)})")
    return "run the same command by hand on the device with --debug to see more"


def _version_tuple(text) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", str(text))[:3])


def _safe_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "host"
    if safe != name:
        import hashlib
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return safe


# ---------------------------------------------------------------------------- per device

def check_facts(host: Host, bundle: Bundle, facts: dict) -> None:
    """Refuse early, before the model is uploaded, when the bundle cannot run on the device."""
    m = bundle.manifest
    need_py = (m.get("device") or {}).get("min_python") or "3.8"
    if _version_tuple(facts.get("python", "0")) < _version_tuple(need_py):
        raise DeviceRefused(f"{host.name}: Python {facts.get('python')} is older than the "
                            f"{need_py} the bundle needs",
                            hint=f"point ansible_python_interpreter at a Python >= {need_py}")
    arch = (m.get("device") or {}).get("arch") or []
    if arch and facts.get("arch") not in arch:
        raise DeviceRefused(f"{host.name}: device is {facts.get('arch')}, bundle profile "
                            f"{bundle.profile!r} targets {'/'.join(arch)}",
                            hint="rebuild with the profile of this device or --limit the push")
    if facts.get("numpy") is None and "numpy" in facts:
        raise DeviceRefused(f"{host.name}: device lacks numpy (Python {facts.get('python')})",
                            hint="install it: pip install numpy")
    runtime = m.get("runtime")
    runtimes = facts.get("runtimes") or {}
    if runtime and runtime not in runtimes:
        have = ", ".join(sorted(runtimes)) or "none"
        raise DeviceRefused(f"{host.name}: device lacks runtime {runtime} (has: {have})",
                            hint=f"install it on the device: pip install {runtime}")


def push_one(host: Host, bundle: Bundle, opts: FleetOptions,
             connect: Callable[[Host], Transport]) -> DeviceResult:
    res = DeviceResult(host=host.name, release_id=bundle.release_id, step="check")
    started = time.monotonic()
    t: Optional[Transport] = None
    dev: Optional[Device] = None
    staged = False
    try:
        if host.profile and bundle.profile and host.profile != bundle.profile:
            raise DeviceRefused(f"{host.name}: expects profile {host.profile!r}, the bundle was "
                                f"built for {bundle.profile!r}",
                                hint=f"build with --profile {host.profile} or --limit the push")
        if host.require_signature and not os.path.isfile(os.path.join(bundle.path, "signature")):
            raise DeviceRefused(f"{host.name}: requires a signed bundle and this one has no "
                                "signature", hint="build with --sign-key KEY")
        res.step = "connect"
        t = connect(host)
        dev = Device(host, t)
        res.step = "lock"
        dev.lock()
        res.step = "prepare"
        info = dev.call("prepare", "--id", bundle.release_id)
        res.current, res.previous = info.get("current"), info.get("previous")
        if info.get("unchanged"):
            last = info.get("last_report") or {}
            res.verdict, res.p50_ms = last.get("verdict"), last.get("p50_ms")
            res.status, res.step, res.reason = "unchanged", "done", "already the current release"
            return res
        staged = True
        stage = info["stage"]
        res.step = "upload"
        t.put(os.path.join(bundle.path, "manifest.json"), f"{stage}/manifest.json")
        plan = dev.call("plan", "--id", bundle.release_id)
        res.reused_files = plan.get("present", 0) + plan.get("reused", 0)
        need = plan["need"]
        _upload(t, bundle, stage, [f for f in need if f.startswith("agent/")], res)
        res.step = "facts"
        r = t.run(host.python + ["-B", "-m", "agent", "facts", "--json"], cwd=stage, timeout=120)
        try:
            facts = json.loads(r.stdout)
        except ValueError:
            facts = None
        if r.rc != 0 or not isinstance(facts, dict):
            raise DeviceRefused(f"{host.name}: `agent facts` failed (exit {r.rc}): "
                                f"{_tail(r.stderr) or 'no output'}",
                                hint=_python_hint(host, r.rc, r.stderr))
        res.facts = facts
        check_facts(host, bundle, facts)
        res.step = "upload"
        _upload(t, bundle, stage, [f for f in need if not f.startswith("agent/")], res)
        if os.path.isfile(os.path.join(bundle.path, "signature")):
            t.put(os.path.join(bundle.path, "signature"), f"{stage}/signature")
        res.step = "verify"
        args = ["--id", bundle.release_id]
        if host.require_signature:
            args.append("--require-signature")
            if host.allowed_signers:
                args += ["--allowed-signers", host.allowed_signers]
        dev.call("verify-stage", *args, timeout=DEVICE_COMMAND_TIMEOUT)
        res.step = "selftest"
        r = t.run(dev.argv("stage-selftest", "--id", bundle.release_id, "--timeout",
                           str(opts.selftest_timeout), "--lease", dev.lease_token),
                  timeout=opts.selftest_timeout + 60)
        out = _last_json(r.stdout)
        if out is None:
            raise DeviceRefused(f"{host.name}: self-test runner failed (exit {r.rc}): "
                                f"{_tail(r.stderr) or 'no output'}")
        report = out.get("report")
        if isinstance(report, dict):
            res.verdict = report.get("verdict")
            res.p50_ms = (report.get("latency") or {}).get("p50_ms")
            res.report_file = _store_report(opts, host, out.get("report_file"), report)
        if not out.get("ok"):
            raise DeviceRefused(f"{host.name}: self-test failed: {out.get('error')}",
                                hint="see the report; the device keeps its current release")
        res.step = "activate"
        act = dev.call("activate", "--id", bundle.release_id, "--keep", str(host.keep))
        staged = False
        res.current, res.previous = act.get("current"), act.get("previous")
        res.detail["pruned"] = act.get("pruned")
        res.status, res.step = "activated", "done"
    except EdgepackError as exc:
        res.reason, res.hint = exc.message, exc.hint
        if not res.reason.startswith(host.name):
            res.reason = f"{host.name}: {res.reason}"
    except Exception as exc:  # noqa: BLE001 - one device's surprise never stops the fleet
        log.debug("push to %s failed", host.name, exc_info=True)
        res.reason = f"{host.name}: unexpected {type(exc).__name__} in {res.step}: {exc}"
        res.hint = "rerun with --debug and report this"
    finally:
        if staged and dev is not None:
            _cleanup(dev, host, bundle, opts, connect, res)
        if dev is not None:
            dev.unlock()
        if t is not None:
            t.close()
        res.seconds = round(time.monotonic() - started, 3)
    return res


def _upload(t: Transport, bundle: Bundle, stage: str, rels: list, res: DeviceResult):
    for rel in rels:
        local = os.path.join(bundle.path, *rel.split("/"))
        t.put(local, f"{stage}/{rel}")
        res.uploaded_files += 1
        res.uploaded_bytes += os.path.getsize(local)


def _cleanup(dev: Device, host: Host, bundle: Bundle, opts: FleetOptions, connect, res):
    """Remove the stage (and every .part in it). Over a fresh connection if the link died."""
    try:
        dev.call("abort", "--id", bundle.release_id, timeout=60)
        res.detail["cleanup"] = "stage removed"
        return
    except EdgepackError as exc:
        first = exc.message
    dev.unlock()
    try:
        t2 = connect(host)
    except EdgepackError as exc:
        res.detail["cleanup"] = (f"not possible now ({exc.message}); the next push or "
                                 "rollback removes the stage")
        return
    try:
        # Without a lease: waits for nothing, refused while the old session still holds it.
        d2 = Device(host, t2)
        d2.root = dev.root
        d2.call("abort", "--id", bundle.release_id, timeout=60)
        res.detail["cleanup"] = "stage removed over a new connection"
    except EdgepackError as exc:
        res.detail["cleanup"] = f"deferred to the next push ({first}; {exc.message})"
    finally:
        t2.close()


def _store_report(opts: FleetOptions, host: Host, name: Optional[str], report: dict):
    if not opts.reports_dir:
        return None
    folder = Path(opts.reports_dir) / _safe_name(host.name)
    folder.mkdir(parents=True, exist_ok=True)
    name = os.path.basename(name or f"{int(time.time())}-{report.get('bundle_id')}.json")
    path = folder / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
    return str(path)


# ---------------------------------------------------------------------------- fan-out

def ssh_connector(opts: FleetOptions) -> Callable[[Host], Transport]:
    def connect(host: Host) -> Transport:
        return SSHTransport(host.name, host.address, host.port, host.user, host.key_file,
                            known_hosts=opts.known_hosts, accept_new_hosts=opts.accept_new_hosts,
                            connect_timeout=opts.connect_timeout,
                            dead_after=opts.dead_after).connect()
    return connect


def _fan_out(hosts: list, fn, forks: int, should_halt=None) -> list:
    """Run fn(host) on every host, `forks` at a time; skip the not-yet-started once halted."""
    results: dict = {}
    lock = threading.Lock()

    def job(host):
        if should_halt is not None:
            reason = should_halt()
            if reason:
                r = DeviceResult(host=host.name, status="skipped", step="not started",
                                 reason=f"{host.name}: not started: {reason}")
                with lock:
                    results[host.name] = r
                return
        try:
            r = fn(host)
        except Exception as exc:  # noqa: BLE001 - never lose a host's result
            r = DeviceResult(host=host.name, reason=f"{host.name}: {type(exc).__name__}: {exc}")
        with lock:
            results[host.name] = r

    if hosts:
        with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts)))) as pool:
            list(pool.map(job, hosts))
    return [results[h.name] for h in hosts]


def push(bundle_path: str, hosts: list, opts: FleetOptions,
         connect: Optional[Callable[[Host], Transport]] = None) -> FleetResult:
    started = time.monotonic()
    bundle = open_bundle(bundle_path)
    connect = connect or ssh_connector(opts)
    try:
        one = lambda h: push_one(h, bundle, opts, connect)  # noqa: E731
        canary = hosts[:max(0, opts.canary)] if opts.canary else []
        rest = hosts[len(canary):]
        results = _fan_out(canary, one, opts.forks)
        halted = None
        failed_canary = [r for r in results if not r.ok]
        if failed_canary:
            halted = (f"canary failed on {', '.join(r.host for r in failed_canary)}: "
                      "the rest of the fleet was not touched")
            results += [DeviceResult(host=h.name, status="skipped", step="not started",
                                     reason=f"{h.name}: not started: {halted}") for h in rest]
        else:
            total = len(hosts)
            done = list(results)
            state = {"halted": None}
            lock = threading.Lock()

            def should_halt():
                with lock:
                    if state["halted"]:
                        return state["halted"]
                    if opts.max_fail is not None:
                        failed = sum(1 for r in done if not r.ok)
                        if failed * 100.0 / total > opts.max_fail:
                            state["halted"] = (f"{failed} of {total} devices failed, more than "
                                               f"--max-fail {opts.max_fail:g}%")
                    return state["halted"]

            def tracked(h):
                r = one(h)
                with lock:
                    done.append(r)
                return r

            results += _fan_out(rest, tracked, opts.forks, should_halt)
            halted = state["halted"]
        return FleetResult("push", results, bundle.summary(), halted,
                           time.monotonic() - started)
    finally:
        bundle.cleanup()


def _each_device(action: str, hosts: list, opts: FleetOptions, connect, body, locked: bool) -> FleetResult:
    """Connect to every device in parallel, run body(device, result) (under the device lock
    when `locked`), and record failures; the transport is always closed."""
    started = time.monotonic()
    connect = connect or ssh_connector(opts)

    def one(host):
        res = DeviceResult(host=host.name, step="connect")
        t0 = time.monotonic()
        t = dev = None
        try:
            t = connect(host)
            dev = Device(host, t)
            if locked:
                res.step = "lock"
                dev.lock()
            body(dev, res)
        except EdgepackError as exc:
            res.reason, res.hint = exc.message, exc.hint
        finally:
            if locked and dev is not None:
                dev.unlock()
            if t is not None:
                t.close()
            res.seconds = round(time.monotonic() - t0, 3)
        return res

    return FleetResult(action, _fan_out(hosts, one, opts.forks), None, None, time.monotonic() - started)


def status(hosts: list, opts: FleetOptions,
           connect: Optional[Callable[[Host], Transport]] = None) -> FleetResult:
    def body(dev, res):
        res.step = "status"
        st = dev.call("status", lease=False, timeout=60)
        last = st.get("last_report") or {}
        res.current, res.previous = st.get("current"), st.get("previous")
        res.release_id = st.get("current")
        res.verdict, res.p50_ms = last.get("verdict"), last.get("p50_ms")
        names = {r["id"]: r for r in st.get("releases") or []}
        cur = names.get(st.get("current")) or {}
        res.detail = {"name": cur.get("name"), "version": cur.get("version"),
                      "releases": len(names), "root": st.get("root"),
                      "last_report": last.get("file")}
        res.status, res.step = "reachable", "done"

    return _each_device("status", hosts, opts, connect, body, locked=False)


def rollback(hosts: list, opts: FleetOptions,
             connect: Optional[Callable[[Host], Transport]] = None) -> FleetResult:
    def body(dev, res):
        res.step = "rollback"
        out = dev.call("rollback", timeout=60)
        res.current, res.previous = out.get("current"), out.get("previous")
        res.release_id = out.get("current")
        res.status, res.step = "rolled-back", "done"

    return _each_device("rollback", hosts, opts, connect, body, locked=True)
