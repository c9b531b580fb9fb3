"""Where a push's time goes on ONE loopback device (no other device competing for the CPU):
every remote command and upload of `edgepack push` (first and unchanged re-push), timed, with
the bytes of its command line, against the bare paramiko pool on the same device.

    python -m bench.fleet_trace [--smoke] --out RESULT.json

Used by the findings of bench/fleet.py (round trips and their cost); needs root + sshd.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import common
from .fleet import PROFILE, big_onnx
from .probe import edgepack_cmd


def main(argv=None) -> int:
    a = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    sys.path.insert(0, str(common.REPO / "tests" / "fleet"))
    from fleet_harness import Fleet, _skip_reason
    out = {"name": "fleet_trace", "smoke": a.smoke, "skipped": _skip_reason()}
    if out["skipped"]:
        a.out.write_text(json.dumps(out))
        return 0
    from packager.fleet import FleetOptions, SSHTransport, parse_inventory, push

    calls = []
    orig = {k: getattr(SSHTransport, k) for k in ("run", "start", "put", "connect")}

    def wrap(kind):
        def f(self, *args, **kw):
            t0 = time.perf_counter()
            try:
                return orig[kind](self, *args, **kw)
            finally:
                what = ""
                argv_bytes = 0
                if kind in ("run", "start") and args:
                    argv = [str(x) for x in args[0]]
                    argv_bytes = sum(len(x) + 1 for x in argv)
                    words = [x for x in argv if "\n" not in x and not x.startswith("-")]
                    what = " ".join(w.rsplit("/", 1)[-1] for w in words[:3 if words[1:2] == ["agent"] else 2])
                elif kind == "put":
                    what = str(args[1]).rsplit("/stage/", 1)[-1].split("/", 1)[-1]
                calls.append({"kind": kind, "what": what, "seconds": round(time.perf_counter() - t0, 4),
                              "argv_bytes": argv_bytes})
        return f

    for k in orig:
        setattr(SSHTransport, k, wrap(k))
    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-trace-"))
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="edgepack-bench-tracedev-")), 1)
    try:
        fleet.start()
        (work / "bench-fleet.yaml").write_text(PROFILE)
        big_onnx(work / "fleetmodel.onnx", a.smoke)
        p = common.run(edgepack_cmd() + ["build", work / "fleetmodel.onnx", "--profile", work / "bench-fleet.yaml",
                                         "--out", work / "dist", "--force", "--json"], cwd=common.REPO).check()
        bundle = json.loads(p.out)["bundle"]
        d = fleet.devices[0]
        hosts = parse_inventory({"all": {"hosts": {d.name: d.vars(edgepack_root="~/trace")}}}).select(None)
        opts = FleetOptions(known_hosts=str(fleet.known_hosts), reports_dir=str(work / "reports"), forks=1)
        for phase in ("first", "again"):
            calls.clear()
            t0 = time.perf_counter()
            r = push(bundle, hosts, opts)
            wall = time.perf_counter() - t0
            out[phase] = {"wall_s": round(wall, 3), "status": r.devices[0].status, "calls": list(calls),
                          "remote_commands": sum(1 for c in calls if c["kind"] in ("run", "start")),
                          "uploads": sum(1 for c in calls if c["kind"] == "put"),
                          "command_line_bytes": sum(c["argv_bytes"] for c in calls),
                          "seconds_by_kind": {k: round(sum(c["seconds"] for c in calls if c["kind"] == k), 3)
                                              for k in ("connect", "run", "start", "put")}}
        hosts_json = work / "hosts.json"
        hosts_json.write_text(json.dumps([{"name": d.name, "host": d.address, "port": d.port, "user": d.user,
                                           "key": str(fleet.client_key), "known_hosts": str(fleet.known_hosts),
                                           "root": str(d.home / "trace-pm")}]))
        for phase in ("first", "again"):
            p = common.run([common.PY, common.REPO / "bench" / "paramiko_pool.py", hosts_json, bundle, "--forks", "1"])
            out[f"paramiko_{phase}_wall_s"] = round(p.wall, 3)
    finally:
        for k, v in orig.items():
            setattr(SSHTransport, k, v)
        fleet.stop()
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
