"""Fixtures of the agent tests (the session's bundles come from tests/conftest.py)."""
from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def copy_of(bundles, tmp_path):
    """A private copy of a built bundle, for a test that changes it."""
    def make(factory="mlp", profile="x86-cpu"):
        dst = tmp_path / "b"
        shutil.copytree(bundles(factory, profile), dst)
        return dst
    return make
