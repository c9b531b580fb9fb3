"""Reliability on the real loopback fleet (see conftest.py / fleet_harness.py): after each fault the
device's `current` is the last good release AND still runs, nothing partial is left, the result
says what happened, the other devices were not held up, and no secret leaks anywhere.

docs/RELIABILITY.md lists every case with its test (this file and the other tests/fleet files).
"""
from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fleet_harness import current_of, derive, hosts, leftovers, opts, rid, run_cli
from packager.fleet import push


def assert_current_runs(fleet, dev, root, rid):
    """`current` is `rid`, and its agent self-test passes when run as the device user."""
    assert current_of(dev, root) == rid
    proc = subprocess.run([fleet.python_full, "-B", "-m", "agent", "selftest", "--json", ".",
                           "--runs", "2", "--seconds", "0", "--warmup", "0"],
                          cwd=str(dev.path(root) / "current"), capture_output=True, text=True,
                          timeout=120, user=dev.uid, group=dev.gid, extra_groups=[],
                          env={"HOME": str(dev.home), "PATH": "/usr/bin:/bin",
                               "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-1000:]
    assert json.loads(proc.stdout)["bundle_id"] == rid


def _parity_broken(v1: Path, dst: Path) -> Path:
    """v1 whose stored truth is shifted: the device's runtime 'computes something else'."""
    m = json.loads((v1 / "manifest.json").read_text())
    with np.load(v1 / "vectors.npz") as data:
        arrays = {k: data[k] for k in data.files}
    for key in m["vectors"]["outputs"].values():
        arrays[key] = arrays[key] + 0.5
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return derive(v1, dst, files={"vectors.npz": buf.getvalue()},
                  manifest={"version": m["version"] + "-parity"})


# ---------------------------------------------------------------------------- self-test faults

def test_parity_failure_on_the_device_keeps_current_which_still_runs(fleet, bundle_set, tmp_path):
    root = "~/ep-rel-parity"
    dev = fleet.devices[0]
    hs = hosts({"p": (dev, {})}, root)
    v1 = bundle_set["v1"]
    assert push(str(v1), hs, opts(fleet, tmp_path)).exit_code == 0
    bad = _parity_broken(v1, tmp_path / "parity")
    res = push(str(bad), hs, opts(fleet, tmp_path))
    d = res.devices[0]
    assert res.exit_code == 1 and d.status == "failed" and d.step == "selftest"
    assert "parity: output 'y'" in d.reason and d.hint
    report = json.loads(Path(d.report_file).read_text())  # the report came home and says why
    assert report["parity"]["passed"] is False and report["verdict"]["status"] == "fail"
    assert leftovers(dev, root) == []
    assert not (dev.path(root) / "releases" / rid(bad)).exists()
    assert_current_runs(fleet, dev, root, rid(v1))


@pytest.mark.slow
def test_two_pushes_at_once_the_second_is_refused(fleet, bundle_set, tmp_path):
    """A real concurrent push (not a hand-made lock): the second names the holder and touches
    nothing; the first ends on its own; `current` stays the last good release and runs."""
    root = "~/ep-rel-twice"
    dev = fleet.devices[1]
    hs = hosts({"t": (dev, {})}, root)
    v1 = bundle_set["v1"]
    assert push(str(v1), hs, opts(fleet, tmp_path)).exit_code == 0
    first: dict = {}
    th = threading.Thread(target=lambda: first.update(
        r=push(str(bundle_set["hang"]), hs, opts(fleet, tmp_path, selftest_timeout=8))))
    th.start()
    stage = dev.path(root) / "stage" / rid(bundle_set["hang"])
    deadline = time.monotonic() + 30
    while not (stage / "agent" / "selftest.py").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    second = push(str(bundle_set["v2"]), hs, opts(fleet, tmp_path)).devices[0]
    assert time.monotonic() - t0 < 10  # refused at once, not queued behind the first
    th.join(timeout=90)
    assert second.status == "failed" and second.step == "lock"
    assert "busy" in second.reason and "edgepack push by" in second.reason and second.hint
    d = first["r"].devices[0]
    assert d.step == "selftest" and "did not finish within 8" in d.reason
    assert leftovers(dev, root) == []
    assert not (dev.path(root) / "releases" / rid(bundle_set["v2"])).exists()
    assert_current_runs(fleet, dev, root, rid(v1))
    # the lock died with its holder: the next push goes through
    assert push(str(bundle_set["v2"]), hs, opts(fleet, tmp_path)).exit_code == 0


def test_connect_faults_do_not_hold_up_the_others(fleet, bundle_set, tmp_path):
    """One push; a device whose sshd is gone, one refusing our key, one with an unknown host key,
    one good: the good one activates quickly, the others fail at connect untouched: exit 3."""
    root = "~/ep-rel-connect"
    gone = fleet.add_device("rel-gone")
    fleet.write_known_hosts()
    gone.stop()  # the daemon is gone before we connect
    (gone.dir / "sshd.pid").unlink(missing_ok=True)  # never signal a recycled pid at teardown
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((gone.address, gone.port), timeout=1).close()
            time.sleep(0.1)
        except OSError:
            break
    good, other = fleet.devices[2], fleet.devices[3]
    hs = hosts({"good": (good, {}), "gone": (gone, {}),
                "wrongkey": (other, {"ansible_ssh_private_key_file": str(tmp_path / "k")}),
                "newhost": (other, {"ansible_host": "localhost"})}, root)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    t0 = time.monotonic()
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path))
    got = {d.host: d for d in res.devices}
    assert res.exit_code == 3
    assert got["good"].status == "activated" and got["good"].seconds < 30
    assert time.monotonic() - t0 < 40
    assert "cannot connect" in got["gone"].reason and got["gone"].step == "connect"
    assert "authentication refused" in got["wrongkey"].reason
    assert "unknown" in got["newhost"].reason and "SHA256:" in got["newhost"].reason
    for name in ("gone", "wrongkey", "newhost"):
        assert got[name].step == "connect" and got[name].hint, got[name]
    assert not gone.path(root).exists() and not other.path(root).exists()
    assert_current_runs(fleet, good, root, rid(bundle_set["v1"]))


# ---------------------------------------------------------------------------- security

def _key_body(private_key: Path) -> list:
    return [x for x in private_key.read_text().splitlines() if x and not x.startswith("-----")]


def _all_text(paths) -> str:
    out = []
    for top in paths:
        top = Path(top)
        if not top.exists():
            continue
        for p in [top] if top.is_file() else top.rglob("*"):
            if p.is_file() and not p.is_symlink():
                out.append(p.read_bytes().decode("latin-1"))
    return "\n".join(out)


def test_no_secret_in_output_reports_or_on_the_device(fleet, bundle_set, tmp_path):
    """Push with a key file (and a host whose key has a passphrase) through the CLI with --debug:
    no key body and no passphrase in stdout, stderr, the local reports or anything on the device."""
    root = "~/ep-rel-secret"
    dev = fleet.devices[4]
    locked = tmp_path / "locked_key"
    secret = "hunter2-not-for-logs"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", secret, "-f", str(locked)], check=True)
    inv = fleet.inventory(tmp_path / "fleet.yaml", {
        "ok": dev.vars(), "locked": dev.vars(ansible_ssh_private_key_file=str(locked))},
        group_vars={"edgepack_root": root})
    reports = tmp_path / "reports"
    r = run_cli("--debug", "push", bundle_set["v1"], "-i", inv, "--json", "--known-hosts",
                fleet.known_hosts, "--reports", reports)
    assert r.returncode == 3, r.stderr[-2000:]
    out = json.loads(r.stdout)
    got = {d["host"]: d for d in out["devices"]}
    assert got["ok"]["status"] == "activated"
    assert got["locked"]["step"] == "connect" and "encrypted" in got["locked"]["reason"]
    haystack = "\n".join([r.stdout, r.stderr, _all_text([reports, dev.path(root)])])
    for chunk in _key_body(fleet.client_key) + _key_body(locked):
        assert chunk not in haystack
    assert secret not in haystack
    assert "BEGIN OPENSSH PRIVATE KEY" not in haystack


def test_strict_host_keys_by_default(fleet, bundle_set, tmp_path):
    """No --known-hosts, a user whose ~/.ssh/known_hosts lacks the device: refused, nothing sent,
    nothing recorded."""
    root = "~/ep-rel-strict"
    dev = fleet.devices[5]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    inv = fleet.inventory(tmp_path / "fleet.yaml", {"d": dev.vars()},
                          group_vars={"edgepack_root": root})
    r = run_cli_env({"HOME": str(home)}, "push", bundle_set["v1"], "-i", inv, "--reports",
                    tmp_path / "reports")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown" in lines[0] and "SHA256:" in lines[0] and "(fix: " in lines[0]
    assert "Traceback" not in r.stderr
    assert not dev.path(root).exists()
    assert not (home / ".ssh" / "known_hosts").exists()


def run_cli_env(env: dict, *args):
    import sys
    exe = Path(sys.executable).with_name("edgepack")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "packager.cli"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env))


def test_device_tree_not_writable_by_others_even_from_a_loose_root(fleet, bundle_set, tmp_path):
    """A root (and reports folder) someone made 0777: after a push nothing under it is writable by
    others; releases are read-only (dirs 0555, files 0444), reports 0644."""
    root = "~/ep-rel-modes"
    dev = fleet.devices[6]
    top = dev.path(root)
    (top / "reports").mkdir(parents=True)
    os.chmod(top, 0o777)
    os.chmod(top / "reports", 0o777)
    dev.chown_tree(top)
    hs = hosts({"m": (dev, {})}, root)
    v1 = bundle_set["v1"]
    res = push(str(v1), hs, opts(fleet, tmp_path))
    assert res.exit_code == 0, res.devices[0].reason
    for p in [top] + list(top.rglob("*")):
        if p.is_symlink():
            continue
        mode = p.lstat().st_mode
        assert not mode & stat.S_IWOTH, (p, oct(mode))
    release = top / "releases" / rid(v1)
    for p in [release] + list(release.rglob("*")):
        want = 0o555 if p.is_dir() else 0o444
        assert stat.S_IMODE(p.lstat().st_mode) == want, (p, oct(p.lstat().st_mode))
    for p in (top / "reports").glob("*-*.json"):
        assert not p.stat().st_mode & (stat.S_IWOTH | stat.S_IWGRP), p
    assert_current_runs(fleet, dev, root, rid(v1))


def test_hostile_file_names_in_a_bundle_never_reach_a_shell(fleet, bundle_set, tmp_path):
    """Bundle files named with spaces, quotes, `;`, `$(...)` and backticks: uploaded and verified
    as literal names; nothing runs."""
    odd = "model/a b; touch pwned-a $(touch pwned-b) `touch pwned-c` 'q\"uote.bin"
    weird = derive(bundle_set["v1"], tmp_path / "weird", files={odd: b"data"},
                   manifest={"version": "1; touch pwned-v $(touch pwned-w)"})
    root = "~/ep-rel-names"
    dev = fleet.devices[7]
    hs = hosts({"n": (dev, {})}, root)
    res = push(str(weird), hs, opts(fleet, tmp_path))
    assert res.exit_code == 0, res.devices[0].reason
    assert (dev.path(root) / "current" / odd).read_bytes() == b"data"
    assert not list(dev.home.rglob("pwned*")) and not list(Path("/tmp").glob("pwned*"))
    assert_current_runs(fleet, dev, root, rid(weird))
