"""Shared fixtures: tiny models built in-process, bundles built once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from support import EXAMPLES, REPO, agent_env, run_agent, run_cli  # noqa: F401


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
