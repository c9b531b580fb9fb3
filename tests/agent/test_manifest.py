"""Reading and verifying a bundle (agent/manifest.py), with device.py's path and hash checks."""
from __future__ import annotations

import json

import pytest

from agent_support import selftest


def test_manifest_uses_the_device_files_checks_not_copies():
    from agent import device, manifest

    assert manifest.sha256_file is device.sha256_file
    assert manifest.safe_relpath is device.safe_relpath
    assert manifest.check_files is device.check_files


@pytest.mark.parametrize("rel, safe", [
    ("model/model.onnx", True), ("agent/runtimes/ort.py", True), ("vectors.npz", True),
    ("", False), ("/etc/passwd", False), ("\\x", False), ("../x", False), ("a/../b", False),
    ("a\\..\\b", False), ("./x", False), ("a//b", False), ("a/", False), (None, False), (3, False),
])
def test_safe_relpath(rel, safe):
    from agent.device import safe_relpath

    assert safe_relpath(rel) is safe


def test_check_files_names_each_problem(tmp_path):
    from agent.device import check_files, sha256_file

    (tmp_path / "ok").write_bytes(b"abc")
    (tmp_path / "resized").write_bytes(b"abcd")
    (tmp_path / "changed").write_bytes(b"abd")
    (tmp_path / "link").symlink_to(tmp_path / "ok")
    meta = {"sha256": sha256_file(str(tmp_path / "ok")), "size": 3}
    problems, checked = check_files(str(tmp_path), {n: meta for n in ("ok", "resized", "changed", "link", "gone")})
    assert checked == 1
    assert problems == ["changed: sha256 differs from the manifest (%s..., manifest says %s...)"
                        % (sha256_file(str(tmp_path / "changed"))[:12], meta["sha256"][:12]),
                        "gone: missing", "link: is a symbolic link", "resized: size 4, manifest says 3"]


def test_an_unsafe_path_in_the_manifest_is_unusable(copy_of):
    b = copy_of()
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["../outside"] = {"sha256": "0" * 64, "size": 1}
    (b / "manifest.json").write_text(json.dumps(m))
    proc, report = selftest(b)
    assert proc.returncode == 2 and "unsafe path '../outside'" in report["verdict"]["reasons"][0]
