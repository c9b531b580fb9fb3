"""Fleet push against real OpenSSH daemons on loopback (see conftest.py)."""
from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from fleet_harness import current_of, derive, hosts, leftovers, opts, rid, run_cli
from packager import signing
from packager import fleet as rollout
from packager.fleet.transports.ssh import SSHTransport


def by_host(result):
    return {d.host: d for d in result.devices}


# ---------------------------------------------------------------------------- the happy path

def test_push_fleet_unchanged_and_new_version(fleet, bundle_set, tmp_path):
    root = "~/ep-push"
    devs = fleet.devices[:8]
    hs = hosts({d.name: (d, {}) for d in devs}, root)
    v1, v2 = bundle_set["v1"], bundle_set["v2"]

    first = rollout.push(str(v1), hs, opts(fleet, tmp_path))
    assert first.exit_code == 0, [d.reason for d in first.devices]
    assert {d.status for d in first.devices} == {"activated"}
    for d, r in zip(devs, first.devices):
        assert current_of(d, root) == rid(v1)
        assert r.uploaded_files == len(json.loads((v1 / "manifest.json").read_text())["files"])
        assert r.verdict["passed"] and r.p50_ms is not None
        assert Path(r.report_file).is_file()  # the report came home
        assert list((d.path(root) / "reports").glob(f"*-{rid(v1)}.json"))
        assert leftovers(d, root) == []
        for p in d.path(root).rglob("*"):  # nothing writable by others, everything the user's
            assert p.is_symlink() or not (p.lstat().st_mode & stat.S_IWOTH), p
            assert p.lstat().st_uid == d.uid, p

    again = rollout.push(str(v1), hs, opts(fleet, tmp_path))
    assert again.exit_code == 0
    assert {d.status for d in again.devices} == {"unchanged"}
    assert sum(d.uploaded_files for d in again.devices) == 0

    # v2 differs only in its manifest: every file is reused from v1 on the device
    second = rollout.push(str(v2), hs, opts(fleet, tmp_path))
    assert second.exit_code == 0, [d.reason for d in second.devices]
    for d, r in zip(devs, second.devices):
        assert r.status == "activated" and r.uploaded_files == 0 and r.reused_files > 0
        assert current_of(d, root) == rid(v2)
        assert os.path.basename(os.readlink(d.path(root) / "previous")) == rid(v1)

    st = rollout.status(hs, opts(fleet, tmp_path))
    assert st.exit_code == 0
    assert all(d.current == rid(v2) and d.verdict["passed"] for d in st.devices)


def test_rollback_switches_to_previous_and_back(fleet, bundle_set, tmp_path):
    root = "~/ep-rollback"
    dev = fleet.devices[1]
    hs = hosts({"rb": (dev, {})}, root)
    o = opts(fleet, tmp_path)
    res = rollout.rollback(hs, o)  # nothing there yet
    assert res.exit_code == 1 and "no previous release" in res.devices[0].reason
    assert rollout.push(str(bundle_set["v1"]), hs, o).exit_code == 0
    assert rollout.push(str(bundle_set["v2"]), hs, o).exit_code == 0
    res = rollout.rollback(hs, o)
    assert res.exit_code == 0 and res.devices[0].status == "rolled-back"
    assert current_of(dev, root) == rid(bundle_set["v1"])
    res = rollout.rollback(hs, o)
    assert current_of(dev, root) == rid(bundle_set["v2"])


# ---------------------------------------------------------------------------- refusals

def test_wrong_and_unknown_host_key(fleet, bundle_set, tmp_path):
    root = "~/ep-hostkey"
    a, b = fleet.devices[2], fleet.devices[3]
    hs = hosts({"a": (a, {})}, root)
    wrong = tmp_path / "wrong_known_hosts"  # a's address and port with b's key
    wrong.write_text(f"[{a.address}]:{a.port} {b.host_pub[0]} {b.host_pub[1]}\n")
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(wrong)))
    d = res.devices[0]
    assert res.exit_code == 1 and d.step == "connect"
    assert "CHANGED" in d.reason and "SHA256:" in d.reason and "nothing was sent" in d.reason
    assert not a.path(root).exists()
    # --accept-new-hosts never overrides a changed key
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(wrong),
                                                       accept_new_hosts=True))
    assert res.exit_code == 1 and "CHANGED" in res.devices[0].reason

    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(empty)))
    assert res.exit_code == 1 and "unknown" in res.devices[0].reason
    assert "SHA256:" in res.devices[0].reason and not a.path(root).exists()
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(empty),
                                                       accept_new_hosts=True))
    assert res.exit_code == 0, res.devices[0].reason
    assert f"[{a.address}]:{a.port} ssh-ed25519 {a.host_pub[1]}" in empty.read_text()
    # recorded: strict mode now accepts it
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(empty)))
    assert res.exit_code == 0 and res.devices[0].status == "unchanged"


def test_auth_refused_and_daemon_gone(fleet, bundle_set, tmp_path):
    a, b = fleet.devices[2], fleet.devices[3]
    hs = hosts({"wronguser": (a, {"ansible_user": b.user}),
                       "gone": (a, {"ansible_port": 1})}, "~/ep-auth")
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path))
    got = by_host(res)
    assert res.exit_code == 1
    assert "authentication refused" in got["wronguser"].reason
    assert "cannot connect" in got["gone"].reason and got["gone"].seconds < 10


def test_device_missing_runtime_is_refused_before_the_model_is_sent(fleet, bundle_set, tmp_path):
    root = "~/ep-nort"
    dev = fleet.devices[4]
    hs = hosts({"nort": (dev, {"ansible_python_interpreter": fleet.python_nort})}, root)
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path))
    d = res.devices[0]
    assert res.exit_code == 1 and d.step == "facts"
    assert "lacks runtime onnxruntime" in d.reason and "pip install onnxruntime" in d.hint
    assert d.uploaded_files == sum(1 for f in json.loads(
        (bundle_set["v1"] / "manifest.json").read_text())["files"] if f.startswith("agent/"))
    assert leftovers(dev, root) == [] and current_of(dev, root) is None


def test_profile_mismatch_is_refused_without_connecting(fleet, bundle_set, tmp_path):
    dev = fleet.devices[4]
    hs = hosts({"jet": (dev, {"edgepack_profile": "jetson"})}, "~/ep-profile")
    d = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).devices[0]
    assert d.step == "check" and "jetson" in d.reason and "--profile jetson" in d.hint


def test_failing_selftest_keeps_current(fleet, bundle_set, tmp_path):
    root = "~/ep-failing"
    dev = fleet.devices[5]
    hs = hosts({"f": (dev, {})}, root)
    assert rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).exit_code == 0
    res = rollout.push(str(bundle_set["failing"]), hs, opts(fleet, tmp_path))
    d = res.devices[0]
    assert res.exit_code == 1 and d.step == "selftest" and "latency" in d.reason
    assert d.verdict["passed"] is False
    assert json.loads(Path(d.report_file).read_text())["verdict"]["passed"] is False
    assert current_of(dev, root) == rid(bundle_set["v1"])
    assert list((dev.path(root) / "reports").glob(f"*-{rid(bundle_set['failing'])}.json"))
    assert not (dev.path(root) / "releases" / rid(bundle_set["failing"])).exists()
    assert leftovers(dev, root) == []


def test_hanging_agent_is_bounded(fleet, bundle_set, tmp_path):
    root = "~/ep-hang"
    dev = fleet.devices[5]
    hs = hosts({"h": (dev, {})}, root)
    t0 = time.monotonic()
    res = rollout.push(str(bundle_set["hang"]), hs, opts(fleet, tmp_path, selftest_timeout=3))
    assert time.monotonic() - t0 < 30
    d = res.devices[0]
    assert d.step == "selftest" and "did not finish within 3" in d.reason
    assert current_of(dev, root) is None and leftovers(dev, root) == []
    def hung_agents():
        out = []
        for p in dev.session_pids():
            try:
                if b"agent\x00selftest" in Path(f"/proc/{p}/cmdline").read_bytes():
                    out.append(p)
            except OSError:
                pass
        return out
    assert hung_agents() == []  # killed with its process group, not left sleeping

    d = rollout.push(str(bundle_set["crash"]), hs, opts(fleet, tmp_path)).devices[0]
    assert d.step == "selftest" and "agent crashed" in d.reason and "agent boom" in d.reason
    assert current_of(dev, root) is None and leftovers(dev, root) == []


def test_lock_refuses_a_concurrent_push(fleet, bundle_set, tmp_path):
    root = "~/ep-lock"
    dev = fleet.devices[6]
    hs = hosts({"l": (dev, {})}, root)
    holder_t = SSHTransport("holder", dev.address, dev.port, dev.user, str(fleet.client_key),
                            known_hosts=str(fleet.known_hosts)).connect()
    holder = rollout.Device(hs[0], holder_t)
    holder.lock()
    try:
        d = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).devices[0]
        assert d.step == "lock" and "busy" in d.reason and "edgepack push by" in d.reason
        assert current_of(dev, root) is None
    finally:
        holder.unlock()
        holder_t.close()
    assert rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).exit_code == 0


def test_hostile_names_never_reach_a_shell(fleet, bundle_set, tmp_path):
    canary = Path(f"/tmp/edgepack-pwned-{os.getpid()}")
    name = f"dev one; touch {canary}-a $(touch {canary}-b) `touch {canary}-c` 'q\"uote"
    root = f"~/ep root '$(touch {canary}-d)';x \"y\""
    dev = fleet.devices[7]
    hs = hosts({name: (dev, {})}, root)
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path))
    assert res.exit_code == 0, res.devices[0].reason
    assert current_of(dev, root) == rid(bundle_set["v1"])  # the literal folder name
    assert not list(Path("/tmp").glob(canary.name + "*"))
    report_dirs = list((tmp_path / "reports").iterdir())
    assert len(report_dirs) == 1 and "$" not in report_dirs[0].name and " " not in report_dirs[0].name


# ---------------------------------------------------------------------------- rollout policy

def test_canary_failure_halts_the_rest(fleet, bundle_set, tmp_path):
    root = "~/ep-canary"
    d0, d1, d2 = fleet.devices[0:3]
    hs = hosts({"c0": (d0, {"ansible_python_interpreter": fleet.python_nort}),
                       "c1": (d1, {}), "c2": (d2, {})}, root)
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, canary=1))
    got = by_host(res)
    assert res.exit_code == 1 and "canary failed on c0" in res.halted
    assert got["c0"].status == "failed"
    assert got["c1"].status == got["c2"].status == "skipped"
    assert not d1.path(root).exists() and not d2.path(root).exists()


def test_max_fail_halts_further_devices(fleet, bundle_set, tmp_path):
    root = "~/ep-maxfail"
    d = fleet.devices
    bad = {"ansible_python_interpreter": fleet.python_nort}
    hs = hosts({"m0": (d[0], {}), "m1": (d[1], bad), "m2": (d[2], bad), "m3": (d[3], {})},
               root)
    res = rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, forks=1, max_fail=25))
    assert [x.status for x in res.devices] == ["activated", "failed", "failed", "skipped"]
    assert res.exit_code == 3 and "max-fail 25%" in res.halted
    assert not d[3].path(root).exists()


# ---------------------------------------------------------------------------- signing

def test_signed_bundle_accepted_tampered_refused(fleet, bundle_set, tmp_path):
    root = "~/ep-signed"
    dev = fleet.devices[3]
    key = signing.keygen(str(tmp_path / "sign" / "key"))
    signed = derive(bundle_set["v1"], tmp_path / "signed")
    signing.sign_manifest(str(signed), key["private_key"])
    top = dev.path(root)
    top.mkdir()
    (top / "allowed_signers").write_text(Path(key["allowed_signers"]).read_text())
    dev.chown_tree(top)
    hs = hosts({"s": (dev, {"edgepack_require_signature": True})}, root)

    unsigned = rollout.push(str(bundle_set["v2"]), hs, opts(fleet, tmp_path)).devices[0]
    assert unsigned.step == "check" and "signed" in unsigned.reason

    tampered = derive(signed, tmp_path / "tampered",
                      raw_manifest_edit=lambda t: t.replace('"precision": "fp32"',
                                                            '"precision": "fp16"'))
    assert (tampered / "signature").exists()
    d = rollout.push(str(tampered), hs, opts(fleet, tmp_path)).devices[0]
    assert d.step == "verify" and "signature does not verify" in d.reason, d.reason
    assert current_of(dev, root) is None and leftovers(dev, root) == []

    other = signing.keygen(str(tmp_path / "sign" / "other"))
    foreign = derive(bundle_set["v1"], tmp_path / "foreign")
    signing.sign_manifest(str(foreign), other["private_key"])
    d = rollout.push(str(foreign), hs, opts(fleet, tmp_path)).devices[0]
    assert d.step == "verify" and "signature" in d.reason

    res = rollout.push(str(signed), hs, opts(fleet, tmp_path))
    assert res.exit_code == 0, res.devices[0].reason
    assert current_of(dev, root) == rid(signed)


# ---------------------------------------------------------------------------- faults mid-way

def _watch_for_part(top: Path, action, name="blob.bin.part", timeout=20.0):
    """In a thread: as soon as the partial upload `name` appears under top, run action()."""
    fired = threading.Event()

    def loop():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if any(p.stat().st_size > 0 for p in top.rglob(name)):
                    action()
                    fired.set()
                    return
            except OSError:
                pass
            time.sleep(0.002)
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return th, fired


def test_full_disk_leaves_no_part_and_keeps_current(fleet, bundle_set, tmp_path):
    dev = fleet.devices[6]
    mnt = fleet.tmpfs(dev, "4m")
    root = str(mnt / "ep")
    hs = hosts({"full": (dev, {})}, root)
    assert rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).exit_code == 0
    res = rollout.push(str(bundle_set["big"]), hs, opts(fleet, tmp_path))
    d = res.devices[0]
    assert res.exit_code == 1 and d.step == "upload", d.reason
    assert "blob.bin" in d.reason and "full" in d.reason
    assert current_of(dev, root) == rid(bundle_set["v1"])
    assert leftovers(dev, root) == []
    free = os.statvfs(mnt)
    assert free.f_bavail * free.f_frsize > 3 * 1024 * 1024  # the space came back


@pytest.mark.slow
def test_killed_session_mid_upload(fleet, bundle_set, tmp_path):
    root = "~/ep-killed"
    dev = fleet.devices[7]
    hs = hosts({"k": (dev, {})}, root)
    assert rollout.push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).exit_code == 0

    def kill_sessions():
        for pid in dev.session_pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    th, fired = _watch_for_part(dev.path(root), kill_sessions)
    res = rollout.push(str(bundle_set["big"]), hs, opts(fleet, tmp_path))
    th.join()
    d = res.devices[0]
    assert fired.is_set()
    assert res.exit_code == 1 and d.step == "upload", d.reason
    assert current_of(dev, root) == rid(bundle_set["v1"])
    assert leftovers(dev, root) == [], d.detail  # cleaned up over a new connection
    assert rollout.push(str(bundle_set["v2"]), hs, opts(fleet, tmp_path)).exit_code == 0


@pytest.mark.slow
def test_link_cut_mid_upload_is_bounded(fleet, bundle_set, tmp_path):
    try:
        dev, cut = fleet.netns_device("netdev")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"network namespaces unavailable: {exc}")
    fleet.write_known_hosts()
    root = "~/ep-cut"
    hs = hosts({"cut": (dev, {}), "ok": (fleet.devices[0], {})}, root)
    th, fired = _watch_for_part(dev.path(root), cut)
    t0 = time.monotonic()
    res = rollout.push(str(bundle_set["big"]), hs, opts(fleet, tmp_path))
    elapsed = time.monotonic() - t0
    th.join()
    got = by_host(res)
    assert fired.is_set(), [(d.host, d.status, d.step, d.reason) for d in res.devices]
    assert res.exit_code == 3
    assert got["ok"].status == "activated" and got["ok"].seconds < 20
    assert got["cut"].status == "failed" and got["cut"].step == "upload"
    assert elapsed < 45, f"dead link took {elapsed:.0f}s to surface"
    assert current_of(dev, root) is None


# ---------------------------------------------------------------------------- the CLI

def test_cli_push_exit_codes_and_json(fleet, bundle_set, tmp_path):
    root = "~/ep-cli"
    d = fleet.devices
    inv = fleet.inventory(tmp_path / "fleet.yaml", {
        "good0": d[0].vars(), "good1": d[1].vars(),
        "bad": d[2].vars(ansible_python_interpreter=fleet.python_nort)},
        group_vars={"edgepack_root": root})
    common = ["--known-hosts", fleet.known_hosts, "--reports", tmp_path / "reports"]
    r = run_cli("push", bundle_set["v1"], "-i", inv, "--json", *common)
    assert r.returncode == 3, r.stderr
    out = json.loads(r.stdout)
    assert out["exit_code"] == 3 and out["summary"] == {"activated": 2, "failed": 1}
    assert "bad: device lacks runtime onnxruntime" in r.stderr and "Traceback" not in r.stderr

    r = run_cli("push", bundle_set["v1"], "-i", inv, "--limit", "good*", *common)
    assert r.returncode == 0, r.stderr
    assert "unchanged" in r.stdout

    r = run_cli("status", "-i", inv, "--limit", "good0,good1", "--json", "--known-hosts",
                fleet.known_hosts)
    assert r.returncode == 0, r.stderr
    assert {x["current"] for x in json.loads(r.stdout)["devices"]} == {rid(bundle_set["v1"])}

    r = run_cli("push", bundle_set["v1"], "-i", inv, "--limit", "nomatch*", *common)
    assert r.returncode == 2 and "matches no host" in r.stderr and "Traceback" not in r.stderr
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("all:\n  hosts: [unclosed\n")
    r = run_cli("push", bundle_set["v1"], "-i", bad_yaml, *common)
    assert r.returncode == 2 and "not valid YAML" in r.stderr and len(r.stderr.splitlines()) == 1

    r = run_cli("rollback", "-i", inv, "--limit", "good0", "--known-hosts", fleet.known_hosts)
    assert r.returncode == 1 and "no previous release" in r.stderr
