"""Shared fixtures: tiny models built in-process, bundles built once per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """Build bundles lazily, once per session: bundles(factory, profile, *extra) -> Path."""
    from packager.pipeline import BuildOptions, build

    root = tmp_path_factory.mktemp("bundles")
    cache: dict = {}

    def get(factory: str, profile: str, *extra: str, **kw) -> Path:
        key = (factory, profile, extra, tuple(sorted(kw.items())))
        if key not in cache:
            out = root / f"b{len(cache)}"
            opts = BuildOptions(source=f"{EXAMPLES}:{factory}", profile=profile, out=out, **kw)
            cache[key] = build(opts).bundle
        return cache[key]

    return get


@pytest.fixture
def quick_probe(monkeypatch):
    """Keep the agent's latency probe short in tests (the bundle's own settings are unchanged)."""
    return ["--runs", "5", "--seconds", "0", "--warmup", "1"]
