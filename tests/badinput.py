"""Helpers for the bad-input tests (host and fleet): run the CLI, check the one-line contract,
check nothing was left behind, and make broken bundles and inputs."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from packager.cli import app


EDGEPACK = Path(sys.executable).with_name("edgepack")


# ---------------------------------------------------------------------------- helpers

def cli(tmp_path: Path, *args, timeout=300, env=None, **popen) -> subprocess.CompletedProcess:
    """The real `edgepack` in a subprocess whose TMPDIR is tmp_path/systmp (checked empty later)."""
    systmp = tmp_path / "systmp"
    systmp.mkdir(exist_ok=True)
    cmd = [str(EDGEPACK)] if EDGEPACK.exists() else [sys.executable, "-m", "packager.cli"]
    full_env = dict(os.environ, TMPDIR=str(systmp), **(env or {}))
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, stdin=subprocess.DEVNULL, **popen)


class Out:
    def __init__(self, code, stdout, stderr):
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


def invoke(tmp_path: Path, monkeypatch, *args) -> Out:
    """In-process `edgepack -q ...`; temp folders go to tmp_path/systmp."""
    systmp = tmp_path / "systmp"
    systmp.mkdir(exist_ok=True)
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    res = CliRunner().invoke(app, ["-q"] + [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return Out(res.exit_code, res.stdout, res.stderr)


def assert_one_line(proc, code: int, expect: str | None = None, stdout_empty=True) -> str:
    """Exit code, exactly one `edgepack: ... (fix: ...)` line on stderr, no traceback."""
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("edgepack: ") and "(fix: " in line and line.endswith(")"), line
    if expect is not None:
        assert expect in line, line
    if stdout_empty:
        assert proc.stdout == "", proc.stdout
    return line


def assert_nothing_left(tmp_path: Path, *outs: Path) -> None:
    """No temp folder in TMPDIR; each --out absent or empty (no bundle, no .tmp, no .part)."""
    systmp = tmp_path / "systmp"
    if systmp.exists():  # `.ses` is onnxruntime's own session-id file, not something of ours
        assert sorted(p.name for p in systmp.iterdir() if p.name != ".ses") == []
    for out in outs:
        assert not out.exists() or sorted(p.name for p in out.iterdir()) == [], list(out.iterdir())


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


FACTORIES = {
    "emb.py": ("import torch\n"
               "class M(torch.nn.Module):\n"
               "    def __init__(self):\n"
               "        super().__init__(); self.e = torch.nn.Embedding(50, 8)\n"
               "    def forward(self, ids):\n"
               "        return self.e(ids).mean(1)\n"
               "def make():\n"
               "    return M().eval(), torch.zeros(1, 6, dtype=torch.long)\n"),
    "nan.py": ("import torch\n"
               "class N(torch.nn.Module):\n"
               "    def forward(self, x):\n"
               "        return torch.log(x - 1000.0)\n"
               "def make():\n"
               "    return N(), torch.randn(1, 4)\n"),
    "inf.py": ("import torch\n"
               "class N(torch.nn.Module):\n"
               "    def forward(self, x):\n"
               "        return x * 1e38 * 1e38\n"
               "def make():\n"
               "    return N(), torch.randn(1, 4)\n"),
    "two_in.py": ("import torch\n"
                  "class M(torch.nn.Module):\n"
                  "    def __init__(self):\n"
                  "        super().__init__(); self.a = torch.nn.Linear(8, 4); self.b = torch.nn.Linear(3, 4)\n"
                  "    def forward(self, features, extra):\n"
                  "        return self.a(features) + self.b(extra)\n"
                  "def make():\n"
                  "    return M().eval(), (torch.randn(1, 8), torch.randn(1, 3))\n"),
    "wrongtype.yaml": "extends: x86-cpu\nname: wt\nprobe: {runs: many}\n",
    "unknownkey.yaml": "extends: x86-cpu\nname: uk\nprecison: fp16\n",
    "badyaml.yaml": "extends: [x86-cpu\nname: broken\n",
    "cyc_a.yaml": "extends: cyc_b.yaml\nname: a\n",
    "cyc_b.yaml": "extends: cyc_a.yaml\nname: b\n",
    "extends_unknown.yaml": "extends: jetsonn\nname: eu\n",
    "afile": "not a folder",
}


def _rehash(b: Path, rel: str):
    m = json.loads((b / "manifest.json").read_text())
    data = (b / rel).read_bytes()
    m["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (b / "manifest.json").write_text(json.dumps(m))


def _edit_manifest(b: Path, fn):
    m = json.loads((b / "manifest.json").read_text())
    fn(m)
    (b / "manifest.json").write_text(json.dumps(m))


def _flip_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _evil_tar(path: Path, top: str, member: str, kind: str = "file") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        d = tarfile.TarInfo(top)
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        ti = tarfile.TarInfo(member)
        if kind == "symlink":
            ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(ti)
        elif kind == "hardlink":
            ti.type, ti.linkname = tarfile.LNKTYPE, "/etc/passwd"
            tar.addfile(ti)
        elif kind == "fifo":
            ti.type = tarfile.FIFOTYPE
            tar.addfile(ti)
        else:
            ti.size = 5
            tar.addfile(ti, io.BytesIO(b"pwned"))
    return path


def _make_bad_bundle(kind: str, good: Path, tmp_path: Path) -> tuple[Path, str]:
    """A broken copy of a good bundle -> (path, expected text in the one line)."""
    b = tmp_path / "bad-bundle"
    if kind in ("abs", "dotdot", "symlink", "hardlink", "fifo", "truncated", "not-tar"):
        arc = tmp_path / f"{kind}.tar.gz"
        member = {"abs": "/tmp/edgepack-evil-abs", "dotdot": "b/../../edgepack-evil-dotdot",
                  "symlink": "b/link", "hardlink": "b/hard", "fifo": "b/fifo"}.get(kind)
        if member:
            _evil_tar(arc, "b", member, kind if kind in ("symlink", "hardlink", "fifo") else "file")
            return arc, {"abs": "unsafe path", "dotdot": "unsafe path", "symlink": "holds a link",
                         "hardlink": "holds a link", "fifo": "special file"}[kind]
        if kind == "truncated":
            from packager.bundle import make_archive
            full = make_archive(good, tmp_path / "full.tar.gz")
            arc.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
            full.unlink()
            return arc, "truncated or corrupt archive"
        arc.write_bytes(os.urandom(300))
        return arc, "is not a readable tar archive"
    shutil.copytree(good, b)
    if kind == "tampered":
        _flip_byte(b / "model" / "model.onnx")
        return b, "model/model.onnx: sha256"
    if kind == "missing-manifest":
        (b / "manifest.json").unlink()
        return b, "no manifest.json"
    if kind == "malformed-manifest":
        (b / "manifest.json").write_text("{\"schema_version\": 1, ")
        return b, "is not valid JSON"
    if kind == "newer-schema":
        _edit_manifest(b, lambda m: m.update(schema_version=99))
        return b, "manifest schema 99 is newer"
    if kind == "bad-file-entry":
        _edit_manifest(b, lambda m: m["files"].update({"vectors.npz": 5}))
        return b, "the entry for 'vectors.npz' is not {sha256, size}"
    if kind == "unsafe-listed-path":
        _edit_manifest(b, lambda m: m["files"].update({"../../etc/passwd": {"sha256": "0" * 64,
                                                                            "size": 1}}))
        return b, "unsafe path '../../etc/passwd'"
    raise AssertionError(kind)


BAD_BUNDLES = ["tampered", "missing-manifest", "malformed-manifest", "newer-schema", "bad-file-entry",
               "unsafe-listed-path", "abs", "dotdot", "symlink", "hardlink", "fifo", "truncated", "not-tar"]




def make_inputs_dir(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name, text in FACTORIES.items():
        _write(d / name, text)
    (d / "emptydir").mkdir()
    _tiny_onnx(d / "tiny.onnx")
    np.savez(d / "counts.npz", features=np.zeros((4, 1, 8), np.float32),
             extra=np.zeros((3, 1, 3), np.float32))
    return d


