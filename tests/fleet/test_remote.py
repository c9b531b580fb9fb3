"""The device protocol remote.Device drives (agent/device.py run directly: layout, verify, activate,
prune, the lock) and the lock over real SSH."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet_harness import current_of, hosts, opts
from packager.fleet import Device, SSHTransport, push

REPO = Path(__file__).resolve().parents[2]
DEVICE_PY = REPO / "agent" / "device.py"


def device(root, *args, python=sys.executable, stdin=None, timeout=60):
    r = subprocess.run([python, str(DEVICE_PY), *args, "--root", str(root)],
                       capture_output=True, text=True, timeout=timeout, input=stdin)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


def fake_stage(root: Path, content: bytes) -> str:
    import hashlib
    files = {"model/m.bin": {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}}
    manifest = json.dumps({"schema_version": 1, "name": "t", "version": "1", "files": files})
    rid = hashlib.sha256(manifest.encode()).hexdigest()
    stage = root / "stage" / rid
    (stage / "model").mkdir(parents=True)
    (stage / "manifest.json").write_text(manifest)
    (stage / "model" / "m.bin").write_bytes(content)
    return rid


def test_activate_requires_verify_and_pass_then_switches_atomically(tmp_path):
    root = tmp_path / "root"
    rc, out = device(root, "status")
    assert rc == 0 and out["current"] is None
    ids = []
    for i in range(5):
        rc, out = device(root, "prepare", "--id", "0" * 64)  # creates the layout
        rid = fake_stage(root, b"model %d" % i)
        rc, out = device(root, "activate", "--id", rid)
        assert rc == 1 and "not been verified" in out["error"]
        rc, out = device(root, "verify-stage", "--id", rid)
        assert rc == 0, out
        rc, out = device(root, "activate", "--id", rid)
        assert rc == 1 and "not passed its self-test" in out["error"]
        (root / "stage" / f"{rid}.passed").write_text("x")  # what stage-selftest writes
        rc, out = device(root, "activate", "--id", rid, "--keep", "3")
        assert rc == 0 and out["current"] == rid
        ids.append(rid)
        time.sleep(0.01)
    assert os.readlink(root / "current") == f"releases/{ids[-1]}"
    assert os.readlink(root / "previous") == f"releases/{ids[-2]}"
    assert sorted(os.listdir(root / "releases")) == sorted(ids[-3:])  # pruned, keep 3
    rel = root / "releases" / ids[-1]
    assert oct(rel.stat().st_mode & 0o777) == "0o555"
    assert oct((rel / "model" / "m.bin").stat().st_mode & 0o777) == "0o444"
    rc, out = device(root, "rollback")
    assert rc == 0 and out["current"] == ids[-2] and out["previous"] == ids[-1]


def test_verify_refuses_tampered_and_unlisted_files(tmp_path):
    root = tmp_path / "root"
    device(root, "prepare", "--id", "0" * 64)
    rid = fake_stage(root, b"good")
    (root / "stage" / rid / "model" / "m.bin").write_bytes(b"evil")
    (root / "stage" / rid / "extra.py").write_text("print(1)")
    rc, out = device(root, "verify-stage", "--id", rid)
    assert rc == 1 and "sha256 differs" in out["error"] and "extra.py: not listed" in out["error"]
    rc, out = device(root, "verify-stage", "--id", "not-an-id")
    assert rc == 1 and "bad release id" in out["error"]


def test_prepare_cleans_dead_pushes(tmp_path):
    root = tmp_path / "root"
    device(root, "prepare", "--id", "0" * 64)
    (root / "stage" / ("1" * 64)).mkdir()
    (root / "stage" / ("0" * 64) / "model.onnx.part").write_text("half")
    rc, out = device(root, "prepare", "--id", "0" * 64)
    assert rc == 0 and os.listdir(root / "stage") == ["0" * 64]
    assert not list((root / "stage").rglob("*.part"))


def test_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    root = tmp_path / "root"
    holder = subprocess.Popen([sys.executable, str(DEVICE_PY), "lock", "--root", str(root),
                               "--ttl", "1.5", "--holder", "test holder"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = json.loads(holder.stdout.readline())
    assert first["ok"] and first["root"] == str(root)
    rc, out = device(root, "rollback")
    assert rc == 1 and "busy" in out["error"] and "test holder" in out["error"]
    rc, out = device(root, "prune", "--lease", "wrong")
    assert rc == 1 and "another push" in out["error"]
    rc, out = device(root, "prune", "--lease", first["token"])
    assert rc == 0
    holder.wait(timeout=10)  # no heartbeat for 1.5 s: the lease ends by itself
    rc, out = device(root, "prune", "--lease", first["token"])
    assert rc == 1 and "expired" in out["error"]
    rc, out = device(root, "prune")
    assert rc == 0


def test_device_py_runs_on_the_system_python(tmp_path):
    """Python 3.8 syntax, stdlib only: it must run under a bare interpreter."""
    py = "/usr/bin/python3"
    if not os.path.exists(py):
        pytest.skip("no /usr/bin/python3")
    rc, out = device(tmp_path / "r", "status", python=py)
    assert rc == 0 and out["current"] is None
    src = DEVICE_PY.read_text()
    import ast
    ast.parse(src, feature_version=(3, 8))


# ---------------------------------------------------------------------------- over SSH

def test_lock_refuses_a_concurrent_push(fleet, bundle_set, tmp_path):
    root = "~/ep-lock"
    dev = fleet.devices[6]
    hs = hosts({"l": (dev, {})}, root)
    holder_t = SSHTransport("holder", dev.address, dev.port, dev.user, str(fleet.client_key),
                            known_hosts=str(fleet.known_hosts)).connect()
    holder = Device(hs[0], holder_t)
    holder.lock()
    try:
        d = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).devices[0]
        assert d.step == "lock" and "busy" in d.reason and "edgepack push by" in d.reason
        assert current_of(dev, root) is None
    finally:
        holder.unlock()
        holder_t.close()
    assert push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).exit_code == 0
