"""`edgepack push --from REGISTRY/REPO:TAG`: every device pulls the bundle itself.

The host resolves the reference once (packager/oci/resolve.py: the manifest digest, the bundle's
manifest.json, whether it is signed), refuses devices the bundle is not for (the same
`check_host` as push), then sends each device ONE command: agent/pull.py with the device's own
layout, verification, self-test and activation from agent/device.py (kept on the device by hash,
as for every fleet command; registry.py and pull.py travel with the command, ~7 kB compressed).
Every device pulls `REGISTRY/REPO@sha256:...`, so a tag moved during the rollout changes nothing.
The canary and --max-fail policy are push's (`rollout.waves`); the host sends no bundle bytes.
"""
from __future__ import annotations

import base64
import importlib.util
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

from packager.fleet.inventory import Host
from packager.fleet.options import FleetOptions
from packager.fleet.remote import (Device, DeviceRefused, agent_missing, device_source,
                                   device_stub, holder_name, last_json, python_hint, session,
                                   tail)
from packager.fleet.results import DeviceResult, FleetResult, recording
from packager import progress
from packager.fleet.rollout import _store_report, check_host, waves

DOWNLOAD_ALLOWANCE = 600.0  # seconds a pull may spend on top of the self-test timeout
HINTS = {
    "resolve": "check the reference, the device's registry credentials (edgepack_registry_credentials) "
               "and CA (edgepack_registry_ca), and --plain-http",
    "download": "the device keeps its current release; partial blobs resume on the next pull",
    "lock": "wait for the other push to finish, then retry",
    "verify": "republish the bundle; the device keeps its current release",
    "selftest": "see the report; the device keeps its current release",
}
_PROGRAM: Optional[str] = None


@dataclass(frozen=True)
class PullOptions:
    plain_http: bool = False  # the registry speaks HTTP (devices and host)
    ca_file: Optional[str] = None  # host side, to resolve the reference (devices: edgepack_registry_ca)
    credentials: Optional[str] = None  # host side (devices: edgepack_registry_credentials)


def _packed(module: str) -> str:
    spec = importlib.util.find_spec(module)
    with open(spec.origin, "rb") as f:
        return base64.b64encode(zlib.compress(f.read(), 9)).decode("ascii")


def program() -> str:
    """What runs after device.py's bytes are in `s`: an in-memory `agent` package holding
    device, registry and pull (the relative imports of pull.py resolve to it), then pull.main."""
    global _PROGRAM
    if _PROGRAM is None:
        _PROGRAM = (
            "import base64,sys,types,zlib\n"
            "pkg=types.ModuleType('agent');pkg.__path__=[];sys.modules['agent']=pkg\n"
            "def _load(n,src,fn):\n"
            " m=types.ModuleType('agent.'+n);m.__package__='agent';m.__file__=fn\n"
            " sys.modules['agent.'+n]=m;setattr(pkg,n,m);exec(compile(src,fn,'exec'),m.__dict__)\n"
            " return m\n"
            "_load('device',s,p)\n"
            "_load('registry',zlib.decompress(base64.b64decode('%s')),'agent/registry.py')\n"
            "sys.exit(_load('pull',zlib.decompress(base64.b64decode('%s')),'agent/pull.py')"
            ".main(sys.argv[1:]))" % (_packed("agent.registry"), _packed("agent.pull")))
    return _PROGRAM


def push_from(ref: str, hosts: list, opts: FleetOptions, pull_opts: PullOptions = PullOptions(),
              connect: Optional[Callable] = None) -> FleetResult:
    """Every host pulls `ref` (pinned to its digest) and activates it behind the usual gate."""
    from packager.oci import resolve

    started = time.monotonic()
    resolved = resolve(ref, pull_opts.plain_http, pull_opts.ca_file, pull_opts.credentials)
    connect = connect or opts.connector()
    board = progress.board("push --from", [h.name for h in hosts])
    try:
        results, halted, interrupted = waves(hosts, lambda h: pull_one(h, resolved, opts, pull_opts, connect),
                                             opts, board=board)
    finally:
        board.close()
    return FleetResult("push", results, resolved.summary(), halted, time.monotonic() - started,
                       interrupted=interrupted)


def pull_argv(dev: Device, resolved, opts: FleetOptions, pull_opts: PullOptions,
              full: bool) -> list:
    host = dev.host
    code = (device_source(dev.root, then=program()) if full
            else device_stub(dev.root, then=program()))
    argv = host.python + ["-B", "-c", code, resolved.pinned, "--root", dev.root, "--json",
                          "--keep", str(host.keep), "--selftest-timeout", str(opts.selftest_timeout),
                          "--holder", holder_name().replace("edgepack push", "edgepack push --from"),
                          "--expect-id", resolved.release_id]
    if pull_opts.plain_http:
        argv.append("--plain-http")
    for var, flag in (("edgepack_registry_credentials", "--credentials"),
                      ("edgepack_registry_ca", "--ca-file")):
        if host.vars.get(var):
            argv += [flag, str(host.vars[var])]
    if host.require_signature:
        argv.append("--require-signature")
        if host.allowed_signers:
            argv += ["--allowed-signers", host.allowed_signers]
    return argv


def pull_one(host: Host, resolved, opts: FleetOptions, pull_opts: PullOptions,
             connect: Callable) -> DeviceResult:
    """One device: check, connect, `agent pull`; never raises (the failure is in the result)."""
    res = DeviceResult(host=host.name, release_id=resolved.release_id, step="check")
    with recording(res):
        check_host(host, resolved)
        with session(host, connect, res, lock=False) as dev:
            res.at("pull")
            timeout = opts.selftest_timeout + DOWNLOAD_ALLOWANCE
            r = dev.t.run(pull_argv(dev, resolved, opts, pull_opts, False), timeout=timeout)
            out = last_json(r.stdout)
            if agent_missing(r.rc, out):
                dev.agent_sent += 1
                r = dev.t.run(pull_argv(dev, resolved, opts, pull_opts, True),
                              timeout=timeout)
                out = last_json(r.stdout)
            if out is None:
                raise DeviceRefused(f"{host.name}: `agent pull` failed (exit {r.rc}): "
                                    f"{tail(r.stderr) or tail(r.stdout) or 'no output'}",
                                    hint=python_hint(host, r.rc, r.stderr))
            _record(res, out, opts, host)
    return res


def _record(res: DeviceResult, out: dict, opts: FleetOptions, host: Host) -> None:
    res.step = out.get("step") or res.step
    res.current, res.previous = out.get("current"), out.get("previous")
    res.reused_files = out.get("reused_files") or 0
    res.detail.update({k: out.get(k) for k in ("downloaded_files", "downloaded_bytes",
                                               "received_bytes", "manifest_digest", "ref")})
    report = out.get("report")
    if isinstance(report, dict):
        res.verdict = report.get("verdict")
        res.p50_ms = (report.get("latency") or {}).get("p50_ms")
        res.report_file = _store_report(opts, host, out.get("report_file"), report)
    elif isinstance(out.get("last_report"), dict):
        res.verdict, res.p50_ms = out["last_report"].get("verdict"), out["last_report"].get("p50_ms")
    if not out.get("ok"):
        raise DeviceRefused(f"{host.name}: pull failed at {out.get('step')}: {out.get('error')}",
                            hint=HINTS.get(out.get("step"), "the device keeps its current release"))
    res.status = out.get("status") or "activated"
    res.reason = "already the current release" if res.status == "unchanged" else None
    res.step = "done"
