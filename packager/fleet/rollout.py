"""Push a bundle to a fleet: per device check, connect, lock, stage, verify, self-test, activate.

Devices run in parallel (forks); a failure on one device never stops the others, except where
the user asked for it (--canary, --max-fail). A failed device keeps its `current` release, its
stage and partial uploads are removed, and its result says which step failed and why.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from packager.errors import EdgepackError
from packager.fleet.bundles import Bundle, open_bundle
from packager.fleet.fanout import fan_out
from packager.fleet.inventory import Host
from packager.fleet.options import FleetOptions
from packager.fleet.remote import DEVICE_COMMAND_TIMEOUT, Device, DeviceRefused, session
from packager.fleet.results import DeviceResult, FleetResult, recording
from packager.fleet.transports import Transport

Connect = Callable[[Host], Transport]


def push(bundle_path: str, hosts: list, opts: FleetOptions,
         connect: Optional[Connect] = None) -> FleetResult:
    """Push the bundle (folder or .tar.gz) to every host; canary first, then the rest."""
    started = time.monotonic()
    bundle = open_bundle(bundle_path)
    connect = connect or opts.connector()
    try:
        results, halted = waves(hosts, lambda h: push_one(h, bundle, opts, connect), opts)
        return FleetResult("push", results, bundle.summary(), halted, time.monotonic() - started)
    finally:
        bundle.cleanup()


def waves(hosts: list, one: Callable[[Host], DeviceResult], opts: FleetOptions):
    """The rollout policy around any per-device flow (push, push --from): the canary first; if
    it failed, the rest are skipped; else the rest under --max-fail. (results, halted reason)."""
    canary, rest = hosts[:opts.canary], hosts[opts.canary:]
    results = fan_out(canary, one, opts.forks)
    failed_canary = [r.host for r in results if not r.ok]
    if failed_canary:
        halted = (f"canary failed on {', '.join(failed_canary)}: "
                  "the rest of the fleet was not touched")
        return results + [DeviceResult.skipped(h.name, halted) for h in rest], halted
    policy = _MaxFail(opts.max_fail, len(hosts), results)
    results += fan_out(rest, lambda h: policy.done(one(h)), opts.forks, policy.halted)
    return results, policy.reason


class _MaxFail:
    """--max-fail: once more than `pct` percent of `total` devices failed, start no more."""

    def __init__(self, pct: Optional[float], total: int, done: list):
        self.pct, self.total, self.seen = pct, total, list(done)
        self.reason: Optional[str] = None
        self._lock = threading.Lock()

    def done(self, r: DeviceResult) -> DeviceResult:
        with self._lock:
            self.seen.append(r)
        return r

    def halted(self) -> Optional[str]:
        with self._lock:
            if self.reason is None and self.pct is not None:
                failed = sum(1 for r in self.seen if not r.ok)
                if failed * 100.0 / self.total > self.pct:
                    self.reason = (f"{failed} of {self.total} devices failed, more than "
                                   f"--max-fail {self.pct:g}%")
            return self.reason


def push_one(host: Host, bundle: Bundle, opts: FleetOptions, connect: Connect) -> DeviceResult:
    """The gated flow on one device; never raises: a failure is recorded in the result."""
    res = DeviceResult(host=host.name, release_id=bundle.release_id, step="check")
    with recording(res):
        check_host(host, bundle)
        with session(host, connect, res, lock=True, prepare=bundle.release_id) as dev:
            _deliver(dev, bundle, opts, connect, res)
    return res


def check_host(host: Host, bundle: Bundle) -> None:
    """Refuse before connecting when the inventory says this bundle is not for this host."""
    if host.profile and bundle.profile and host.profile != bundle.profile:
        raise DeviceRefused(f"{host.name}: expects profile {host.profile!r}, the bundle was "
                            f"built for {bundle.profile!r}",
                            hint=f"build with --profile {host.profile} or --limit the push")
    if host.require_signature and not bundle.signed:
        raise DeviceRefused(f"{host.name}: requires a signed bundle and this one has no "
                            "signature", hint="build with --sign-key KEY")


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


def _deliver(dev: Device, bundle: Bundle, opts: FleetOptions, connect: Connect,
             res: DeviceResult) -> None:
    """prepare -> upload -> facts -> upload -> verify -> selftest -> activate, under the lock.
    Any failure after prepare removes the stage (`current` is never touched before activate)."""
    host, t, rid = dev.host, dev.t, bundle.release_id
    res.step = "prepare"
    if dev.prepare_error:
        raise DeviceRefused(f"{host.name}: {dev.prepare_error}")
    info = dev.prepared if dev.prepared is not None else dev.call("prepare", "--id", rid)
    res.current, res.previous = info.get("current"), info.get("previous")
    if info.get("unchanged"):
        last = info.get("last_report") or {}
        res.verdict, res.p50_ms = last.get("verdict"), last.get("p50_ms")
        res.status, res.step, res.reason = "unchanged", "done", "already the current release"
        return
    try:
        stage = info["stage"]
        res.step = "upload"
        t.put(bundle.file("manifest.json"), f"{stage}/manifest.json")
        plan = dev.call("plan", "--id", rid)
        res.reused_files = plan.get("present", 0) + plan.get("reused", 0)
        need = plan["need"]
        _upload(t, bundle, stage, [f for f in need if f.startswith("agent/")], res)
        res.step = "facts"
        res.facts = dev.facts(stage, bundle.manifest.get("runtime"))
        check_facts(host, bundle, res.facts)
        res.step = "upload"
        _upload(t, bundle, stage, [f for f in need if not f.startswith("agent/")], res)
        if bundle.signed:
            t.put(bundle.file("signature"), f"{stage}/signature")
        res.step = "verify"
        args = ["--id", rid]
        if host.require_signature:
            args.append("--require-signature")
            if host.allowed_signers:
                args += ["--allowed-signers", host.allowed_signers]
        dev.call("verify-stage", *args, timeout=DEVICE_COMMAND_TIMEOUT)
        res.step = "selftest"
        out = dev.selftest(rid, opts.selftest_timeout)
        report = out.get("report")
        if isinstance(report, dict):
            res.verdict = report.get("verdict")
            res.p50_ms = (report.get("latency") or {}).get("p50_ms")
            res.report_file = _store_report(opts, host, out.get("report_file"), report)
        if not out.get("ok"):
            raise DeviceRefused(f"{host.name}: self-test failed: {out.get('error')}",
                                hint="see the report; the device keeps its current release")
        res.step = "activate"
        act = dev.call("activate", "--id", rid, "--keep", str(host.keep))
    except BaseException:
        _cleanup(dev, bundle, connect, res)
        raise
    res.current, res.previous = act.get("current"), act.get("previous")
    res.detail["pruned"] = act.get("pruned")
    res.status, res.step = "activated", "done"


def _upload(t: Transport, bundle: Bundle, stage: str, rels: list, res: DeviceResult):
    for rel in rels:
        local = bundle.file(rel)
        t.put(local, f"{stage}/{rel}")
        res.uploaded_files += 1
        res.uploaded_bytes += os.path.getsize(local)


def _cleanup(dev: Device, bundle: Bundle, connect: Connect, res: DeviceResult):
    """Remove the stage (and every .part in it). Over a fresh connection if the link died."""
    try:
        dev.call("abort", "--id", bundle.release_id, timeout=60)
        res.detail["cleanup"] = "stage removed"
        return
    except EdgepackError as exc:
        first = exc.message
    dev.unlock()
    try:
        t2 = connect(dev.host)
    except EdgepackError as exc:
        res.detail["cleanup"] = (f"not possible now ({exc.message}); the next push or "
                                 "rollback removes the stage")
        return
    try:
        # Without a lease: waits for nothing, refused while the old session still holds it.
        d2 = Device(dev.host, t2)
        d2.root = dev.root
        d2.call("abort", "--id", bundle.release_id, timeout=60)
        res.detail["cleanup"] = "stage removed over a new connection"
    except EdgepackError as exc:
        res.detail["cleanup"] = f"deferred to the next push ({first}; {exc.message})"
    finally:
        t2.close()


def _store_report(opts: FleetOptions, host: Host, name: Optional[str], report: dict):
    """The device's report, copied to <reports_dir>/<host>/ (the host's name made safe)."""
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


def _safe_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "host"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return safe


def _version_tuple(text) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", str(text))[:3])
