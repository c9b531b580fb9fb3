"""`edgepack push/status/rollback` as a user runs them: exit codes, --json, one error line.

The bad-input cases reuse tests/test_reliability.py's helpers (one `edgepack: ... (fix: ...)` line,
nothing left behind) and its broken bundles."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet_harness import rid, run_cli
from packager.fleet import SSHTransport
from badinput import (BAD_BUNDLES, _make_bad_bundle, _write, assert_nothing_left,
                              assert_one_line, invoke)


# ---------------------------------------------------------------------------- bad input

INVENTORY_CASES = [
    ("malformed YAML", "all:\n  hosts: [unclosed\n", [], "not valid YAML"),
    ("not a mapping", "- cam1\n- cam2\n", [], "must be a mapping"),
    ("host with empty address", "all:\n  hosts:\n    cam1: {ansible_host: ''}\n", [], "empty ansible_host"),
    ("host name with a space and no address", "all:\n  hosts:\n    'cam 1': {}\n", [], "no usable address"),
    ("address that is an option", "all:\n  hosts:\n    cam1: {ansible_host: '-oProxyCommand=touch x'}\n",
     [], "no usable address"),
    ("bad port", "all:\n  hosts:\n    cam1: {ansible_port: ssh}\n", [], "ansible_port must be a port"),
    ("unknown group key", "all:\n  hostz: {cam1: {}}\n", [], "unknown key"),
    ("no hosts", "all:\n  hosts: {}\n", [], "has no hosts"),
    ("--limit matches nothing", "all:\n  hosts:\n    cam1: {}\n", ["--limit", "gw*"], "matches no host"),
    ("missing file", None, [], "does not exist"),
    ("--forks 0", "all:\n  hosts:\n    cam1: {}\n", ["--forks", "0"], "--forks must be >= 1"),
]


@pytest.mark.parametrize("command", ["push", "status", "rollback"])
@pytest.mark.parametrize("case,text,extra,expect", INVENTORY_CASES, ids=[c[0] for c in INVENTORY_CASES])
def test_bad_inventory(tmp_path, monkeypatch, bundles, command, case, text, extra, expect):
    inv = tmp_path / "fleet.yaml"
    if text is not None:
        inv.write_text(text)
    reports = tmp_path / "reports"
    args = [command] + ([bundles("mlp", "x86-cpu"), "--reports", reports] if command == "push" else [])
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/config of the machine running the tests
    proc = invoke(tmp_path, monkeypatch, *args, "-i", inv, *extra)
    assert_one_line(proc, 2, expect)
    assert not reports.exists()
    assert_nothing_left(tmp_path)


@pytest.fixture
def dead_inventory(tmp_path):
    """Hosts nobody may contact: a refused bundle must stop the push before any connection."""
    return _write(tmp_path / "fleet.yaml", "all:\n  hosts:\n    cam1: {ansible_host: 127.0.0.1, ansible_port: 1}\n")


@pytest.mark.parametrize("kind", BAD_BUNDLES)
def test_push_of_a_bad_bundle_is_refused_before_any_device(tmp_path, bundles, dead_inventory,
                                                           monkeypatch, kind):
    bad, expect = _make_bad_bundle(kind, bundles("mlp", "x86-cpu"), tmp_path)

    def no_connect(self):
        raise AssertionError("a device was contacted")
    monkeypatch.setattr(SSHTransport, "connect", no_connect)
    reports = tmp_path / "reports"
    proc = invoke(tmp_path, monkeypatch, "push", bad, "-i", dead_inventory, "--reports", reports)
    assert_one_line(proc, 2, expect)
    assert not reports.exists()
    assert_nothing_left(tmp_path)
    assert not list(Path("/tmp").glob("edgepack-evil-*"))


# ---------------------------------------------------------------------------- on the loopback fleet

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
    assert all(x["facts"]["runtimes"]["onnxruntime"]["version"]
               for x in json.loads(r.stdout)["devices"])  # status shows each device's facts
    r = run_cli("status", "-i", inv, "--limit", "good0", "--known-hosts", fleet.known_hosts)
    assert r.returncode == 0 and "FACTS" in r.stdout and "onnxruntime 1." in r.stdout, r.stdout

    r = run_cli("push", bundle_set["v1"], "-i", inv, "--limit", "nomatch*", *common)
    assert r.returncode == 2 and "matches no host" in r.stderr and "Traceback" not in r.stderr
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("all:\n  hosts: [unclosed\n")
    r = run_cli("push", bundle_set["v1"], "-i", bad_yaml, *common)
    assert r.returncode == 2 and "not valid YAML" in r.stderr and len(r.stderr.splitlines()) == 1

    r = run_cli("rollback", "-i", inv, "--limit", "good0", "--known-hosts", fleet.known_hosts)
    assert r.returncode == 1 and "no previous release" in r.stderr
