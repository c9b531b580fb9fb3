"""DeviceResult / FleetResult: exit codes, the host mapping, the --json form."""
from __future__ import annotations

import json

import pytest

from packager.fleet import DeviceResult, FleetResult, TransportError
from packager.fleet.results import recording


def test_fleet_result_exit_codes():
    R = DeviceResult
    mk = lambda *s: FleetResult("push", [R(host=str(i), status=x) for i, x in enumerate(s)])  # noqa: E731
    assert mk("activated", "unchanged").exit_code == 0
    assert mk("activated", "failed").exit_code == 3
    assert mk("activated", "skipped").exit_code == 3
    assert mk("failed", "skipped").exit_code == 1


# The --json contract: exactly these keys, per device and for the whole result.
DEVICE_KEYS = {"host", "status", "step", "reason", "hint", "release_id", "current", "previous",
               "uploaded_files", "uploaded_bytes", "reused_files", "seconds", "verdict", "p50_ms",
               "report_file", "facts", "detail"}


def test_fleet_result_maps_hosts_to_results_and_errors():
    ok, bad = DeviceResult(host="cam1", status="activated"), DeviceResult(host="cam2", step="lock")
    bad.fail(TransportError("device is busy", hint="wait"))
    res = FleetResult("push", [ok, bad, DeviceResult.skipped("cam3", "canary failed")])
    assert list(res) == ["cam1", "cam2", "cam3"] and len(res) == 3 and "cam2" in res
    assert res["cam2"] is bad and isinstance(res["cam2"].error, TransportError)
    assert bad.reason == "cam2: device is busy" and bad.hint == "wait"  # named after its host
    assert list(res.succeeded) == ["cam1"] and list(res.failed) == ["cam2", "cam3"]
    assert res["cam3"].reason == "cam3: not started: canary failed"
    with pytest.raises(KeyError):
        res["nope"]
    out = res.to_dict()
    assert set(out) == {"action", "bundle", "halted", "interrupted", "seconds", "exit_code",
                        "summary", "devices"}
    assert all(set(d) == DEVICE_KEYS for d in out["devices"])
    assert out["summary"] == {"activated": 1, "failed": 1, "skipped": 1} and out["exit_code"] == 3
    json.dumps(out)


def test_recording_keeps_every_error_on_the_device():
    res = DeviceResult(host="cam1", step="upload")
    with recording(res):
        raise KeyError("stage")
    assert res.status == "failed" and isinstance(res.error, KeyError)
    assert res.reason == "cam1: unexpected KeyError in upload: 'stage'"
    assert "--debug" in res.hint and res.seconds >= 0


def test_ctrl_c_anywhere_in_the_fan_out_loop_ends_the_hosts_in_flight():
    """A KeyboardInterrupt that lands in the main loop outside its wait (here: while a finished
    host is recorded) still sets `cancel`, so the host still in flight ends instead of the pool
    waiting on it, and every host has a result."""
    import threading

    from packager.fleet.fanout import Admission, fan_out
    from packager.fleet.inventory import Host
    from packager.fleet.results import DeviceResult

    cancel = threading.Event()

    class InterruptOnFirstRecord(Admission):
        fired = False

        def record(self, result):
            if not self.fired:
                self.fired = True
                raise KeyboardInterrupt

    def one(host):
        if host.name == "slow":
            assert cancel.wait(30), "cancel was never set: the pool would wait on this host"
            return DeviceResult(host=host.name, reason="slow: stopped by signal")
        return DeviceResult(host=host.name, status="activated")

    hosts = [Host(name="fast", address="127.0.0.1"), Host(name="slow", address="127.0.0.1"),
             Host(name="later", address="127.0.0.1")]
    out = fan_out(hosts, one, forks=2, policy=InterruptOnFirstRecord(), cancel=cancel)
    assert out.interrupted and cancel.is_set()
    assert [r.host for r in out] == ["fast", "slow", "later"]
    assert [r.status for r in out] == ["activated", "failed", "skipped"]
