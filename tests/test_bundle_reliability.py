"""A broken bundle (tampered, truncated, malformed, unsafe archive) or a device without its runtime:
`selftest` answers with one line and the documented exit code, and extracts nothing unsafe."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from badinput import BAD_BUNDLES, _make_bad_bundle, assert_nothing_left, assert_one_line, cli


@pytest.mark.parametrize("kind", BAD_BUNDLES)
def test_selftest_of_a_bad_bundle(tmp_path, bundles, kind):
    bad, expect = _make_bad_bundle(kind, bundles("mlp", "x86-cpu"), tmp_path)
    proc = cli(tmp_path, "selftest", bad, "--runs", "2", "--seconds", "0")
    assert_one_line(proc, 2, expect, stdout_empty=False)
    assert_nothing_left(tmp_path)
    assert not list(Path("/tmp").glob("edgepack-evil-*"))


def test_selftest_where_the_runtime_is_missing(tmp_path, bundles):
    """A Python with numpy but no onnxruntime: unusable, exit 2, one line naming the runtime."""
    venv = tmp_path / "nort"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    np_dir = Path(np.__file__).resolve().parent
    os.symlink(np_dir, site / "numpy")
    libs = np_dir.parent / "numpy.libs"
    if libs.exists():
        os.symlink(libs, site / "numpy.libs")
    py = venv / "bin" / "python"
    if subprocess.run([str(py), "-c", "import numpy"], capture_output=True).returncode != 0:
        pytest.skip("cannot give a bare venv this numpy")
    proc = cli(tmp_path, "selftest", bundles("mlp", "x86-cpu"), "--python", py, "--runs", "2",
               "--seconds", "0")
    line = assert_one_line(proc, 2, "onnxruntime", stdout_empty=False)
    assert "UNUSABLE" in line and "pip install" in line


