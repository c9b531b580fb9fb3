"""Nothing of ours left running on a device, and no --max-fail overshoot (issue 11, part 5).

On the loopback fleet (real sshd per device): a device whose Python hangs at start-up fails in
seconds (--command-timeout) and its hung processes are ended; Ctrl-C during a self-test ends the
agent's process group, removes the stage and keeps `current`; --max-fail with many forks fails
exactly the devices one-at-a-time would; --retest self-tests the current release again.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from fleet_harness import (cli_command, current_of, hosts, leftovers, opts, processes_of, rid,
                           wait_until_gone)
from packager.fleet import push
from packager.fleet.fanout import START, WAIT
from packager.fleet.results import DeviceResult
from packager.fleet.rollout import MaxFail


def test_a_hung_device_python_fails_fast_and_is_ended(fleet, bundle_set, tmp_path):
    """Before: the lock waited 60 s for an answer ('no answer' after 62 s) and the hung Python
    stayed on the device. Now: --command-timeout bounds the wait and the process group goes."""
    root = "~/ep-hang"
    dev = fleet.devices[0]
    hs = hosts({"hung": (dev, {"ansible_python_interpreter": fleet.python_hang})}, root)
    t0 = time.monotonic()
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, command_timeout=4))
    took = time.monotonic() - t0
    d = res.devices[0]
    assert res.exit_code == 1 and d.status == "failed", d
    assert "no answer within 4s" in d.reason and "were ended" in d.reason, d.reason
    assert "-c pass" in d.hint
    assert took < 20, took
    assert wait_until_gone(dev.uid) == []
    assert not dev.path(root).exists() or leftovers(dev, root) == []


def _agent_selftest_running(uid: int) -> bool:
    return any("-m agent selftest" in p for p in processes_of(uid))


def test_ctrl_c_during_a_push_ends_the_selftest_and_keeps_current(fleet, bundle_set, tmp_path):
    """SIGINT to `edgepack push` while the device's self-test hangs: the command ends within
    seconds with exit 130, the agent and device.py are gone from the device, the stage is
    removed and `current` is still the last good release."""
    root = "~/ep-ctrlc"
    dev = fleet.devices[1]
    hs = hosts({"c": (dev, {})}, root)
    v1 = bundle_set["v1"]
    assert push(str(v1), hs, opts(fleet, tmp_path)).exit_code == 0
    inv = fleet.inventory(tmp_path / "fleet.yaml", {"c": dev.vars()},
                          group_vars={"edgepack_root": root})
    proc = subprocess.Popen(cli_command() + ["push", str(bundle_set["hang"]), "-i", str(inv),
                                             "--known-hosts", str(fleet.known_hosts),
                                             "--reports", str(tmp_path / "reports"),
                                             "--selftest-timeout", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # SIGINT as a terminal's Ctrl-C: a suite started in the background ignores
                            # it, children inherit that and Python installs no handler
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not _agent_selftest_running(dev.uid) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert _agent_selftest_running(dev.uid), processes_of(dev.uid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert took < 20, took
    assert "interrupted" in err and "Traceback" not in err, err
    assert wait_until_gone(dev.uid) == []
    assert leftovers(dev, root) == []
    assert current_of(dev, root) == rid(v1)
    stored = [json.loads(p.read_text()) for p in (dev.path(root) / "reports").glob("*.json")]
    assert any("stopped by signal" in " ".join(r["verdict"]["reasons"]) for r in stored)


def test_max_fail_admission_counts_devices_in_flight():
    policy = MaxFail(25, 8, [])  # 25 % of 8: two failures allowed, the third crosses the line
    assert [policy.admit(n) for n in (0, 1, 2, 3)] == [START, START, START, WAIT]
    policy.record(DeviceResult(host="a"))  # failed
    assert policy.admit(1) == START and policy.admit(2) == WAIT
    policy.record(DeviceResult(host="b"))
    policy.record(DeviceResult(host="c", status="activated"))
    assert policy.admit(0) == START and policy.admit(1) == WAIT
    policy.record(DeviceResult(host="d"))
    assert "3 of 8 devices failed" in policy.admit(0)
    assert MaxFail(None, 8, []).admit(100) == START


def test_max_fail_with_many_forks_fails_what_one_at_a_time_fails(fleet, bundle_set, tmp_path):
    """Bad and good devices interleaved, --max-fail 25 of 8 (2 allowed): with --forks 8 every
    device ends as it does with --forks 1; three failures, never more."""
    devs = fleet.devices[:8]
    outcomes = {}
    for forks in (1, 8):
        root = f"~/ep-maxfail-{forks}"
        spec = {f"m{i}": (d, {"ansible_python_interpreter": fleet.python_nort} if i % 2 == 0
                          else {}) for i, d in enumerate(devs)}
        res = push(str(bundle_set["v1"]), hosts(spec, root),
                   opts(fleet, tmp_path, forks=forks, max_fail=25))
        outcomes[forks] = [(d.host, d.status) for d in res.devices]
        assert sum(1 for d in res.devices if d.status == "failed") == 3, outcomes[forks]
        assert "more than --max-fail 25%" in res.halted
    assert outcomes[8] == outcomes[1]


def test_push_retest_selftests_the_current_release_again(fleet, bundle_set, tmp_path):
    dev, root, v1 = fleet.devices[2], "~/ep-retest", bundle_set["v1"]
    hs = hosts({"r": (dev, {})}, root)
    assert push(str(v1), hs, opts(fleet, tmp_path)).exit_code == 0
    reports = dev.path(root) / "reports"
    before = set(os.listdir(reports))
    plain = push(str(v1), hs, opts(fleet, tmp_path)).devices[0]
    assert plain.status == "unchanged" and set(os.listdir(reports)) == before
    res = push(str(v1), hs, opts(fleet, tmp_path, retest=True))
    d = res.devices[0]
    assert res.exit_code == 0 and d.status == "retested" and d.verdict["passed"], d
    new = set(os.listdir(reports)) - before
    assert len(new) == 1 and new.pop().endswith(f"-{rid(v1)}.json")
    assert Path(d.report_file).is_file() and d.p50_ms is not None
    assert current_of(dev, root) == rid(v1) and leftovers(dev, root) == []
    assert d.uploaded_files == 0
