"""Fixtures for the OCI tests: real registries (docker-registry) on 127.0.0.1 — plain HTTP, TLS
with basic auth, TLS with token auth — a small loopback sshd fleet, and bundles, each made once."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fleet"))

from fleet_fixtures import loopback_fleet, usual_bundles  # noqa: E402
from fleet_harness import derive  # noqa: E402
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
    b = usual_bundles(tmp_path_factory.mktemp("oci-bundles"))
    blob = bytes(range(256)) * 8192  # 2 MiB: big enough to cut mid-download
    b["big"] = derive(b["v1"], b["v1"].parents[1] / "big", files={"model/blob.bin": blob},
                      manifest={"version": b["v1"].name + "-big"})
    return b


@pytest.fixture(scope="session")
def pull_fleet():
    yield from loopback_fleet(4, "edgepack-oci-")
