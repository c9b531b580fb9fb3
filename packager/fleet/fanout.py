"""Run one function per host on a thread pool and keep every host's result.

A failure on one host never stops the others; `should_halt` (the rollout's canary / --max-fail
policy) can only keep hosts from *starting*: they come back `skipped` with its reason.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from packager.fleet.inventory import Host
from packager.fleet.results import DeviceResult


def fan_out(hosts: list, one: Callable[[Host], DeviceResult], forks: int,
            should_halt: Optional[Callable[[], Optional[str]]] = None) -> list:
    """one(host) on every host, `forks` at a time: the results in the order of `hosts`."""
    results: dict = {}
    lock = threading.Lock()

    def job(host):
        reason = should_halt() if should_halt is not None else None
        if reason:
            r = DeviceResult.skipped(host.name, reason)
        else:
            try:
                r = one(host)
            except Exception as exc:  # noqa: BLE001 - never lose a host's result
                r = DeviceResult(host=host.name)
                r.fail(exc)
        with lock:
            results[host.name] = r

    if hosts:
        with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts)))) as pool:
            list(pool.map(job, hosts))
    return [results[h.name] for h in hosts]
