"""What a fleet command returns: one DeviceResult per host, gathered in a FleetResult.

Like fabric's GroupResult, a FleetResult maps each host to its result, and a failed host's
result carries its error (`.error`, the exception itself; `.reason` / `.hint`, its text):
`result["cam01"]`, `result.succeeded`, `result.failed`. `to_dict()` is the `--json` contract.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Optional

from packager import progress
from packager.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, EXIT_PARTIAL, EdgepackError

log = logging.getLogger(__name__)

OK_STATUSES = ("activated", "unchanged", "retested", "rolled-back", "reachable")
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


@dataclass
class DeviceResult:
    host: str
    status: str = "failed"  # activated | unchanged | retested | rolled-back | reachable | failed | skipped
    step: Optional[str] = None  # the step reached (where it failed, for a failure)
    reason: Optional[str] = None
    hint: Optional[str] = None
    release_id: Optional[str] = None
    current: Optional[str] = None
    previous: Optional[str] = None
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    reused_files: int = 0
    seconds: float = 0.0
    verdict: Optional[dict] = None
    p50_ms: Optional[float] = None
    report_file: Optional[str] = None  # local copy of the device's report
    facts: Optional[dict] = None
    detail: dict = field(default_factory=dict)
    error: Optional[BaseException] = field(default=None, repr=False, compare=False)  # not in JSON

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def at(self, step: str) -> None:
        """The device reached `step` (and the live display, where one listens, shows it)."""
        self.step = step
        progress.at(step)

    @classmethod
    def skipped(cls, host: str, why: str) -> "DeviceResult":
        return cls(host=host, status="skipped", step="not started",
                   reason=f"{host}: not started: {why}")

    def fail(self, exc: BaseException) -> None:
        """Record why this device failed; the reason always starts with the host's name."""
        self.status, self.error = "failed", exc
        if isinstance(exc, EdgepackError):
            reason, self.hint = exc.message, exc.hint
            self.reason = reason if reason.startswith(self.host) else f"{self.host}: {reason}"
        else:  # a surprise on one device never stops the fleet; --debug logs the traceback
            where = f" in {self.step}" if self.step else ""
            self.reason = f"{self.host}: unexpected {type(exc).__name__}{where}: {exc}"
            self.hint = "rerun with --debug and report this"

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "error"}


@contextmanager
def recording(res: DeviceResult):
    """Run one device's work: whatever it raises is recorded in `res`, never raised further;
    `res.seconds` is how long it took."""
    started = time.monotonic()
    try:
        yield res
    except Exception as exc:  # noqa: BLE001 - one device's failure never stops the others
        if not isinstance(exc, EdgepackError):
            log.debug("%s failed in %s", res.host, res.step, exc_info=True)
        res.fail(exc)
    finally:
        res.seconds = round(time.monotonic() - started, 3)


@dataclass
class FleetResult(Mapping):
    action: str  # push | status | rollback
    devices: list  # DeviceResult, in inventory order
    bundle: Optional[dict] = None
    halted: Optional[str] = None  # why devices were skipped (canary, --max-fail, Ctrl-C)
    seconds: float = 0.0
    interrupted: bool = False  # Ctrl-C stopped the work (exit code 130)

    def __getitem__(self, host: str) -> DeviceResult:
        for d in self.devices:
            if d.host == host:
                return d
        raise KeyError(host)

    def __iter__(self):
        return (d.host for d in self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def succeeded(self) -> dict:
        return {d.host: d for d in self.devices if d.ok}

    @property
    def failed(self) -> dict:
        """Failed and skipped hosts."""
        return {d.host: d for d in self.devices if not d.ok}

    def summary(self) -> dict:
        """status -> how many devices ended in it."""
        return {s: sum(1 for d in self.devices if d.status == s)
                for s in sorted({d.status for d in self.devices})}

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if not self.devices:
            return EXIT_BAD_INPUT
        good = sum(1 for d in self.devices if d.ok)
        if good == len(self.devices):
            return EXIT_OK
        return EXIT_CHECK_FAILED if good == 0 else EXIT_PARTIAL

    def to_dict(self) -> dict:
        return {"action": self.action, "bundle": self.bundle, "halted": self.halted,
                "interrupted": self.interrupted,
                "seconds": round(self.seconds, 3), "exit_code": self.exit_code,
                "summary": self.summary(), "devices": [d.to_dict() for d in self.devices]}
