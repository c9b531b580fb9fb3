"""`edgepack tune -i fleet.yaml --limit HOST` on a real loopback device: candidates measured ON the
device by the bundle's agent, from a scratch folder that is gone afterwards; nothing staged or
activated, no process of ours left behind."""
from __future__ import annotations

import json
import os
import time

from fleet_harness import run_cli

from support import EXAMPLES


def _scratch_dirs(dev) -> list[str]:
    return [e.path for e in os.scandir("/tmp") if e.name.startswith("edgepack-tune-")
            and e.stat(follow_symlinks=False).st_uid == dev.uid]


def test_tune_measures_on_the_device_and_leaves_nothing(fleet, tmp_path):
    dev = fleet.devices[0]
    root = "~/ep-tune"
    inv = fleet.inventory(tmp_path / "fleet.yaml", {"cam0": dev.vars(), "cam1": fleet.devices[1].vars()},
                          group_vars={"edgepack_root": root})
    out_profile = tmp_path / "tuned.yaml"
    r = run_cli("tune", f"{EXAMPLES}:mlp", "--profile", "x86-cpu-int8", "-i", inv, "--limit", "cam0",
                "--known-hosts", fleet.known_hosts, "--formats", "onnx", "--precisions", "fp32,int8",
                "--threads", "1", "--probe-runs", "50", "--probe-seconds", "0", "--cache", tmp_path / "cache",
                "--out-profile", out_profile, "--json", timeout=900)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["target"] == "cam0" and out["facts"]["hostname"]
    assert "onnxruntime" in out["facts"]["runtimes"]
    assert out["winner"] and all(c["status"] in ("pass", "fail") for c in out["candidates"]), out["candidates"]
    assert out_profile.is_file()
    # nothing staged or activated, the scratch folder removed, no process of ours left
    top = dev.path(root)
    assert not (top / "current").exists() and not (top / "releases").exists()
    assert _scratch_dirs(dev) == []
    deadline = time.monotonic() + 10
    while dev.session_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert dev.session_pids() == []


def test_tune_needs_exactly_one_device(fleet, tmp_path):
    inv = fleet.inventory(tmp_path / "fleet.yaml", {"cam0": fleet.devices[0].vars(),
                                                   "cam1": fleet.devices[1].vars()})
    r = run_cli("tune", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "-i", inv, "--known-hosts", fleet.known_hosts)
    assert r.returncode == 2 and "tune measures on one device" in r.stderr and "--limit HOST" in r.stderr
