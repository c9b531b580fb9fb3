"""status and rollback: over real sshd devices and over a local transport."""
from __future__ import annotations

import sys

from fleet_harness import build_bundle, current_of, hosts, opts, rid
from packager.fleet import FleetOptions, LocalTransport, parse_inventory, push, rollback, status


def test_rollback_switches_to_previous_and_back(fleet, bundle_set, tmp_path):
    root = "~/ep-rollback"
    dev = fleet.devices[1]
    hs = hosts({"rb": (dev, {})}, root)
    o = opts(fleet, tmp_path)
    res = rollback(hs, o)  # nothing there yet
    assert res.exit_code == 1 and "no previous release" in res.devices[0].reason
    assert push(str(bundle_set["v1"]), hs, o).exit_code == 0
    assert push(str(bundle_set["v2"]), hs, o).exit_code == 0
    res = rollback(hs, o)
    assert res.exit_code == 0 and res.devices[0].status == "rolled-back"
    assert current_of(dev, root) == rid(bundle_set["v1"])
    res = rollback(hs, o)
    assert current_of(dev, root) == rid(bundle_set["v2"])


def test_status_and_rollback_over_a_local_transport(tmp_path):
    """Without sshd: each device reports on its own; a host whose connect blows up, or whose
    device has nothing to roll back to, fails alone, in inventory order."""
    bundle = build_bundle(tmp_path / "src", tmp_path / "dist")
    hs = parse_inventory({"all": {"hosts": {
        name: {"edgepack_root": str(tmp_path / name), "ansible_python_interpreter": sys.executable}
        for name in ("a", "broken", "b")}}}).select(None)
    o = FleetOptions(reports_dir=str(tmp_path / "reports"))

    def connect(h):
        if h.name == "broken":
            raise RuntimeError("no route")
        return LocalTransport(h.name)

    assert push(str(bundle), hs, o, connect=connect).exit_code == 3
    st = status(hs, o, connect=connect)
    assert list(st) == ["a", "broken", "b"] and st.exit_code == 3
    assert {h: d.status for h, d in st.items()} == {"a": "reachable", "broken": "failed",
                                                   "b": "reachable"}
    assert st["a"].current == rid(bundle) and st["a"].verdict["passed"]
    assert st["a"].detail["releases"] == 1
    assert st["broken"].reason == "broken: unexpected RuntimeError in connect: no route"
    rb = rollback(hs, o, connect=connect)
    assert rb.exit_code == 1 and "no previous release" in rb["a"].reason
    assert rb["a"].step == "rollback" and list(rb.failed) == ["a", "broken", "b"]
