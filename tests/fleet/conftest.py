"""Fixtures for the fleet tests: a loopback fleet of real sshd devices and a set of bundles,
each made once per session (see fleet_harness.py for how and why)."""
from __future__ import annotations

import json
import os

import pytest

from fleet_fixtures import loopback_fleet
from fleet_harness import build_bundle, derive


@pytest.fixture(scope="session")
def fleet():
    yield from loopback_fleet(int(os.environ.get("EDGEPACK_TEST_DEVICES", "8")), "edgepack-fleet-")



@pytest.fixture(scope="session")
def bundle_set(tmp_path_factory):
    """v1 (tiny real bundle), v2 (new version, same model), failing (latency budget), hanging
    agent, big (an extra 24 MiB file), built once per session."""
    base = tmp_path_factory.mktemp("fleet-bundles")
    v1 = build_bundle(base / "src", base / "dist")
    m = json.loads((v1 / "manifest.json").read_text())
    probe = dict(m.get("probe") or {})
    probe.update(budget_ms=1e-9, budget_metric="p50")
    hang_selftest = (b"import time\n\ndef run(bundle_dir, probe_overrides=None):\n"
                     b"    time.sleep(3600)\n")
    blob = os.urandom(24 * 1024 * 1024)
    return {
        "v1": v1,
        "v2": derive(v1, base / "v2", manifest={"version": m["version"] + "-v2"}),
        "failing": derive(v1, base / "failing", manifest={"probe": probe,
                                                          "version": m["version"] + "-fail"}),
        "hang": derive(v1, base / "hang", files={"agent/selftest.py": hang_selftest}),
        "crash": derive(v1, base / "crash",
                        files={"agent/selftest.py": b"raise RuntimeError('agent boom')\n"}),
        "big": derive(v1, base / "big", files={"model/blob.bin": blob}),
    }


