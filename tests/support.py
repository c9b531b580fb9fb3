"""Helpers the top-level tests import (`from support import ...`).

They live here, not in conftest.py: tests/fleet has its own conftest.py, and a test module that
did `from conftest import ...` got whichever conftest pytest imported last.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "models.py"


def run_cli(*args, cwd=None, timeout=600):
    """Run the real `edgepack` console script in a subprocess (exit codes, stdout/stderr apart)."""
    exe = Path(sys.executable).with_name("edgepack")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "packager.cli"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def agent_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_agent(bundle, *args, python=None, timeout=300):
    """`cd BUNDLE && python -m agent ...` in a clean environment, as on a device."""
    return subprocess.run([python or sys.executable, "-m", "agent", *args], cwd=str(bundle),
                          env=agent_env(), capture_output=True, text=True, timeout=timeout)
