"""Bad input to `edgepack build` ends in ONE clear line on stderr (what, why, fix), the documented
exit code, no traceback, and nothing half-made: no bundle, no temp folder, no `.part`.

Each case is listed in docs/RELIABILITY.md with the test that shows it. Most cases run in-process
through typer's runner (torch is imported once) with `tempfile.tempdir` pointed at a fresh folder,
so a temp folder left behind is seen; a few run as real processes to check the process-level
contract (no traceback, `--debug` shows one).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from badinput import EDGEPACK, assert_nothing_left, _write, assert_one_line, cli, invoke, make_inputs_dir
from support import EXAMPLES


@pytest.fixture
def inputs_dir(tmp_path):
    return make_inputs_dir(tmp_path)


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
    # A model whose forward() takes 0.3 s: the reference run calls it eagerly on 8 samples (2.4 s),
    # so the build is certainly still running when the signal arrives, however loaded the machine
    # (the export later traces it once, and the traced graph has no sleep: too short a window).
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
                         text=True, env=dict(os.environ, TMPDIR=str(systmp)),
                         # a suite started in the background (`cmd &` without job control) ignores
                         # SIGINT, children inherit that, and Python then installs no handler: the
                         # build would finish (exit 0). A terminal's Ctrl-C is what this test is about.
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in p.stderr:  # wait until the build is under way (temp folder made)
        seen.append(line)
        if "running the original model" in line:
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


