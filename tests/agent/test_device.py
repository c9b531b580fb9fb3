"""The device layout commands (agent/device.py): one self-contained file, sent alone to devices."""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from agent_support import AGENT, PY38
from support import agent_env, run_agent

DEVICE = AGENT / "device.py"

# The protocol packager/fleet speaks: every command and the options it takes.
EXPECTED = {
    "lock": ["--facts", "--holder", "--prepare", "--root", "--ttl"],
    "status": ["--root"],
    "prepare": ["--holder", "--id", "--lease", "--root"],
    "plan": ["--holder", "--id", "--lease", "--root"],
    "verify-stage": ["--allowed-signers", "--holder", "--id", "--lease", "--require-signature", "--root"],
    "stage-selftest": ["--holder", "--id", "--lease", "--root", "--timeout", "agent_args"],
    "release-selftest": ["--holder", "--id", "--lease", "--root", "--timeout", "agent_args"],
    "device-facts": ["--root"],
    "activate": ["--force", "--holder", "--id", "--keep", "--lease", "--root"],
    "rollback": ["--holder", "--lease", "--root"],
    "abort": ["--holder", "--id", "--lease", "--root"],
    "prune": ["--holder", "--keep", "--lease", "--root"],
}


def _device(*args, cwd):
    """device.py as the host sends it: `python3 -c SOURCE`, from a folder without the agent."""
    proc = subprocess.run([sys.executable, "-B", "-c", DEVICE.read_text(), *map(str, args)], cwd=str(cwd),
                          env=agent_env(), capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_device_py_imports_only_the_standard_library():
    tree = ast.parse(DEVICE.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module.split(".")[0] in sys.stdlib_module_names, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in sys.stdlib_module_names, alias.name


def test_every_command_takes_the_arguments_the_host_sends():
    from agent import device

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    device.register(sub)
    got = {}
    for name, p in sub.choices.items():
        got[name] = sorted(opt for a in p._actions if a.dest != "help"
                           for opt in (a.option_strings[-1:] or [a.dest]))
    assert got == EXPECTED


def test_a_release_goes_through_every_command(bundles, tmp_path):
    b = bundles("mlp", "x86-cpu")
    root, cwd = tmp_path / "root", tmp_path / "elsewhere"
    cwd.mkdir()
    rid = hashlib.sha256((b / "manifest.json").read_bytes()).hexdigest()
    code, out = _device("status", "--root", root, cwd=cwd)
    assert code == 0 and out == {**out, "ok": True, "current": None, "previous": None, "releases": []}
    code, out = _device("prepare", "--root", root, "--id", "not-an-id", cwd=cwd)
    assert code == 1 and out["ok"] is False and "bad release id" in out["error"]
    code, out = _device("prepare", "--root", root, "--id", rid, cwd=cwd)
    assert code == 0 and out["stage"] and out["unchanged"] is False
    stage = root / "stage" / rid
    shutil.copyfile(b / "manifest.json", stage / "manifest.json")
    code, out = _device("plan", "--root", root, "--id", rid, cwd=cwd)
    assert code == 0 and out["files"] == len(out["need"]) > 0
    for rel in out["need"]:
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(b / rel, stage / rel)
    code, out = _device("activate", "--root", root, "--id", rid, cwd=cwd)
    assert code == 1 and "has not been verified" in out["error"]
    code, out = _device("verify-stage", "--root", root, "--id", rid, cwd=cwd)
    assert code == 0 and out["files_checked"] == len(json.loads((b / "manifest.json").read_text())["files"])
    code, out = _device("stage-selftest", "--root", root, "--id", rid, "--timeout", 300,
                        "--", "--runs", "3", "--seconds", "0", cwd=cwd)
    assert code == 0 and out["passed"] is True and out["report"]["bundle_id"] == rid
    code, out = _device("activate", "--root", root, "--id", rid, "--keep", 2, cwd=cwd)
    assert code == 0 and out["current"] == rid and out["changed"] is True
    code, out = _device("status", "--root", root, cwd=cwd)
    assert out["current"] == rid and out["last_report"]["verdict"]["passed"] is True
    code, out = _device("rollback", "--root", root, cwd=cwd)
    assert code == 1 and "no previous release" in out["error"]
    code, out = _device("prune", "--root", root, "--keep", 1, cwd=cwd)
    assert code == 0 and out["pruned"] == []
    code, out = _device("abort", "--root", root, "--id", rid, cwd=cwd)
    assert code == 0 and out["removed"] == rid


def test_a_stage_with_a_changed_file_fails_verification(bundles, tmp_path):
    b = bundles("mlp", "x86-cpu")
    root = tmp_path / "root"
    rid = hashlib.sha256((b / "manifest.json").read_bytes()).hexdigest()
    _device("prepare", "--root", root, "--id", rid, cwd=tmp_path)
    stage = root / "stage" / rid
    shutil.rmtree(stage)
    shutil.copytree(b, stage)
    (stage / "vectors.npz").write_bytes(b"x" * (b / "vectors.npz").stat().st_size)
    (stage / "stray.txt").write_text("?")
    code, out = _device("verify-stage", "--root", root, "--id", rid, cwd=tmp_path)
    assert code == 1 and "vectors.npz: sha256" in out["error"] and "stray.txt: not listed" in out["error"]


@pytest.mark.skipif(not PY38.exists(), reason="Python 3.8 interpreter not on this machine")
def test_real_python38_runs_the_device_layout_commands(bundles, tmp_path):
    b = bundles("mlp", "x86-cpu")
    root = tmp_path / "root"
    rid = hashlib.sha256((b / "manifest.json").read_bytes()).hexdigest()
    for args in (["status", "--root", str(root)], ["prepare", "--root", str(root), "--id", rid],
                 ["rollback", "--root", str(root)]):
        proc = run_agent(b, *args, python=str(PY38))
        assert "Traceback" not in proc.stderr and "SyntaxError" not in proc.stderr, proc.stderr
        json.loads(proc.stdout)
    assert json.loads(run_agent(b, "status", "--root", str(root), python=str(PY38)).stdout)["current"] is None
