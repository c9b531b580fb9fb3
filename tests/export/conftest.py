"""Fixtures for the Ansible export tests: a small loopback fleet of real sshd devices (the fleet
tests' harness), ansible-core, and bundles made once per session."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fleet"))

from fleet_harness import Fleet, _skip_reason, build_bundle, derive  # noqa: E402


def ansible_playbook() -> str | None:
    """ansible-core's ansible-playbook: $EDGEPACK_ANSIBLE_PLAYBOOK, bench/.venv-ansible (made by
    bench/setup_ansible.sh, which scripts/setup.sh runs), or PATH."""
    for cand in (os.environ.get("EDGEPACK_ANSIBLE_PLAYBOOK"),
                 str(REPO / "bench" / ".venv-ansible" / "bin" / "ansible-playbook"),
                 shutil.which("ansible-playbook")):
        if cand and os.path.exists(cand):
            return cand
    return None


@pytest.fixture(scope="session")
def playbook_exe():
    exe = ansible_playbook()
    if exe is None:
        pytest.skip("ansible-core not installed (bash bench/setup_ansible.sh; scripts/setup.sh runs it)")
    return exe


@pytest.fixture(scope="session")
def small_fleet():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    f = Fleet(Path(tempfile.mkdtemp(prefix="edgepack-export-")), 4)
    try:
        f.start()
    except Exception as exc:
        f.stop()
        pytest.skip(f"could not start the loopback fleet: {exc}")
    yield f
    f.stop()


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """v1, v2 (same files, new version), failing (latency budget never met)."""
    base = tmp_path_factory.mktemp("export-bundles")
    v1 = build_bundle(base / "src", base / "dist")
    m = json.loads((v1 / "manifest.json").read_text())
    probe = dict(m.get("probe") or {}, budget_ms=1e-9, budget_metric="p50")
    return {"v1": v1, "v2": derive(v1, base / "v2", manifest={"version": m["version"] + "-v2"}),
            "failing": derive(v1, base / "failing", manifest={"probe": probe,
                                                              "version": m["version"] + "-fail"})}
