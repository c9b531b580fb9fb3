"""Fixtures for the Ansible export tests: a small loopback fleet of real sshd devices (the fleet
tests' harness), ansible-core, and bundles made once per session."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fleet"))

from fleet_fixtures import loopback_fleet, usual_bundles  # noqa: E402


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
    yield from loopback_fleet(4, "edgepack-export-")


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    return usual_bundles(tmp_path_factory.mktemp("export-bundles"))
