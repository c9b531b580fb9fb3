"""push: the gated flow per device (stage, verify, self-test, activate or keep current) and the
rollout policy (canary, --max-fail), over a local transport and real OpenSSH daemons (conftest.py)."""
from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from fleet_harness import (build_bundle, current_of, derive, hosts, leftovers, opts, rid,
                           watch_for_part)
from packager import signing
from packager.fleet import FleetOptions, LocalTransport, parse_inventory, push, status


def test_local_transport_push_and_exit_codes(tmp_path):
    bundle = build_bundle(tmp_path / "src", tmp_path / "dist")
    hs = parse_inventory({"all": {"hosts": {
        "ok": {"edgepack_root": str(tmp_path / "ok"), "ansible_python_interpreter": sys.executable},
        "nopy": {"edgepack_root": str(tmp_path / "nopy"),
                 "ansible_python_interpreter": "/nonexistent/python3"}}}}).select(None)
    o = FleetOptions(reports_dir=str(tmp_path / "reports"))
    local = lambda h: LocalTransport(h.name)  # noqa: E731
    res = push(str(bundle), hs, o, connect=local)
    got = {d.host: d for d in res.devices}
    assert got["ok"].status == "activated"
    assert got["nopy"].status == "failed" and "ansible_python_interpreter" in got["nopy"].hint
    assert res.exit_code == 3
    res = push(str(bundle), hs[:1], o, connect=local)
    assert res.exit_code == 0 and res.devices[0].status == "unchanged"
    tampered = derive(bundle, tmp_path / "tampered")
    (tampered / "vectors.npz").write_bytes(b"x")
    with pytest.raises(Exception, match="integrity"):
        push(str(tampered), hs[:1], o, connect=local)


# ---------------------------------------------------------------------------- the happy path

def test_push_fleet_unchanged_and_new_version(fleet, bundle_set, tmp_path):
    root = "~/ep-push"
    devs = fleet.devices[:8]
    hs = hosts({d.name: (d, {}) for d in devs}, root)
    v1, v2 = bundle_set["v1"], bundle_set["v2"]

    first = push(str(v1), hs, opts(fleet, tmp_path))
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

    again = push(str(v1), hs, opts(fleet, tmp_path))
    assert again.exit_code == 0
    assert {d.status for d in again.devices} == {"unchanged"}
    assert sum(d.uploaded_files for d in again.devices) == 0

    # v2 differs only in its manifest: every file is reused from v1 on the device
    second = push(str(v2), hs, opts(fleet, tmp_path))
    assert second.exit_code == 0, [d.reason for d in second.devices]
    for d, r in zip(devs, second.devices):
        assert r.status == "activated" and r.uploaded_files == 0 and r.reused_files > 0
        assert current_of(d, root) == rid(v2)
        assert os.path.basename(os.readlink(d.path(root) / "previous")) == rid(v1)

    st = status(hs, opts(fleet, tmp_path))
    assert st.exit_code == 0
    assert all(d.current == rid(v2) and d.verdict["passed"] for d in st.devices)


# ---------------------------------------------------------------------------- refusals

def test_device_missing_runtime_is_refused_before_anything_is_sent(fleet, bundle_set, tmp_path):
    """device.py's own facts (stdlib, sent with the command) come first: nothing is uploaded,
    not even the agent, and no stage is made."""
    root = "~/ep-nort"
    dev = fleet.devices[4]
    hs = hosts({"nort": (dev, {"ansible_python_interpreter": fleet.python_nort})}, root)
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path))
    d = res.devices[0]
    assert res.exit_code == 1 and d.step == "facts"
    assert "lacks runtime onnxruntime" in d.reason and "pip install onnxruntime" in d.hint
    assert d.uploaded_files == 0 and d.uploaded_bytes == 0
    assert d.facts["python"] and d.facts["numpy"] and d.facts["runtimes"] == {}
    assert leftovers(dev, root) == [] and current_of(dev, root) is None
    assert not (dev.path(root) / "stage").exists()


def test_profile_mismatch_is_refused_without_connecting(fleet, bundle_set, tmp_path):
    dev = fleet.devices[4]
    hs = hosts({"jet": (dev, {"edgepack_profile": "jetson"})}, "~/ep-profile")
    d = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).devices[0]
    assert d.step == "check" and "jetson" in d.reason and "--profile jetson" in d.hint


def test_failing_selftest_keeps_current(fleet, bundle_set, tmp_path):
    root = "~/ep-failing"
    dev = fleet.devices[5]
    hs = hosts({"f": (dev, {})}, root)
    assert push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).exit_code == 0
    res = push(str(bundle_set["failing"]), hs, opts(fleet, tmp_path))
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
    res = push(str(bundle_set["hang"]), hs, opts(fleet, tmp_path, selftest_timeout=3))
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

    d = push(str(bundle_set["crash"]), hs, opts(fleet, tmp_path)).devices[0]
    assert d.step == "selftest" and "agent crashed" in d.reason and "agent boom" in d.reason
    assert current_of(dev, root) is None and leftovers(dev, root) == []


# ---------------------------------------------------------------------------- rollout policy

def test_canary_failure_halts_the_rest(fleet, bundle_set, tmp_path):
    root = "~/ep-canary"
    d0, d1, d2 = fleet.devices[0:3]
    hs = hosts({"c0": (d0, {"ansible_python_interpreter": fleet.python_nort}),
                       "c1": (d1, {}), "c2": (d2, {})}, root)
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, canary=1))
    got = dict(res)
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
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, forks=1, max_fail=25))
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

    unsigned = push(str(bundle_set["v2"]), hs, opts(fleet, tmp_path)).devices[0]
    assert unsigned.step == "check" and "signed" in unsigned.reason

    tampered = derive(signed, tmp_path / "tampered",
                      raw_manifest_edit=lambda t: t.replace('"precision": "fp32"',
                                                            '"precision": "fp16"'))
    assert (tampered / "signature").exists()
    d = push(str(tampered), hs, opts(fleet, tmp_path)).devices[0]
    assert d.step == "verify" and "signature does not verify" in d.reason, d.reason
    assert current_of(dev, root) is None and leftovers(dev, root) == []

    other = signing.keygen(str(tmp_path / "sign" / "other"))
    foreign = derive(bundle_set["v1"], tmp_path / "foreign")
    signing.sign_manifest(str(foreign), other["private_key"])
    d = push(str(foreign), hs, opts(fleet, tmp_path)).devices[0]
    assert d.step == "verify" and "signature" in d.reason

    res = push(str(signed), hs, opts(fleet, tmp_path))
    assert res.exit_code == 0, res.devices[0].reason
    assert current_of(dev, root) == rid(signed)


# ---------------------------------------------------------------------------- faults mid-way

@pytest.mark.slow
def test_killed_session_mid_upload(fleet, bundle_set, tmp_path):
    root = "~/ep-killed"
    dev = fleet.devices[7]
    hs = hosts({"k": (dev, {})}, root)
    assert push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).exit_code == 0

    def kill_sessions():
        for pid in dev.session_pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    th, fired = watch_for_part(dev.path(root), kill_sessions)
    res = push(str(bundle_set["big"]), hs, opts(fleet, tmp_path))
    th.join()
    d = res.devices[0]
    assert fired.is_set()
    assert res.exit_code == 1 and d.step == "upload", d.reason
    assert current_of(dev, root) == rid(bundle_set["v1"])
    assert leftovers(dev, root) == [], d.detail  # cleaned up over a new connection
    assert push(str(bundle_set["v2"]), hs, opts(fleet, tmp_path)).exit_code == 0
