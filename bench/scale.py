"""Issue 12: one host vs handing the rollout off. N loopback OpenSSH devices (default 32), a ~20 MB
bundle, first push and unchanged re-push, wall time and bytes the HOST sends and receives:
  - `edgepack push` (device.py kept on the device by hash, the default now);
  - `edgepack push` with device.py sent whole with every command (the code before issue 12);
  - `edgepack push --from` a local registry (docker-registry on 127.0.0.1): devices pull;
  - the Ansible export (`edgepack export ansible`, ansible-core, forks = N);
  - the bare paramiko pool (bench/paramiko_pool.py: upload + hash check only), the peer of item 3;
  - the self-test alone on every device at once (the part of a first push the pool skips).
Host bytes: for the in-process pushes, every byte through the host process's sockets (send/recv
counted); for Ansible and the pool (subprocesses, no registry involved), the loopback tx delta of
the bench's own network namespace (both directions, headers included). Registry bytes (devices'
downloads) are what the devices report. Needs root, sshd and docker-registry.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import common
from .fleet import ANSIBLE_VENV, NETNS_FLAG, build_bench_bundle, dir_bytes, ensure_ansible, lo_bytes
from .probe import edgepack_cmd

COUNT = {"sent": 0, "recv": 0}
_LOCK = threading.Lock()


def count_sockets() -> None:
    """Count every byte this process sends and receives through socket.socket (paramiko, http.client)."""
    def wrap(name, key, measure):
        orig = getattr(socket.socket, name)

        def f(self, *a, **kw):
            out = orig(self, *a, **kw)
            n = measure(a, out)
            with _LOCK:
                COUNT[key] += n
            return out
        setattr(socket.socket, name, f)
    wrap("send", "sent", lambda a, out: out)
    wrap("sendall", "sent", lambda a, out: len(a[0]))
    wrap("recv", "recv", lambda a, out: len(out))
    wrap("recv_into", "recv", lambda a, out: out)


def counted():
    with _LOCK:
        return COUNT["sent"] + COUNT["recv"]


def main(argv=None) -> int:
    ap = common.parser(__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=None, help="fleet size (default 32; 2 with --smoke)")
    ap.add_argument("--kinds", default=None, help="comma-separated subset of push,push-nocache,pull,pool,ansible")
    a = ap.parse_args(argv)
    res = common.Result("scale", "Past one host: push vs push --from a registry vs the Ansible export", a.smoke)
    n = a.devices or (2 if a.smoke else 32)
    reps = a.reps or (1 if a.smoke else 2)
    sys.path.insert(0, str(common.REPO / "tests" / "fleet"))
    sys.path.insert(0, str(common.REPO / "tests" / "oci"))
    from fleet_harness import Fleet, _skip_reason
    from registry_harness import Registry, skip_reason
    reason = _skip_reason() or skip_reason()
    if reason:
        res.note(f"not measured: {reason}")
        res.row("fleet", "push", "s", {"median": None}, extra={"skipped": True, "reason": reason})
        res.write(a.out)
        return 0
    if os.environ.get(NETNS_FLAG) != "1" and shutil.which("unshare"):
        _, how = ensure_ansible()  # needs the network: before entering the namespace
        env = dict(os.environ, **{NETNS_FLAG: "1", "EDGEPACK_BENCH_ANSIBLE_NOTE": how})
        cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
               common.PY, "-m", "bench.scale"] + list(argv if argv is not None else sys.argv[1:])
        return subprocess.run(cmd, env=env, cwd=common.REPO).returncode
    res.note(os.environ.get("EDGEPACK_BENCH_ANSIBLE_NOTE") or ensure_ansible()[1])
    ansible = ANSIBLE_VENV / "bin" / "ansible-playbook"
    count_sockets()

    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="edgepack-bench-scaledev-")), n)
    registry = Registry(work / "registry")
    try:
        t0 = time.perf_counter()
        fleet.start()
        registry.start()
        res.note(f"{n} sshd devices and docker-registry started in {time.perf_counter() - t0:.1f} s")
        bundle = build_bench_bundle(work, a.smoke)
        files = json.loads((bundle / "manifest.json").read_text())["files"]
        res.note(f"bundle: {bundle.name}, {len(files)} files, {dir_bytes(bundle) / 1e6:.1f} MB")
        ref = f"{registry.host}/bench/fleet:v1"
        pub = common.run(edgepack_cmd() + ["publish", bundle, ref, "--plain-http", "--json"],
                         cwd=common.REPO).check().json()
        res.note(f"publish: {pub['layers']} layers, {pub['uploaded_bytes'] / 1e6:.1f} MB in "
                 f"{pub['seconds']:.2f} s (edgepack publish, oras-py)")
        deploy = work / "deploy"
        _inventory(fleet, fleet.devices[:n], "~/unused", work / "export-inv.yaml", ansible=True)
        common.run(edgepack_cmd() + ["export", "ansible", bundle, "-i", work / "export-inv.yaml", "--out",
                                     deploy, "--force", "--json"], cwd=common.REPO).check()
        res.command("edgepack push", edgepack_cmd() + ["push", "BUNDLE", "-i", "inv.yaml", "--forks", n])
        res.command("edgepack push --from", edgepack_cmd() + ["push", "--from", "REGISTRY/bench/fleet:v1",
                                                              "--plain-http", "-i", "inv.yaml", "--forks", n])
        res.command("ansible export", ["edgepack", "export", "ansible", "BUNDLE", "-i", "inv.yaml", "--out",
                                       "deploy", "&&", "ansible-playbook", "-i", "inv.yaml", "-f", n,
                                       "deploy/site.yml"])
        res.command("bare paramiko", [common.PY, "bench/paramiko_pool.py", "hosts.json", "BUNDLE", "--forks", n])
        res.command("this bench", [common.PY, "-m", "bench.scale", "--out", "RESULT.json"])
        kinds = ["push", "push-nocache", "pull", "pool"] + (["ansible"] if ansible.exists() else [])
        if a.kinds:
            kinds = [k for k in kinds if k in a.kinds.split(",")]
        data: dict = {}
        for rep in range(reps):
            res.sample_load(f"rep {rep + 1}")
            order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
            for kind in order:
                tag = f"s{kind[:3]}{kind[-2:]}{rep}"
                for phase in ("first", "again"):
                    m = measure(kind, fleet, registry, ref, bundle, deploy, ansible, work, tag, n)
                    data.setdefault((kind, phase), []).append(m)
                    if not m["ok"]:
                        res.note(f"{kind} {phase} (rep {rep + 1}) FAILED: {m['detail'][:400]}")
                if kind == "push":
                    m = selftest_fanout(fleet, tag, n)
                    data.setdefault(("selftest", "first"), []).append(m)
                for dev in fleet.devices:
                    shutil.rmtree(dev.home / tag, ignore_errors=True)
        res.sample_load("end")
        report(res, data, n)
    finally:
        registry.stop()
        fleet.stop()
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    res.write(a.out)
    return 0


def _inventory(fleet, devs, root, path: Path, ansible: bool = False) -> Path:
    import yaml
    hosts = {d.name: d.vars(edgepack_root=root) for d in devs}
    data = {"all": {"hosts": hosts}}
    if ansible:
        data["all"]["vars"] = {"ansible_ssh_common_args":
                               f"-o UserKnownHostsFile={fleet.known_hosts} -o StrictHostKeyChecking=yes"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def measure(kind, fleet, registry, ref, bundle, deploy, ansible, work, tag, n) -> dict:
    """One rollout to every device; wall s, host bytes, registry bytes, ok, detail."""
    from packager.fleet import FleetOptions, PullOptions, load_inventory, push, push_from
    from packager.fleet import remote
    devs = fleet.devices[:n]
    root = f"~/{tag}"
    out = {"ok": False, "detail": "", "registry_bytes": 0}
    opts = FleetOptions(forks=n, known_hosts=str(fleet.known_hosts), reports_dir=str(work / "reports"))
    if kind in ("push", "push-nocache", "pull"):
        hosts = load_inventory(str(_inventory(fleet, devs, root, work / f"inv-{tag}.yaml"))).select(None)
        orig = remote.Device.argv
        if kind == "push-nocache":  # the code before issue 12: device.py whole with every command
            remote.Device.argv = lambda self, c, *a, full=False: orig(self, c, *a, full=True)
        before, lo0, t0 = counted(), lo_bytes(), time.perf_counter()
        try:
            r = push(str(bundle), hosts, opts) if kind != "pull" else \
                push_from(ref, hosts, opts, PullOptions(plain_http=True))
        finally:
            remote.Device.argv = orig
        out["wall"] = time.perf_counter() - t0
        out["host_bytes"] = counted() - before
        out["lo_bytes"] = lo_bytes() - lo0
        out["ok"] = r.exit_code == 0
        out["detail"] = "; ".join(f"{d.host}: {d.reason}" for d in r.devices if not d.ok)
        out["registry_bytes"] = sum((d.detail or {}).get("received_bytes") or 0 for d in r.devices)
        out["statuses"] = r.summary()
        return out
    if kind == "pool":
        hosts = [{"name": d.name, "host": d.address, "port": d.port, "user": d.user,
                  "key": str(fleet.client_key), "known_hosts": str(fleet.known_hosts),
                  "root": str(d.home / tag)} for d in devs]
        path = work / f"hosts-{tag}.json"
        path.write_text(json.dumps(hosts))
        cmd = [common.PY, common.REPO / "bench" / "paramiko_pool.py", path, bundle, "--forks", n]
        env = None
    else:
        inv = _inventory(fleet, devs, root, work / f"inv-{tag}-a.yaml", ansible=True)
        cp = work / f"cp-{tag}"
        cp.mkdir(exist_ok=True)
        cmd = [ansible, "-i", inv, "-f", n, deploy / "site.yml"]
        env = {"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_CONTROL_PATH_DIR": str(cp),
               "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_RETRY_FILES_ENABLED": "False"}
    lo0 = lo_bytes()
    p = common.run(cmd, cwd=common.REPO, env=env, timeout=1800)
    out.update(wall=p.wall, host_bytes=lo_bytes() - lo0, lo_bytes=lo_bytes() - lo0, ok=p.rc == 0,
               detail=(p.out[-600:] + p.err[-300:]) if p.rc else "")
    return out


def selftest_fanout(fleet, tag, n) -> dict:
    """`python3 -m agent selftest` in every device's current release at once, over SSH: the
    self-test time of a first push, measured alone."""
    from concurrent.futures import ThreadPoolExecutor

    from fleet_harness import hosts as make_hosts
    from packager.fleet import FleetOptions
    devs = fleet.devices[:n]
    hosts = make_hosts({d.name: (d, {}) for d in devs}, f"~/{tag}")
    connect = FleetOptions(known_hosts=str(fleet.known_hosts)).connector()

    def one(pair):
        d, h = pair
        t = connect(h)
        try:
            r = t.run(h.python + ["-B", "-m", "agent", "selftest", "--json", "."],
                      cwd=str(d.path(f"~/{tag}") / "current"), timeout=600)
            return r.rc == 0
        finally:
            t.close()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        oks = list(pool.map(one, zip(devs, hosts)))
    return {"wall": time.perf_counter() - t0, "ok": all(oks), "host_bytes": 0, "registry_bytes": 0,
            "lo_bytes": 0}


def report(res, data, n) -> None:
    from .common import summary
    names = {"push": "edgepack push", "push-nocache": "push, device.py sent every time",
             "pull": "push --from registry", "ansible": "Ansible export", "pool": "bare paramiko pool"}
    g = f"{n} devices"
    for phase, label in (("first", "first push"), ("again", "unchanged re-push")):
        pool = data.get(("pool", phase))
        pw = [m["wall"] for m in pool] if pool else None
        for kind in ("push", "push-nocache", "pull", "ansible"):
            ms = data.get((kind, phase))
            if not ms:
                continue
            wall = [m["wall"] for m in ms]
            extra = {"all_ok": all(m["ok"] for m in ms),
                     "host_mb": summary([m["host_bytes"] / 1e6 for m in ms]),
                     "registry_mb": summary([m["registry_bytes"] / 1e6 for m in ms]),
                     "loopback_mb": summary([m["lo_bytes"] / 1e6 for m in ms])}
            goal = met = None
            if kind == "push" and phase == "again" and pw:
                goal = "≤ 1.2×"
                met = common.ratio(summary(wall)["median"], summary(pw)["median"]) <= 1.2
            if kind == "push" and phase == "first" and pw and data.get(("selftest", "first")):
                st = summary([m["wall"] for m in data[("selftest", "first")]])["median"]
                budget = summary(pw)["median"] + st
                goal = f"≤ pool + self-test ({budget:.1f} s)"
                met = summary(wall)["median"] <= budget
                extra["selftest_fanout_s"] = st
            res.row(g, f"{label} wall: {names[kind]} vs pool", "s", wall, pw, names["pool"], goal, met,
                    extra=extra)
            res.row(g, f"{label} host bytes: {names[kind]} vs pool", "MB",
                    [m["host_bytes"] / 1e6 for m in ms],
                    [m["host_bytes"] / 1e6 for m in pool] if pool else None, names["pool"],
                    extra={"registry_mb": extra["registry_mb"]})
    st = data.get(("selftest", "first"))
    if st:
        res.row(g, "self-test alone on every device at once", "s", [m["wall"] for m in st],
                extra={"all_ok": all(m["ok"] for m in st)})


if __name__ == "__main__":
    sys.exit(main())
