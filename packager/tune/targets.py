"""Where tune runs candidates: this host (the bundle's agent in a subprocess) or one device over SSH,
in a scratch folder that is removed afterwards — nothing is staged or activated on the device."""
from __future__ import annotations

import json
import logging
import socket
import tempfile
from pathlib import Path

from ..errors import EdgepackError, short

log = logging.getLogger(__name__)

# Extracts an uploaded bundle archive with tarfile's data filter where Python has it (3.8.17+ / 3.12).
_EXTRACT = ("import sys, tarfile; t = tarfile.open(sys.argv[1]); "
            "kw = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}; "
            "t.extractall(sys.argv[2], **kw)")
_MKTEMP = "import tempfile; print(tempfile.mkdtemp(prefix='edgepack-tune-'))"


class HostTarget:
    """This machine: the runtimes importable here, the agent run as on a device."""

    name = "local"

    def __init__(self):
        self.id = f"local:{socket.gethostname()}"
        self.is_open = False

    def open(self) -> dict:
        from agent import report

        self.is_open = True
        return report.facts()

    def selftest(self, bundle: Path, run_args: list[str], probe: list[str], timeout: float) -> tuple[dict, int]:
        from ..selftest import run_local

        return run_local(bundle, extra_args=probe + run_args, timeout=timeout)

    def close(self) -> None:
        self.is_open = False


class DeviceTarget:
    """One inventory host; candidates are uploaded as archives into a scratch folder there."""

    def __init__(self, host, connect):
        self.host, self._connect = host, connect
        self.name, self.id = host.name, f"ssh:{host.name}:{host.address}:{host.port}"
        self.t, self.scratch, self.facts = None, None, None

    @property
    def is_open(self) -> bool:
        return self.t is not None

    def _py(self, *args: str, cwd: str | None = None, timeout: float = 120):
        return self.t.run(self.host.python + ["-B", *args], cwd=cwd, timeout=timeout)

    def open(self) -> dict:
        if self.t is not None:
            return self.facts
        self.t = self._connect(self.host)
        r = self._py("-c", _MKTEMP)
        if r.rc != 0 or not r.stdout.strip():
            raise EdgepackError(f"{self.name}: cannot make a scratch folder: {short(r.stderr) or 'no output'}",
                                "check the device's Python (ansible_python_interpreter) and its /tmp")
        self.scratch = r.stdout.strip().splitlines()[-1]
        self.facts = self._facts()
        return self.facts

    def _facts(self) -> dict:
        """`python3 -m agent facts --json` of the agent this edgepack ships, uploaded to the scratch."""
        import tarfile

        from ..bundle import AGENT_DIR

        with tempfile.TemporaryDirectory(prefix="edgepack-tune-agent-") as tmp:
            archive = Path(tmp) / "agent.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(AGENT_DIR, arcname="agent", filter=lambda ti: None if "__pycache__" in ti.name else ti)
            self.t.put(str(archive), f"{self.scratch}/agent.tar.gz")
        home = f"{self.scratch}/facts"
        r = self._py("-c", _EXTRACT, f"{self.scratch}/agent.tar.gz", home)
        if r.rc == 0:
            r = self._py("-m", "agent", "facts", "--json", cwd=home)
        try:
            facts = json.loads(r.stdout)
        except ValueError:
            facts = None
        if r.rc != 0 or not isinstance(facts, dict):
            raise EdgepackError(f"{self.name}: `agent facts` failed (exit {r.rc}): {short(r.stderr) or 'no output'}",
                                "check that the device has Python >= 3.8 and numpy")
        return facts

    def selftest(self, bundle: Path, run_args: list[str], probe: list[str], timeout: float) -> tuple[dict, int]:
        from ..bundle import make_archive

        with tempfile.TemporaryDirectory(prefix="edgepack-tune-up-") as tmp:
            archive = make_archive(bundle, Path(tmp) / "b.tar.gz")
            remote_tar = f"{self.scratch}/b.tar.gz"
            self.t.put(str(archive), remote_tar)
        here = f"{self.scratch}/run"
        r = self._py("-c", _EXTRACT, remote_tar, here)
        if r.rc != 0:
            raise EdgepackError(f"{self.name}: extracting the candidate failed: {short(r.stderr)}",
                                "free space in the device's /tmp")
        cwd = f"{here}/{bundle.name}"
        try:
            r = self._py("-m", "agent", "selftest", "--json", ".", *probe, *run_args, cwd=cwd, timeout=timeout)
        finally:
            self.t.run(["rm", "-rf", here, remote_tar], timeout=60)
        try:
            return json.loads(r.stdout), r.rc
        except ValueError:
            raise EdgepackError(f"{self.name}: the agent gave no report (exit {r.rc}): "
                                f"{short(r.stderr) or 'no output'}", "run edgepack selftest on the device") from None

    def close(self) -> None:
        if self.t is not None:
            try:
                if self.scratch:
                    self.t.run(["rm", "-rf", self.scratch], timeout=60)
            finally:
                self.t.close()
                self.t = None
