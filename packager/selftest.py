"""Run a bundle's own agent in a separate process, exactly as a device would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .bundle import extract_archive, load_manifest
from .errors import BundleError

# Variables that could make the child see host packages or settings a device would not have.
_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONSAFEPATH")


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the bundle as it was
    return env


def run_local(bundle: Path, python: str | None = None, runs: int | None = None,
              seconds: float | None = None, timeout: float = 600.0, extra_args=()) -> tuple[dict, int]:
    bundle = Path(bundle)
    if not bundle.exists():
        raise BundleError(f"bundle '{bundle}' does not exist", "pass a bundle folder made by `edgepack build`")
    with tempfile.TemporaryDirectory(prefix="edgepack-selftest-") as tmp:
        if bundle.is_file():
            bundle = extract_archive(bundle, Path(tmp))
        load_manifest(bundle)  # a clear error before starting a process
        cmd = [python or sys.executable, "-m", "agent", "selftest", "--json", "."]
        if runs is not None:
            cmd += ["--runs", str(runs)]
        if seconds is not None:
            cmd += ["--seconds", str(seconds)]
        cmd += list(extra_args)
        try:
            proc = subprocess.run(cmd, cwd=str(bundle), env=clean_env(), capture_output=True, text=True,
                                  timeout=timeout)
        except FileNotFoundError:
            raise BundleError(f"interpreter '{cmd[0]}' not found", "pass --python PATH to a Python >= 3.8") from None
        except subprocess.TimeoutExpired:
            raise BundleError(f"the agent did not finish within {timeout:.0f} s",
                              "lower the probe's runs/seconds (--runs, --seconds)") from None
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])[:400]
        raise BundleError(f"the agent crashed (exit {proc.returncode}) without a report: {tail}",
                          "check that the interpreter has numpy and the bundle's runtime") from None
    return report, proc.returncode
