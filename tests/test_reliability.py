"""Reliability, host side: every bad input ends in ONE clear line on stderr (what, why, fix), the
documented exit code, no traceback, and nothing half-made: no bundle, no temp folder, no `.part`.

Each case is listed in docs/RELIABILITY.md with the test that shows it. The fleet side is in
tests/fleet/: bad inventories and bundles refused by push/status/rollback in test_fleet_cli.py,
faults on real sshd devices in test_fleet_reliability.py.

Most build cases run in-process through typer's runner (torch is imported once) with
`tempfile.tempdir` pointed at a fresh folder, so a temp folder left behind is seen; a few run as
real processes to check the process-level contract (no traceback, `--debug` shows one).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from packager.cli import app

from support import EXAMPLES, REPO

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


@pytest.fixture
def inputs_dir(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name, text in FACTORIES.items():
        _write(d / name, text)
    (d / "emptydir").mkdir()
    _tiny_onnx(d / "tiny.onnx")
    np.savez(d / "counts.npz", features=np.zeros((4, 1, 8), np.float32),
             extra=np.zeros((3, 1, 3), np.float32))
    return d


# ---------------------------------------------------------------------------- build: bad input

BUILD_CASES = [
    # (case, args, expected text in the one line)
    ("module cannot be imported", ["nosuchpkg.models:make"], "cannot import module 'nosuchpkg.models'"),
    ("not a format edgepack reads", ["{I}/emptydir"], "is not a format edgepack reads"),
    ("integer inputs without --inputs", ["{I}/emb.py:make"], "input 'ids' is int64"),
    ("model outputs NaN", ["{I}/nan.py:make"], "NaN/Inf values in output 'output'"),
    ("model outputs Inf", ["{I}/inf.py:make"], "NaN/Inf values in output 'output'"),
    ("--input-shape names no input", ["{I}/tiny.onnx", "--input-shape", "image=1x4"],
     "--input-shape names 'image', but"),
    ("--input-shape wrong rank", ["{I}/tiny.onnx", "--input-shape", "x=1x4x4"], "has 3 dims"),
    ("profile wrong type", ["{EX}:mlp", "--profile", "{I}/wrongtype.yaml"], "'probe.runs' must be an integer"),
    ("profile unknown key", ["{EX}:mlp", "--profile", "{I}/unknownkey.yaml"], "unknown key 'precison'"),
    ("profile malformed YAML", ["{EX}:mlp", "--profile", "{I}/badyaml.yaml"], "is not valid YAML at line"),
    ("profile extends cycle", ["{EX}:mlp", "--profile", "{I}/cyc_a.yaml"], "cycle: cyc_a -> cyc_b -> cyc_a"),
    ("profile extends unknown", ["{EX}:mlp", "--profile", "{I}/extends_unknown.yaml"],
     "unknown profile 'jetsonn'"),
    ("profile file missing", ["{EX}:mlp", "--profile", "{I}/nope.yaml"], "nope.yaml"),
    ("--inputs missing", ["{EX}:mlp", "--inputs", "{I}/nope.npz"], "inputs file '{I}/nope.npz' does not exist"),
    ("--inputs sample counts differ", ["{I}/two_in.py:make", "--inputs", "{I}/counts.npz"],
     "different sample counts per input"),
    ("--out below a file", ["{EX}:mlp", "--out", "{I}/afile/dist"], "is a file, not a folder"),
    ("--sign-key missing", ["{EX}:mlp", "--sign-key", "{I}/nokey"], "signing key '{I}/nokey' does not exist"),
    ("--version unsafe", ["{EX}:mlp", "--version", "../../x"], "--version '../../x' has characters"),
    ("--latency-budget-ms not positive", ["{EX}:mlp", "--latency-budget-ms", "-1"],
     "--latency-budget-ms must be > 0"),
    ("precision the format cannot do", ["{EX}:mlp", "--profile", "jetson-torchscript", "--precision",
                                        "int8-static"], "static int8"),
]


@pytest.mark.parametrize("case,args,expect", BUILD_CASES, ids=[c[0] for c in BUILD_CASES])
def test_build_bad_input(tmp_path, monkeypatch, inputs_dir, case, args, expect):
    sub = lambda a: a.replace("{EX}", str(EXAMPLES)).replace("{I}", str(inputs_dir))  # noqa: E731
    args = [sub(a) for a in args]
    if "--profile" not in args:
        args += ["--profile", "x86-cpu"]
    out = tmp_path / "dist"
    if "--out" not in args:
        args += ["--out", str(out)]
    proc = invoke(tmp_path, monkeypatch, "build", *args)
    assert_one_line(proc, 2, sub(expect))
    assert_nothing_left(tmp_path)
    assert not out.exists()  # not even an empty --out folder


@pytest.mark.slow
def test_bad_input_in_a_real_process_one_line_and_debug_shows_traceback(tmp_path):
    src = _write(tmp_path / "raises.py", "def make():\n    raise ValueError('weights file missing')\n")
    out = tmp_path / "dist"
    proc = cli(tmp_path, "build", f"{src}:make", "--profile", "x86-cpu", "--out", out)
    # progress lines may come first; the error is one line, and it is the last
    errors = [x for x in proc.stderr.splitlines() if "(fix: " in x]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert "raised ValueError: weights file missing" in errors[0]
    assert proc.stderr.splitlines()[-1] == errors[0]
    assert_nothing_left(tmp_path, out)
    proc = cli(tmp_path, "-q", "build", f"{src}:make", "--profile", "x86-cpu", "--out", out)
    assert_one_line(proc, 2, "weights file missing")
    proc = cli(tmp_path, "--debug", "build", f"{src}:make", "--profile", "x86-cpu", "--out", out)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "ValueError" in proc.stderr
    assert_nothing_left(tmp_path, out)


@pytest.mark.slow
def test_interrupted_build_leaves_nothing(tmp_path):
    """Ctrl-C in the middle of a build: exit 130, one line, no bundle, no temp folder."""
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    out = tmp_path / "dist"
    # A model whose forward() takes 0.3 s: the export after "converting" traces it, so the build
    # is certainly still running when the signal arrives, however fast the machine.
    slow = tmp_path / "slow_model.py"
    slow.write_text("import time, torch\n"
                    "class Slow(torch.nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__(); self.l = torch.nn.Linear(8, 4)\n"
                    "    def forward(self, x):\n"
                    "        time.sleep(0.3)\n"
                    "        return self.l(x)\n"
                    "def make():\n"
                    "    torch.manual_seed(0)\n"
                    "    return Slow().eval(), torch.randn(1, 8)\n")
    cmd = [str(EDGEPACK)] if EDGEPACK.exists() else [sys.executable, "-m", "packager.cli"]
    p = subprocess.Popen(cmd + ["build", f"{slow}:make", "--profile", "x86-cpu-int8",
                                "--out", str(out)], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ, TMPDIR=str(systmp)))
    seen = []
    for line in p.stderr:  # wait until the build is under way (temp folder made)
        seen.append(line)
        if "converting" in line:
            break
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    p.wait(timeout=120)
    assert p.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest.splitlines()[-1] and "Traceback" not in rest
    assert_nothing_left(tmp_path, out)


def test_full_disk_while_archiving_leaves_no_part(tmp_path, bundles, monkeypatch):
    """The archive cannot be written: one line, the .tmp is removed, the bundle folder stays whole."""
    from packager import bundle as bundle_mod
    from packager.errors import OutputError

    b = tmp_path / "b"
    shutil.copytree(bundles("mlp", "x86-cpu"), b)

    class Full(tarfile.TarFile):
        def addfile(self, *a, **kw):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(tarfile, "open", lambda *a, **kw: Full.open(*a, **kw))
    with pytest.raises(OutputError, match="No space left on device") as info:
        bundle_mod.make_archive(b)
    assert info.value.hint and "complete" in info.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    bundle_mod.verify(b)


# ---------------------------------------------------------------------------- bundles

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


# ---------------------------------------------------------------------------- security

def test_no_torch_load_without_weights_only_and_no_pickles():
    """torch.load only with weights_only=True; numpy never unpickles; no pickle module at all."""
    offenders = []
    for path in sorted((REPO / "packager").rglob("*.py")) + sorted((REPO / "agent").rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(REPO)}: {call}")
        for m in re.finditer(r"np\.load\(([^)]*)\)", text):
            if "allow_pickle=False" not in m.group(1):
                offenders.append(f"{path.relative_to(REPO)}: {m.group(0)}")
        if re.search(r"^\s*import pickle|^\s*from pickle|pickle\.loads?\(", text, re.M):
            offenders.append(f"{path.relative_to(REPO)}: pickle")
    assert offenders == []


def _key_body(private_key: Path) -> list[str]:
    """The base64 lines of an OpenSSH private key (what must never leak)."""
    lines = private_key.read_text().splitlines()
    return [x for x in lines if x and not x.startswith("-----")]


def test_signing_key_and_passphrase_never_leak(tmp_path):
    key = tmp_path / "keys" / "sign"
    proc = cli(tmp_path, "keygen", key, "--json")
    assert proc.returncode == 0, proc.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    body = _key_body(key)
    out = tmp_path / "dist"
    proc = cli(tmp_path, "--debug", "build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", out,
               "--sign-key", key, "--json")
    assert proc.returncode == 0, proc.stderr
    bundle = Path(json.loads(proc.stdout)["bundle"])
    texts = [proc.stdout, proc.stderr] + [p.read_bytes().decode("latin-1") for p in bundle.rglob("*")
                                          if p.is_file()]
    for chunk in body:
        assert not any(chunk in t for t in texts)
    # a key with a passphrase: refused in one line (no terminal to ask on), the passphrase and the
    # key never printed, no bundle
    locked = tmp_path / "keys" / "locked"
    secret = "correct horse battery staple"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", secret, "-f", str(locked)], check=True)
    out2 = tmp_path / "dist2"
    proc = cli(tmp_path, "-q", "build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", out2,
               "--sign-key", locked, start_new_session=True)
    assert_one_line(proc, 2, "cannot sign")
    assert secret not in proc.stderr
    assert not any(chunk in proc.stderr for chunk in _key_body(locked))
    assert_nothing_left(tmp_path, out2)
