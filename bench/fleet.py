"""Item 4: fleet push. 8 and 32 loopback OpenSSH devices (tests/fleet/fleet_harness.py), a
~20 MB bundle (a real ONNX model), first push and unchanged re-push, wall time and bytes:
  - `edgepack push` (connect, facts, upload, verify, self-test, activate, report home);
  - Ansible (ansible-core in bench/.venv-ansible, same inventory, forks = N): a playbook that copies
    the bundle, checks its hashes and runs the agent's self-test;
  - a bare paramiko thread pool (bench/paramiko_pool.py): upload + hash check only.
Bytes are every byte on the loopback interface (both directions, headers included): the whole
bench runs inside its own network namespace (`unshare --net`), so nothing else is counted.
Repetitions are interleaved; each repetition pushes into fresh folders, then re-pushes.
Needs root and sshd (as the fleet tests); otherwise the result says why it was skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common
from .probe import edgepack_cmd

ANSIBLE_VENV = common.REPO / "bench" / ".venv-ansible"
NETNS_FLAG = "EDGEPACK_BENCH_NETNS"

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  vars:
    dest: "{{ bench_root }}/{{ release_id }}"
  tasks:
    - name: copy the bundle
      ansible.builtin.copy:
        src: "{{ bundle_dir }}/"
        dest: "{{ dest }}/"
    - name: copy the checksums
      ansible.builtin.copy:
        src: "{{ sums_file }}"
        dest: "{{ bench_root }}/{{ release_id }}.sha256"
    - name: check the hashes
      ansible.builtin.command: sha256sum -c --quiet {{ bench_root }}/{{ release_id }}.sha256
      args:
        chdir: "{{ dest }}"
      changed_when: false
    - name: run the agent's self-test
      ansible.builtin.command: "{{ ansible_python_interpreter }} -m agent selftest --json ."
      args:
        chdir: "{{ dest }}"
      changed_when: false
"""

PROFILE = """\
name: bench-fleet
description: x86-cpu with a short latency probe, for the fleet benchmark
extends: x86-cpu
probe:
  warmup_runs: 5
  warmup_seconds: 0.0
  runs: 20
  seconds: 0.05
"""


def lo_bytes() -> int:
    """Loopback tx bytes of THIS process's network namespace (/proc/self/net/dev; /sys/class/net
    would show the namespace that mounted sysfs, i.e. the host's)."""
    for line in Path("/proc/self/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])
    raise RuntimeError("no loopback interface in /proc/self/net/dev")


def big_onnx(path: Path, smoke: bool) -> None:
    """x[1,a] -> MatMul(a,b) -> Relu -> MatMul(b,c): 1024x2048 + 2048x1536 floats = 21 MB."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    a, b, c = (32, 64, 16) if smoke else (1024, 2048, 1536)
    rng = np.random.RandomState(0)
    w1 = numpy_helper.from_array((rng.randn(a, b) / np.sqrt(a)).astype(np.float32), "W1")
    w2 = numpy_helper.from_array((rng.randn(b, c) / np.sqrt(b)).astype(np.float32), "W2")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W1"], ["h"]),
                           helper.make_node("Relu", ["h"], ["r"]),
                           helper.make_node("MatMul", ["r", "W2"], ["y"])], "fleetbench",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, a])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c])], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def build_bench_bundle(work: Path, smoke: bool) -> Path:
    """`edgepack build` of big_onnx with the bench-fleet profile into work/dist (readable by the
    devices' users): the ~20 MB bundle of the fleet benches."""
    (work / "bench-fleet.yaml").write_text(PROFILE)
    big_onnx(work / "fleetmodel.onnx", smoke)
    p = common.run(edgepack_cmd() + ["build", work / "fleetmodel.onnx", "--profile", work / "bench-fleet.yaml",
                                     "--out", work / "dist", "--force", "--json"], cwd=common.REPO).check()
    os.chmod(work / "dist", 0o755)
    return Path(json.loads(p.out)["bundle"])


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def ensure_ansible() -> tuple[str | None, str]:
    """(ansible-playbook path or None, what happened)."""
    exe = ANSIBLE_VENV / "bin" / "ansible-playbook"
    t0 = time.perf_counter()
    p = subprocess.run(["bash", str(common.REPO / "bench" / "setup_ansible.sh")], capture_output=True,
                       text=True)
    took = time.perf_counter() - t0
    if p.returncode == 0 and exe.exists():
        return str(exe), f"ansible-core installs into bench/.venv-ansible: {p.stdout.strip()} " \
                         f"(setup_ansible.sh {took:.1f} s this run)"
    return None, f"ansible-core did NOT install: {(p.stderr or p.stdout).strip()[-300:]}"


def main(argv=None) -> int:
    ap = common.parser(__doc__.splitlines()[0])
    ap.add_argument("--devices", default=None, help="comma-separated fleet sizes (default 8,32; 2 with --smoke)")
    ap.add_argument("--no-netns", action="store_true", help="do not isolate; bytes then include other traffic")
    ap.add_argument("--trace-only", action="store_true",
                    help="only the 1-device round-trip trace, added to the result already in --out")
    a = ap.parse_args(argv)
    res = common.Result("fleet", "Fleet push (edgepack push vs Ansible vs bare paramiko)", a.smoke)
    sizes = [int(x) for x in (a.devices or ("2" if a.smoke else "8,32")).split(",")]
    reps = a.reps or (1 if a.smoke else 3)

    sys.path.insert(0, str(common.REPO / "tests" / "fleet"))
    from fleet_harness import Fleet, _skip_reason  # noqa: E402
    reason = _skip_reason()
    if reason:
        res.note(f"fleet push not measured: {reason}")
        res.row("fleet", "push", "s", {"median": None}, extra={"skipped": True, "reason": reason})
        res.write(a.out)
        return 0

    if os.environ.get(NETNS_FLAG) != "1" and not a.no_netns:
        ansible, how = ensure_ansible()  # needs the network: before entering the namespace
        env = dict(os.environ, **{NETNS_FLAG: "1", "EDGEPACK_BENCH_ANSIBLE_NOTE": how})
        if shutil.which("unshare"):
            cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                   common.PY, "-m", "bench.fleet"] + list(argv if argv is not None else sys.argv[1:])
            return subprocess.run(cmd, env=env, cwd=common.REPO).returncode
        res.note("unshare missing: bytes include all loopback traffic on this machine")
    how = os.environ.get("EDGEPACK_BENCH_ANSIBLE_NOTE")
    if how is None:
        _, how = ensure_ansible()
    exe = ANSIBLE_VENV / "bin" / "ansible-playbook"
    ansible = str(exe) if exe.exists() else None
    res.note(how)
    res.note("bytes = loopback tx bytes (/proc/self/net/dev) delta in the bench's own network namespace: both directions, "
             "TCP/IP headers included")

    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    if a.trace_only:
        if a.out.exists():
            old = json.loads(a.out.read_text())
            old["rows"] = [r for r in old["rows"] if r["group"] != "1 device (trace)"]
            old["notes"] = [n for n in old["notes"] if not n.startswith("1 device,")]
            res.data.update({k: v for k, v in old.items() if k not in ("versions",)})
        trace(res, work, a.smoke)
        res.write(a.out)
        shutil.rmtree(work, ignore_errors=True)
        return 0
    os.chmod(work, 0o755)
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="edgepack-bench-devs-")), max(sizes))
    try:
        t0 = time.perf_counter()
        fleet.start()
        res.note(f"{max(sizes)} sshd devices started in {time.perf_counter() - t0:.1f} s")
        # the bundle
        bundle = build_bench_bundle(work, a.smoke)
        size = dir_bytes(bundle)
        rid = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
        sums = work / "bundle.sha256"
        sums.write_text("".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(bundle)}\n"
                                for f in sorted(bundle.rglob("*")) if f.is_file()))
        res.note(f"bundle: {bundle.name}, {len(list(bundle.rglob('*')))} entries, {size / 1e6:.1f} MB; "
                 "self-test probe: 5 warmup + 20 runs (profile bench-fleet, extends x86-cpu)")
        res.command("edgepack", edgepack_cmd() + ["push", "BUNDLE", "-i", "inventory.yaml", "--forks", "N",
                                                  "--known-hosts", "known_hosts", "--json"])
        res.command("bare paramiko", [common.PY, "bench/paramiko_pool.py", "hosts.json", "BUNDLE", "--forks", "N"])
        if ansible:
            (work / "playbook.yaml").write_text(PLAYBOOK)
            res.command("ansible", f"{ansible} -i inventory.yaml -f N playbook.yaml -e bundle_dir=BUNDLE "
                                   "-e release_id=ID -e sums_file=bundle.sha256")
        approaches = ["edgepack", "paramiko"] + (["ansible"] if ansible else [])
        data = {}
        for n in sizes:
            devs = fleet.devices[:n]
            for rep in range(reps):
                res.sample_load(f"fleet {n} devices rep {rep + 1}")
                order = approaches[rep % len(approaches):] + approaches[:rep % len(approaches)]
                for who in order:
                    tag = f"b{who[:2]}-{n}-{rep}"
                    for phase in ("first", "again"):
                        wall, nbytes, payload, ok, detail = _push(who, fleet, devs, n, tag, bundle, rid, sums,
                                                                  work, ansible, rep)
                        d = data.setdefault((n, who, phase), {"wall": [], "bytes": [], "payload": [], "ok": []})
                        d["wall"].append(wall)
                        d["bytes"].append(nbytes)
                        d["payload"].append(payload)
                        d["ok"].append(ok)
                        if not ok:
                            res.note(f"{who} {phase} push to {n} devices (rep {rep + 1}) FAILED: {detail}")
                    for dev in devs:  # free the space this approach used on every device
                        shutil.rmtree(dev.home / tag, ignore_errors=True)
        res.sample_load("fleet end")
        goals = {("ansible", "first"): 0.2, ("ansible", "again"): 0.1, ("paramiko", "first"): 1.3,
                 ("paramiko", "again"): 1.3}
        names = {"ansible": "Ansible (ansible-core, forks=N)", "paramiko": "bare paramiko pool"}
        for n in sizes:
            for phase, label in (("first", "first push"), ("again", "unchanged re-push")):
                ep = data[(n, "edgepack", phase)]
                for peer in ("paramiko", "ansible"):
                    if (n, peer, phase) not in data:
                        continue
                    pd = data[(n, peer, phase)]
                    g = goals[(peer, phase)]
                    r = common.ratio(common.summary(ep["wall"])["median"], common.summary(pd["wall"])["median"])
                    res.row(f"{n} devices", f"{label} wall time vs {peer}", "s", ep["wall"], pd["wall"],
                            names[peer], f"≤ {g}×", None if r is None else r <= g,
                            extra={"all_ok_edgepack": all(ep["ok"]), "all_ok_peer": all(pd["ok"])})
                    res.row(f"{n} devices", f"{label} bytes on the wire vs {peer}", "MB",
                            [b / 1e6 for b in ep["bytes"]], [b / 1e6 for b in pd["bytes"]], names[peer],
                            extra={"payload_mb_edgepack": common.summary([b / 1e6 for b in ep["payload"] if b is not None]),
                                   "payload_mb_peer": common.summary([b / 1e6 for b in pd["payload"] if b is not None])})
        trace(res, work, a.smoke)
    finally:
        fleet.stop()
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    res.write(a.out)
    return 0


def trace(res, work: Path, smoke: bool) -> None:
    """One device alone (bench/fleet_trace.py): round trips of a push and what each costs."""
    out = work / "trace.json"
    cmd = [common.PY, "-m", "bench.fleet_trace", "--out", out] + (["--smoke"] if smoke else [])
    res.command("round trips (1 device)", [common.PY, "-m", "bench.fleet_trace", "--out", "trace.json"])
    p = common.run(cmd, cwd=common.REPO, timeout=600)
    if p.rc != 0 or not out.exists():
        res.note(f"round-trip trace failed: {p.err[-300:]}")
        return
    t = json.loads(out.read_text())
    if t.get("skipped"):
        return
    for phase, label in (("first", "first push"), ("again", "unchanged re-push")):
        x = t[phase]
        steps = {}
        for c in x["calls"]:
            key = c["what"].replace("python3 ", "") if c["kind"] != "put" else "uploads (SFTP)"
            steps[key or c["kind"]] = round(steps.get(key or c["kind"], 0.0) + c["seconds"], 3)
        res.row("1 device (trace)", f"{label} wall time vs paramiko", "s", [x["wall_s"]],
                [t[f"paramiko_{phase}_wall_s"]], "bare paramiko pool",
                extra={"remote_commands": x["remote_commands"], "uploads": x["uploads"],
                       "command_line_bytes": x["command_line_bytes"], "seconds_per_step": steps})
        res.note(f"1 device, {label}: {x['remote_commands']} remote commands + {x['uploads']} SFTP uploads, "
                 f"{x['command_line_bytes'] / 1e3:.0f} kB of command lines (agent/device.py sent as `python3 -c`); "
                 "seconds per step: " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))


def _push(who, fleet, devs, n, tag, bundle, rid, sums, work, ansible, rep):
    """One push; returns (wall s, loopback bytes, payload bytes or None, all ok, detail)."""
    import yaml
    if who == "edgepack":
        inv = {d.name: d.vars(edgepack_root=f"~/{tag}") for d in devs}
        path = work / f"inv-{tag}.yaml"
        path.write_text(yaml.safe_dump({"all": {"hosts": inv}}, sort_keys=False))
        cmd = edgepack_cmd() + ["push", bundle, "-i", path, "--forks", n, "--known-hosts", fleet.known_hosts,
                                "--reports", work / "reports", "--json"]
        env = None
    elif who == "paramiko":
        hosts = [{"name": d.name, "host": d.address, "port": d.port, "user": d.user, "key": str(fleet.client_key),
                  "known_hosts": str(fleet.known_hosts), "root": str(d.home / tag)} for d in devs]
        path = work / f"hosts-{tag}.json"
        path.write_text(json.dumps(hosts))
        cmd = [common.PY, common.REPO / "bench" / "paramiko_pool.py", path, bundle, "--forks", n]
        env = None
    else:
        inv = {d.name: d.vars(bench_root=str(d.home / tag)) for d in devs}
        path = work / f"inv-{tag}.yaml"
        path.write_text(yaml.safe_dump({"all": {"hosts": inv, "vars": {
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={fleet.known_hosts} -o StrictHostKeyChecking=yes"}}},
            sort_keys=False))
        cmd = [ansible, "-i", path, "-f", n, work / "playbook.yaml", "-e", f"bundle_dir={bundle}",
               "-e", f"release_id={rid}", "-e", f"sums_file={sums}"]
        cp = work / f"ansible-cp-{tag}"  # cold SSH control masters for each first push
        cp.mkdir(exist_ok=True)
        env = {"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_CONTROL_PATH_DIR": str(cp),
               "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_RETRY_FILES_ENABLED": "False"}
    before = lo_bytes()
    p = common.run(cmd, cwd=common.REPO, env=env, timeout=1200)
    nbytes = lo_bytes() - before
    payload, ok, detail = None, p.rc == 0, ""
    try:
        if who == "edgepack":
            out = json.loads(p.out)
            payload = sum(d.get("uploaded_bytes") or 0 for d in out["devices"])
            bad = [f"{d['host']}: {d.get('reason')}" for d in out["devices"] if d["status"] not in ("activated", "unchanged")]
            detail = "; ".join(bad[:3])
        elif who == "paramiko":
            out = json.loads(p.out)
            payload = out["bytes"]
            detail = "; ".join(f"{d['name']}: {d.get('error')}" for d in out["devices"] if not d["ok"])[:500]
        else:
            detail = p.out[-800:]
    except (ValueError, KeyError) as exc:
        detail = f"{exc}: {p.err[-500:]} {p.out[-300:]}"
    if not ok and not detail:
        detail = p.err[-500:]
    return p.wall, nbytes, payload, ok, detail


if __name__ == "__main__":
    sys.exit(main())
