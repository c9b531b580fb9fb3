"""Helpers for the fixtures of test folders beyond tests/fleet that need a loopback fleet
(tests/export, tests/oci): start one with the skip rules of the fleet tests, and the usual bundles."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from fleet_harness import Fleet, _skip_reason, build_bundle, derive


def loopback_fleet(count: int, prefix: str):
    """A generator for a session fixture: a started Fleet of `count` devices, stopped after."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    f = Fleet(Path(tempfile.mkdtemp(prefix=prefix)), count)
    try:
        f.start()
    except Exception as exc:
        f.stop()
        pytest.skip(f"could not start the loopback fleet: {exc}")
    yield f
    f.stop()


def usual_bundles(base: Path) -> dict:
    """v1 (a tiny real bundle), v2 (same files, new version), failing (latency budget never met)."""
    v1 = build_bundle(base / "src", base / "dist")
    m = json.loads((v1 / "manifest.json").read_text())
    probe = dict(m.get("probe") or {}, budget_ms=1e-9, budget_metric="p50")
    return {"v1": v1, "v2": derive(v1, base / "v2", manifest={"version": m["version"] + "-v2"}),
            "failing": derive(v1, base / "failing", manifest={"probe": probe,
                                                              "version": m["version"] + "-fail"})}
