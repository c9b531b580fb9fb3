"""Run one function per host on a thread pool and keep every host's result.

A failure on one host never stops the others. The main thread starts hosts (`forks` at a time)
and asks the rollout's admission policy before each start: start it, wait for a device in flight
to finish, or skip the rest (--canary, --max-fail: skipped hosts come back `skipped` with the
reason). Ctrl-C sets `cancel`: hosts not started are skipped, hosts in flight end their remote
command (the transports kill its process group) and clean up, and the results come back with
`interrupted` set. Each host's progress goes to a `progress` board when one is given.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Optional

from packager import progress
from packager.fleet.inventory import Host
from packager.fleet.results import DeviceResult

START, WAIT = "start", "wait"
INTERRUPTED = "interrupted (Ctrl-C)"


class Admission:
    """Start everything: the policy of a plain fan-out. Subclasses refuse or defer starts."""

    def admit(self, in_flight: int):
        """START, WAIT (only while something is in flight), or a reason to skip the rest."""
        return START

    def record(self, result: DeviceResult) -> None:
        pass


class Outcome(list):
    """The results, in the order of the hosts; `interrupted` when Ctrl-C stopped the work."""

    interrupted = False


def fan_out(hosts: list, one: Callable[[Host], DeviceResult], forks: int,
            policy: Optional[Admission] = None, cancel: Optional[threading.Event] = None,
            board: Optional[progress.Board] = None) -> Outcome:
    """one(host) on every host, at most `forks` at a time: the results in the order of `hosts`."""
    policy = policy or Admission()
    cancel = cancel if cancel is not None else threading.Event()
    results: dict = {}
    out = Outcome()

    def job(host):
        with progress.working_on(board, host.name):
            try:
                r = one(host)
            except Exception as exc:  # noqa: BLE001 - never lose a host's result
                r = DeviceResult(host=host.name)
                r.fail(exc)
        if board is not None:
            board.finish(host.name, r.ok, r.status, r.seconds)
        return r

    def skip(host, why):
        results[host.name] = DeviceResult.skipped(host.name, why)
        if board is not None:
            board.finish(host.name, False, "skipped")

    pending, running = deque(hosts), {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts) or 1)))

    def loop():
        """Start hosts as admission allows and collect results until none is pending or running."""
        while pending or running:
            while pending and len(running) < forks and not cancel.is_set():
                verdict = policy.admit(len(running))
                if verdict == WAIT and running:
                    break
                if verdict not in (START, WAIT):  # a reason: skip every host not started
                    while pending:
                        skip(pending.popleft(), verdict)
                    break
                host = pending[0]
                running[pool.submit(job, host)] = host
                pending.popleft()
            if cancel.is_set():
                while pending:
                    skip(pending.popleft(), INTERRUPTED)
            if not running:
                continue
            done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                host = running[f]
                results[host.name] = r = f.result()
                running.pop(f)
                policy.record(r)

    finished = False
    try:
        while not finished:
            try:
                loop()
                finished = True
            except KeyboardInterrupt:
                # Wherever in the loop it lands (a measured flake: between two waits, outside a
                # handler inside the loop, the pool then waited on a hung self-test): the devices in
                # flight see `cancel` within a fraction of a second, end their remote commands and
                # clean up, and the loop goes on collecting them; a second Ctrl-C is absorbed alike.
                cancel.set()
                out.interrupted = True
    finally:
        if not finished:      # anything else escaping: the devices in flight still end and clean up
            cancel.set()
        pool.shutdown(wait=True)
    out.extend(results.get(h.name) or DeviceResult.skipped(h.name, INTERRUPTED) for h in hosts)
    return out
