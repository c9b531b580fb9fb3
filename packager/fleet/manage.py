"""status and rollback: the same per-device frame (connect, maybe lock, one device command).

Both fan out over the hosts like a push; a device that fails never stops the others.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from packager import progress
from packager.fleet.fanout import INTERRUPTED, fan_out
from packager.fleet.inventory import Host
from packager.fleet.options import FleetOptions
from packager.fleet.remote import Device, session
from packager.fleet.results import DeviceResult, FleetResult, recording
from packager.fleet.transports import Transport


def status(hosts: list, opts: FleetOptions,
           connect: Optional[Callable[[Host], Transport]] = None) -> FleetResult:
    """What is current on each device, its last verdict and p50 (no lock: read-only)."""
    def body(dev: Device, res: DeviceResult):
        res.at("status")
        st = dev.call("status", lease=False, timeout=60)
        facts = dev.call("device-facts", lease=False, timeout=60)
        facts.pop("ok", None)
        res.facts = facts
        last = st.get("last_report") or {}
        res.current, res.previous = st.get("current"), st.get("previous")
        res.release_id = st.get("current")
        res.verdict, res.p50_ms = last.get("verdict"), last.get("p50_ms")
        names = {r["id"]: r for r in st.get("releases") or []}
        cur = names.get(st.get("current")) or {}
        res.detail = {"name": cur.get("name"), "version": cur.get("version"),
                      "releases": len(names), "root": st.get("root"),
                      "last_report": last.get("file")}
        res.status = "reachable"
        res.at("done")

    return _each_device("status", hosts, opts, connect, body, lock=False)


def rollback(hosts: list, opts: FleetOptions,
             connect: Optional[Callable[[Host], Transport]] = None) -> FleetResult:
    """Swap `current` and `previous` on each device, under the device lock."""
    def body(dev: Device, res: DeviceResult):
        res.at("rollback")
        out = dev.call("rollback", timeout=60)
        res.current, res.previous = out.get("current"), out.get("previous")
        res.release_id = out.get("current")
        res.status = "rolled-back"
        res.at("done")

    return _each_device("rollback", hosts, opts, connect, body, lock=True)


def _each_device(action: str, hosts: list, opts: FleetOptions, connect, body,
                 lock: bool) -> FleetResult:
    started = time.monotonic()
    connect = connect or opts.connector()
    cancel = threading.Event()

    def one(host: Host) -> DeviceResult:
        res = DeviceResult(host=host.name)
        with recording(res), session(host, connect, res, lock, timeout=opts.command_timeout,
                                     cancel=cancel) as dev:
            body(dev, res)
        return res

    board = progress.board(action, [h.name for h in hosts])
    try:
        results = fan_out(hosts, one, opts.forks, cancel=cancel, board=board)
    finally:
        board.close()
    return FleetResult(action, list(results), None, INTERRUPTED if results.interrupted else None,
                       time.monotonic() - started, interrupted=results.interrupted)
