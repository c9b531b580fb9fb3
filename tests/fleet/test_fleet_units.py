"""Unit tests that need no sshd: inventory, quoting, the device layout, a local-transport push."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from packager.errors import InventoryError
from packager import fleet as rollout
from packager.fleet.inventory import expand_pattern, load, parse
from packager.fleet.transports import command_line
from packager.fleet.transports.local import LocalTransport

REPO = Path(__file__).resolve().parents[2]
DEVICE_PY = REPO / "agent" / "device.py"

INVENTORY = """
all:
  vars:
    edgepack_root: /srv/edge
    ansible_user: ops
  hosts:
    lone: {ansible_host: 10.0.0.9}
  children:
    cameras:
      vars: {edgepack_profile: jetson, ansible_port: 2222}
      hosts:
        cam[01:03]:
      children:
        lobby:
          vars: {ansible_port: 2200}
          hosts:
            cam02: {ansible_host: 10.0.1.2, ansible_python_interpreter: /opt/py/bin/python3}
    gateways:
      hosts:
        gw-a: {ansible_user: root, edgepack_require_signature: "yes", edgepack_keep: 5}
"""


@pytest.fixture
def inv(tmp_path):
    p = tmp_path / "fleet.yaml"
    p.write_text(INVENTORY)
    return load(str(p), ssh_config=None)


def test_inventory_groups_vars_and_precedence(inv):
    assert list(inv.hosts) == ["lone", "cam01", "cam02", "cam03", "gw-a"]
    cam1, cam2, gw = inv.hosts["cam01"], inv.hosts["cam02"], inv.hosts["gw-a"]
    assert (cam1.address, cam1.port, cam1.user, cam1.profile) == ("cam01", 2222, "ops", "jetson")
    assert (cam2.address, cam2.port, cam2.python) == ("10.0.1.2", 2200, ["/opt/py/bin/python3"])
    assert cam1.root == "/srv/edge" and inv.hosts["lone"].profile is None
    assert gw.user == "root" and gw.require_signature is True and gw.keep == 5
    assert sorted(inv.groups) == ["cameras", "gateways", "lobby"]


def test_limit_names_groups_globs_and_exclusions(inv):
    names = lambda limit: [h.name for h in inv.select(limit)]  # noqa: E731
    assert names("cameras") == ["cam01", "cam02", "cam03"]
    assert names("lobby,lone") == ["lone", "cam02"]
    assert names("cam0[13]") == ["cam01", "cam03"]
    assert names("gw-*,cam*") == ["cam01", "cam02", "cam03", "gw-a"]
    assert names("cameras,!lobby") == ["cam01", "cam03"]
    assert names("!cameras") == ["lone", "gw-a"]
    with pytest.raises(InventoryError, match="matches no host"):
        inv.select("nothing*")


@pytest.mark.parametrize("text,message", [
    ("all: [1, 2", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("all:\n  hosts:\n    x: {ansible_host: ''}\n", "empty ansible_host"),
    ("all:\n  hosts:\n    'bad host': {}\n", "no usable address"),
    ("all:\n  hosts:\n    x: {ansible_port: ssh}\n", "ansible_port"),
    ("all:\n  hosts:\n    x: {edgepack_require_signature: maybe}\n", "true or false"),
    ("all:\n  hostz: {}\n", "unknown key"),
    ("all:\n  hosts:\n    x: {edgepack_keep: 1}\n", "edgepack_keep"),
])
def test_inventory_errors_are_one_clear_line(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(InventoryError, match=message) as exc:
        load(str(p), ssh_config=None)
    assert exc.value.hint and exc.value.exit_code == 2


def test_missing_inventory_file(tmp_path):
    with pytest.raises(InventoryError, match="does not exist"):
        load(str(tmp_path / "nope.yaml"))


def test_ssh_config_fills_what_the_inventory_leaves_out(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host cam*\n  HostName 192.168.7.7\n  Port 2022\n  User pi\n"
                   "  IdentityFile ~/.ssh/cam_key\n")
    inv = parse({"all": {"hosts": {"cam1": None, "cam2": {"ansible_port": 22}}}},
                ssh_config=str(cfg))
    c1, c2 = inv.hosts["cam1"], inv.hosts["cam2"]
    assert (c1.address, c1.port, c1.user) == ("192.168.7.7", 2022, "pi")
    assert c1.key_file == os.path.expanduser("~/.ssh/cam_key")
    assert c2.port == 22  # the inventory wins


def test_host_ranges():
    assert expand_pattern("w[1:3].x", "f") == ["w1.x", "w2.x", "w3.x"]
    assert expand_pattern("w[08:10]", "f") == ["w08", "w09", "w10"]
    assert expand_pattern("n[a:c]", "f") == ["na", "nb", "nc"]


def test_command_line_quotes_every_word(tmp_path):
    evil = f"x'; touch {tmp_path}/pwned; echo '$(id)`id`"
    line = command_line(["printf", "%s", evil], cwd=str(tmp_path / "a dir; rm -rf /"))
    (tmp_path / "a dir; rm -rf /").mkdir(parents=True)
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True)
    assert out.stdout == evil and not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------- device layout

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


# ---------------------------------------------------------------------------- local push

def test_local_transport_push_and_exit_codes(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from fleet_harness import build_bundle, derive

    bundle = build_bundle(tmp_path / "src", tmp_path / "dist")
    hosts = parse({"all": {"hosts": {
        "ok": {"edgepack_root": str(tmp_path / "ok"), "ansible_python_interpreter": sys.executable},
        "nopy": {"edgepack_root": str(tmp_path / "nopy"),
                 "ansible_python_interpreter": "/nonexistent/python3"}}}}).select(None)
    opts = rollout.FleetOptions(reports_dir=str(tmp_path / "reports"))
    res = rollout.push(str(bundle), hosts, opts, connect=lambda h: LocalTransport(h.name))
    got = {d.host: d for d in res.devices}
    assert got["ok"].status == "activated"
    assert got["nopy"].status == "failed" and "ansible_python_interpreter" in got["nopy"].hint
    assert res.exit_code == 3
    res = rollout.push(str(bundle), hosts[:1], opts, connect=lambda h: LocalTransport(h.name))
    assert res.exit_code == 0 and res.devices[0].status == "unchanged"
    tampered = derive(bundle, tmp_path / "tampered")
    (tampered / "vectors.npz").write_bytes(b"x")
    with pytest.raises(Exception, match="integrity"):
        rollout.push(str(tampered), hosts[:1], opts, connect=lambda h: LocalTransport(h.name))


def test_fleet_result_exit_codes():
    R = rollout.DeviceResult
    mk = lambda *s: rollout.FleetResult("push", [R(host=str(i), status=x) for i, x in enumerate(s)])  # noqa: E731
    assert mk("activated", "unchanged").exit_code == 0
    assert mk("activated", "failed").exit_code == 3
    assert mk("activated", "skipped").exit_code == 3
    assert mk("failed", "skipped").exit_code == 1
