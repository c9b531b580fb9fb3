"""Fixtures for the OCI tests: real registries (docker-registry) on 127.0.0.1 — plain HTTP, TLS
with basic auth, TLS with token auth — a small loopback sshd fleet, and bundles, each made once."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fleet"))

from fleet_harness import Fleet, _skip_reason, build_bundle, derive  # noqa: E402
from registry_harness import Registry, skip_reason  # noqa: E402


def _registry(tmp_path_factory, name, **kw):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    r = Registry(tmp_path_factory.mktemp(name), **kw)
    try:
        r.start()
    except Exception as exc:
        r.stop()
        pytest.skip(f"could not start docker-registry: {exc}")
    return r


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    r = _registry(tmp_path_factory, "reg-plain")
    yield r
    r.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory):
    r = _registry(tmp_path_factory, "reg-tls", tls=True, auth="basic")
    yield r
    r.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    r = _registry(tmp_path_factory, "reg-token", tls=True, auth="token")
    yield r
    r.stop()


@pytest.fixture(scope="session")
def oci_bundles(tmp_path_factory):
    base = tmp_path_factory.mktemp("oci-bundles")
    v1 = build_bundle(base / "src", base / "dist")
    m = json.loads((v1 / "manifest.json").read_text())
    probe = dict(m.get("probe") or {}, budget_ms=1e-9, budget_metric="p50")
    blob = bytes(range(256)) * 8192  # 2 MiB: big enough to cut mid-download
    return {"v1": v1, "v2": derive(v1, base / "v2", manifest={"version": m["version"] + "-v2"}),
            "failing": derive(v1, base / "failing", manifest={"probe": probe,
                                                              "version": m["version"] + "-fail"}),
            "big": derive(v1, base / "big", files={"model/blob.bin": blob},
                          manifest={"version": m["version"] + "-big"})}


@pytest.fixture(scope="session")
def pull_fleet():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    f = Fleet(Path(tempfile.mkdtemp(prefix="edgepack-oci-")), 4)
    try:
        f.start()
    except Exception as exc:
        f.stop()
        pytest.skip(f"could not start the loopback fleet: {exc}")
    yield f
    f.stop()
