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

from packager import compat, progress
from packager.errors import EdgepackError
from packager.fleet.bundles import Bundle, open_bundle
from packager.fleet.fanout import START, WAIT, Admission, fan_out
from packager.fleet.inventory import Host
from packager.fleet.options import FleetOptions
from packager.fleet.remote import Device, DeviceRefused, session
from packager.fleet.results import DeviceResult, FleetResult, recording
from packager.fleet.transports import Transport

Connect = Callable[[Host], Transport]


def push(bundle_path: str, hosts: list, opts: FleetOptions,
         connect: Optional[Connect] = None) -> FleetResult:
    """Push the bundle (folder or .tar.gz) to every host; canary first, then the rest."""
    started = time.monotonic()
    bundle = open_bundle(bundle_path)
    connect = connect or opts.connector()
    cancel = threading.Event()
    board = progress.board("push", [h.name for h in hosts])
    try:
        one = lambda h: push_one(h, bundle, opts, connect, cancel)  # noqa: E731
        results, halted, interrupted = waves(hosts, one, opts, cancel, board)
        out = FleetResult("push", list(results), bundle.summary(), halted,
                          time.monotonic() - started, interrupted=interrupted)
        store_result(opts, out)
        return out
    finally:
        board.close()
        bundle.cleanup()


def waves(hosts: list, one: Callable[[Host], DeviceResult], opts: FleetOptions,
          cancel: Optional[threading.Event] = None, board=None):
    """The rollout policy around any per-device flow (push, push --from): the canary first; if it
    failed (or Ctrl-C), the rest are skipped; else the rest under --max-fail.
    (results, halted reason, interrupted)."""
    cancel = cancel if cancel is not None else threading.Event()
    canary, rest = hosts[:opts.canary], hosts[opts.canary:]
    results = fan_out(canary, one, opts.forks, cancel=cancel, board=board)
    interrupted = results.interrupted
    failed_canary = [r.host for r in results if not r.ok]
    if failed_canary or interrupted:
        halted = "interrupted (Ctrl-C)" if interrupted else (
            f"canary failed on {', '.join(failed_canary)}: the rest of the fleet was not touched")
        return list(results) + [DeviceResult.skipped(h.name, halted) for h in rest], halted, interrupted
    policy = MaxFail(opts.max_fail, len(hosts), results)
    more = fan_out(rest, one, opts.forks, policy, cancel, board)
    interrupted = more.interrupted
    return list(results) + list(more), ("interrupted (Ctrl-C)" if interrupted else policy.reason), interrupted


class MaxFail(Admission):
    """--max-fail PCT: never more than PCT percent of `total` devices failed, plus the one whose
    failure crosses the line. A device starts only while the failures so far plus every device
    in flight (each of which may still fail) stay within the limit; otherwise it waits for one
    to finish. Once the limit is crossed, the devices not started are skipped. So the failures
    are the same as one device at a time (--forks 1) would give, whatever --forks is."""

    def __init__(self, pct: Optional[float], total: int, done: list):
        self.pct, self.total = pct, total
        self.failed = sum(1 for r in done if not r.ok)
        self.allowed = None if pct is None else int(pct * total // 100 + 1e-9)
        self.reason: Optional[str] = None

    def admit(self, in_flight: int):
        if self.allowed is None:
            return START
        if self.failed > self.allowed:
            self.reason = self.reason or (f"{self.failed} of {self.total} devices failed, more "
                                          f"than --max-fail {self.pct:g}%")
            return self.reason
        return START if self.failed + in_flight <= self.allowed else WAIT

    def record(self, result: DeviceResult) -> None:
        if not result.ok:
            self.failed += 1


def push_one(host: Host, bundle: Bundle, opts: FleetOptions, connect: Connect,
             cancel: Optional[threading.Event] = None) -> DeviceResult:
    """The gated flow on one device; never raises: a failure is recorded in the result."""
    res = DeviceResult(host=host.name, release_id=bundle.release_id, step="check")
    with recording(res):
        check_host(host, bundle)
        with session(host, connect, res, lock=True, timeout=opts.command_timeout,
                     cancel=cancel, prepare=bundle.release_id) as dev:
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


def check_facts(host: Host, bundle: Bundle, facts: dict, opts: FleetOptions,
                res: DeviceResult) -> None:
    """The compatibility guard (packager/compat.py): refuse, naming every mismatch, when the
    bundle cannot run on the device; --force-compat records them and goes on."""
    problems = compat.check(compat.needs_of(bundle.manifest), facts, bundle.profile)
    if not problems:
        return
    res.detail["compat"] = [p.to_dict() for p in problems]
    if opts.force_compat:
        res.detail["compat_forced"] = True
        return
    raise DeviceRefused(f"{host.name}: " + "; ".join(p.message for p in problems),
                        hint="; ".join(dict.fromkeys(p.fix for p in problems))
                        + " (or --force-compat to push anyway)")


def _deliver(dev: Device, bundle: Bundle, opts: FleetOptions, connect: Connect,
             res: DeviceResult) -> None:
    """facts -> prepare -> upload agent -> facts -> upload -> verify -> selftest -> activate,
    under the lock. Any failure after prepare removes the stage (`current` is never touched
    before activate)."""
    host, t, rid = dev.host, dev.t, bundle.release_id
    if dev.prepare_error:
        raise DeviceRefused(f"{host.name}: {dev.prepare_error}")
    info = dev.prepared   # the lock prepared it in the same round trip only if it is already current
    if info is None:
        res.at("facts")  # before anything is sent or made: device.py's own facts (stdlib)
        res.facts = dict(dev.device_facts or dev.call("device-facts", lease=False))
        res.facts.pop("ok", None)
        check_facts(host, bundle, res.facts, opts, res)
        res.at("prepare")
        info = dev.call("prepare", "--id", rid)
    res.current, res.previous = info.get("current"), info.get("previous")
    if info.get("unchanged"):
        if opts.retest:
            return _retest(dev, bundle, opts, res)
        last = info.get("last_report") or {}
        res.verdict, res.p50_ms = last.get("verdict"), last.get("p50_ms")
        res.status, res.reason = "unchanged", "already the current release"
        res.at("done")
        return
    try:
        stage = info["stage"]
        res.at("upload")
        t.put(bundle.file("manifest.json"), f"{stage}/manifest.json")
        plan = dev.call("plan", "--id", rid)
        res.reused_files = plan.get("present", 0) + plan.get("reused", 0)
        need = plan["need"]
        _upload(t, bundle, stage, [f for f in need if f.startswith("agent/")], res)
        if compat.needs_of(bundle.manifest).get("providers"):
            # Only the runtime can say which providers / delegates it has: the agent's facts
            # (it imports numpy and the runtime), before the model is sent.
            res.at("facts")
            res.facts = {**res.facts, **dev.facts(stage, bundle.manifest.get("runtime"))}
            check_facts(host, bundle, res.facts, opts, res)
        res.at("upload")
        _upload(t, bundle, stage, [f for f in need if not f.startswith("agent/")], res)
        if bundle.signed:
            t.put(bundle.file("signature"), f"{stage}/signature")
        res.at("verify")
        args = ["--id", rid]
        if host.require_signature:
            args.append("--require-signature")
            if host.allowed_signers:
                args += ["--allowed-signers", host.allowed_signers]
        dev.call("verify-stage", *args)
        res.at("selftest")
        _selftest(dev, opts, res, dev.selftest(rid, opts.selftest_timeout))
        res.at("activate")
        act = dev.call("activate", "--id", rid, "--keep", str(host.keep))
    except BaseException:
        _cleanup(dev, bundle, connect, res)
        raise
    res.current, res.previous = act.get("current"), act.get("previous")
    res.detail["pruned"] = act.get("pruned")
    res.status = "activated"
    res.at("done")


def _selftest(dev: Device, opts: FleetOptions, res: DeviceResult, out: dict) -> None:
    """Record a self-test's answer (verdict, p50, the report brought home); raise on a fail."""
    report = out.get("report")
    if isinstance(report, dict):
        res.verdict = report.get("verdict")
        res.p50_ms = (report.get("latency") or {}).get("p50_ms")
        res.report_file = _store_report(opts, dev.host, out.get("report_file"), report)
    if not out.get("ok"):
        raise DeviceRefused(f"{dev.host.name}: self-test failed: {out.get('error')}",
                            hint="see the report; the device keeps its current release")


def _retest(dev: Device, bundle: Bundle, opts: FleetOptions, res: DeviceResult) -> None:
    """push --retest on a device whose current release is the bundle: self-test it again
    where it is (releases/<id>, read-only); `current` stays as it is, pass or fail."""
    res.at("retest")
    _selftest(dev, opts, res, dev.selftest(bundle.release_id, opts.selftest_timeout,
                                           command="release-selftest"))
    res.status, res.reason = "retested", "current release self-tested again"
    res.at("done")


def _upload(t: Transport, bundle: Bundle, stage: str, rels: list, res: DeviceResult):
    for rel in rels:
        local = bundle.file(rel)
        t.put(local, f"{stage}/{rel}")
        res.uploaded_files += 1
        res.uploaded_bytes += os.path.getsize(local)


def _cleanup(dev: Device, bundle: Bundle, connect: Connect, res: DeviceResult):
    """Remove the stage (and every .part in it). Over a fresh connection if the link died."""
    try:
        dev.call("abort", "--id", bundle.release_id, timeout=60, interruptible=False)
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
        d2.call("abort", "--id", bundle.release_id, timeout=60, interruptible=False)
        res.detail["cleanup"] = "stage removed over a new connection"
    except EdgepackError as exc:
        res.detail["cleanup"] = f"deferred to the next push ({first}; {exc.message})"
    finally:
        t2.close()


def _store_report(opts: FleetOptions, host: Host, name: Optional[str], report: dict):
    """The device's report, copied to <reports_dir>/<host>/ (the host's name made safe)."""
    if not opts.reports_dir:
        return None
    folder = Path(opts.reports_dir) / safe_name(host.name)
    folder.mkdir(parents=True, exist_ok=True)
    name = os.path.basename(name or f"{int(time.time())}-{report.get('bundle_id')}.json")
    path = folder / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
    return str(path)


def safe_name(name: str) -> str:
    """A host's name as a local folder name (its reports): odd characters replaced, plus a
    hash of the real name whenever anything was replaced (so two hosts never share one)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "host"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return safe


def store_result(opts: FleetOptions, result: FleetResult) -> Optional[str]:
    """The push's result (every device, failed ones with their reasons) as
    <reports_dir>/fleet-<time>-<action>.json, for `edgepack report`."""
    if not opts.reports_dir:
        return None
    folder = Path(opts.reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "%06dZ" % (time.time() % 1 * 1e6)
    path = folder / f"fleet-{stamp}-{result.action}.json"
    tmp = path.with_suffix(".tmp")
    data = result.to_dict()
    data["finished"] = stamp
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
    return str(path)
