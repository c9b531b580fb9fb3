"""FleetOptions: how push / status / rollback run, validated once when made.

Every bad value is reported in the one UsageError (exit 2); the CLI passes its options straight
in. `connector()` is the default transport factory: SSH with these host-key and timeout settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from packager.errors import UsageError


@dataclass(frozen=True)
class FleetOptions:
    forks: int = 16  # devices at once
    canary: int = 0  # the first N devices go first; if any fails, the rest are skipped
    max_fail: Optional[float] = None  # percent of the selected devices
    known_hosts: Optional[str] = None  # default ~/.ssh/known_hosts
    accept_new_hosts: bool = False
    connect_timeout: float = 10.0
    selftest_timeout: float = 600.0
    command_timeout: float = 300.0  # any other device command; past it its processes are ended
    force_compat: bool = False  # push even where the compatibility guard finds a mismatch
    retest: bool = False  # self-test again on devices whose current release is the bundle
    dead_after: int = 10  # seconds of unacknowledged data before a link counts as dead
    reports_dir: Optional[str] = "edgepack-reports"  # where each device's report is stored

    def __post_init__(self):
        problems = []  # (what is wrong, the fix)
        if not _is_int(self.forks) or self.forks < 1:
            problems.append((f"--forks must be >= 1, got {self.forks}", "pass --forks 16"))
        if not _is_int(self.canary) or self.canary < 0:
            problems.append((f"--canary must be >= 0, got {self.canary}", "pass --canary 1"))
        mf = self.max_fail
        if mf is not None and not (_is_number(mf) and 0 <= mf <= 100):
            problems.append((f"--max-fail is a percentage 0..100, got {mf}", "pass --max-fail 10"))
        for flag, value in (("--connect-timeout", self.connect_timeout),
                            ("--selftest-timeout", self.selftest_timeout),
                            ("--command-timeout", self.command_timeout)):
            if not _is_number(value) or value <= 0:
                problems.append((f"{flag} must be > 0 seconds, got {value}",
                                 f"pass {flag} 60"))
        if problems:
            raise UsageError("; ".join(p for p, _ in problems),
                             hint="; ".join(h for _, h in problems))

    def connector(self) -> Callable:
        """host -> a connected SSHTransport."""
        from packager.fleet.transports.ssh import SSHTransport

        def connect(host):
            return SSHTransport(host.name, host.address, host.port, host.user, host.key_file,
                                known_hosts=self.known_hosts,
                                accept_new_hosts=self.accept_new_hosts,
                                connect_timeout=self.connect_timeout,
                                dead_after=self.dead_after).connect()
        return connect


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
