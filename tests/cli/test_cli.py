"""The CLI: typer's runner for output and exit codes, a real subprocess where the process matters."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from packager.cli import app

from support import EXAMPLES, run_cli

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_is_instant_no_heavy_imports():
    code = ("import sys; from packager.cli import app; "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'paramiko', 'tensorflow', 'numpy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    proc = run_cli("--help")
    assert proc.returncode == 0 and "build" in proc.stdout and "selftest" in proc.stdout


def test_profiles_list_table_and_json():
    res = invoke("profiles", "list")
    assert res.exit_code == 0
    header, *rows = res.stdout.strip().splitlines()
    assert header.split()[:4] == ["NAME", "FORMAT", "PRECISION", "RUNTIME"]
    jetson = next(r for r in rows if r.startswith("jetson "))
    assert jetson.split()[1:4] == ["onnx", "fp16", "onnxruntime"]
    res = invoke("profiles", "list", "--json")
    names = {p["name"] for p in json.loads(res.stdout)}
    assert {"jetson", "x86-cpu", "x86-cpu-int8", "coral", "android", "raspberry-pi", "jetson-torchscript"} <= names


def test_profiles_show_resolved_and_validate(tmp_path):
    res = invoke("profiles", "show", "jetson", "--json")
    data = json.loads(res.stdout)
    assert data["precision"] == "fp16" and data["parity"]["samples"] == 8 and "extends" not in data
    good = tmp_path / "good.yaml"
    good.write_text("extends: jetson\nname: my-jetson\nprobe: {budget_ms: 5}\n")
    res = invoke("profiles", "validate", good)
    assert res.exit_code == 0 and "valid profile 'my-jetson'" in res.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: jetson\nprobe: {budget: 5}\n")
    proc = run_cli("profiles", "validate", bad)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown key 'probe.budget'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _truncated_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 64], np.ones(64 * 64, np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    path.write_bytes(data[: len(data) // 2])


BAD_FACTORIES = {
    "raises": "def make():\n    raise ValueError('weights file missing')\n",
    "notmodel": "def make():\n    return 42\n",
    "syntax": "def make(:\n",
}


@pytest.mark.parametrize("case,args,expect", [
    ("missing source", ["nope/model.onnx"], "ONNX file 'nope/model.onnx' does not exist"),
    ("missing factory file", ["nope.py:make"], "factory file 'nope.py' does not exist"),
    ("unknown profile", ["{EX}:mlp", "--profile", "jetsno"], "unknown profile 'jetsno' (fix: did you mean 'jetson'?"),
    ("bad input shape", ["{EX}:tiny_cnn_module", "--input-shape", "x=1x3xbig"], "dimensions must be whole numbers"),
    ("shape that does not fit", ["{EX}:tiny_cnn_module", "--input-shape", "x=1x5x8x8"], "cannot run on its reference inputs"),
    ("no shapes", ["{EX}:tiny_cnn_module"], "gives no input shapes (forward takes ['x'])"),
    ("no such factory", ["{EX}:nothing"], "has no 'nothing'"),
    ("factory raises", ["{T}/raises.py:make"], "raised ValueError: weights file missing"),
    ("not a model", ["{T}/notmodel.py:make"], "returned int, not a torch.nn.Module"),
    ("syntax error", ["{T}/syntax.py:make"], "importing '{T}/syntax.py' failed: SyntaxError"),
    ("corrupt onnx", ["{T}/corrupt.onnx"], "is not a readable ONNX model"),
    ("bad precision", ["{EX}:mlp", "--precision", "int4"], "unknown precision 'int4'"),
    ("bad format", ["{EX}:mlp", "--format", "coreml"], "unknown --format 'coreml'"),
    ("format not built yet", ["{EX}:mlp", "--profile", "base", "--format", "nosuch"], "unknown --format"),
    ("out is a file", ["{EX}:mlp", "--out", "{T}/afile"], "is a file, not a folder"),
    ("calibration wrong shape", ["{EX}:tiny_cnn", "--precision", "int8-static", "--calibration", "{T}/calib_bad.npz"],
     "a sample has shape [1, 3, 8, 8], the input takes [1, 3, 32, 32]"),
    ("calibration missing name", ["{EX}:tiny_cnn", "--precision", "int8-static", "--calibration", "{T}/calib_name.npz"],
     "lacks ['x']"),
    ("calibration zero samples", ["{EX}:tiny_cnn", "--precision", "int8-static", "--calibration", "{T}/calib_zero.npz"],
     "holds zero samples"),
    ("inputs not npz", ["{EX}:tiny_cnn", "--inputs", "{T}/afile"], "is not a readable .npz"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, case, args, expect):
    for name, text in BAD_FACTORIES.items():
        _write(tmp_path, f"{name}.py", text)
    _truncated_onnx(tmp_path / "corrupt.onnx")
    (tmp_path / "afile").write_text("not a folder")
    np.savez(tmp_path / "calib_bad.npz", x=np.zeros((4, 1, 3, 8, 8), np.float32))
    np.savez(tmp_path / "calib_name.npz", image=np.zeros((4, 3, 32, 32), np.float32))
    np.savez(tmp_path / "calib_zero.npz", x=np.zeros((0, 3, 32, 32), np.float32))
    sub = lambda a: a.replace("{EX}", str(EXAMPLES)).replace("{T}", str(tmp_path))
    args = [sub(a) for a in args]
    if "--profile" not in args:
        args += ["--profile", "x86-cpu"]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "dist")]
    proc = run_cli("build", *args)
    assert proc.returncode == 2, (case, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("edgepack: ") or "(fix:" in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edgepack: ") and "(fix: " in lines[0]
    assert sub(expect) in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    dist = tmp_path / "dist"
    assert not dist.exists() or list(dist.iterdir()) == []


def test_a_wrong_calibration_file_fails_before_any_conversion(tmp_path):
    np.savez(tmp_path / "calib_name.npz", image=np.zeros((4, 3, 32, 32), np.float32))
    proc = run_cli("build", f"{EXAMPLES}:tiny_cnn", "--profile", "x86-cpu-int8", "--precision", "int8-static",
                   "--calibration", tmp_path / "calib_name.npz", "--out", tmp_path / "dist")
    assert proc.returncode == 2 and "lacks ['x']" in proc.stderr
    assert "converting" not in proc.stderr and "running the original" not in proc.stderr, proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = run_cli("--debug", "build", "missing.onnx", "--profile", "x86-cpu", "--out", tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_a_failed_build_with_json_says_why_on_stdout(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    proc = run_cli("build", bad, "--profile", "x86-cpu", "--out", tmp_path / "dist", "--json")
    assert proc.returncode == 2
    got = json.loads(proc.stdout)          # a script reading --json gets the reason, not an empty stdout
    assert proc.stderr.strip().splitlines()[-1] == "edgepack: " + got["error"], (proc.stderr, got)
    assert got["exit_code"] == 2 and got["kind"] == "SourceError"
    assert not (tmp_path / "dist").exists() or list((tmp_path / "dist").iterdir()) == []


def test_build_then_selftest_table_and_json(tmp_path):
    proc = run_cli("build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", tmp_path / "dist", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    b = result["bundle"]
    assert result["manifest"]["name"] == "mlp"
    res = invoke("selftest", b, "--runs", "5", "--seconds", "0")
    assert res.exit_code == 0, res.stdout
    assert "integrity" in res.stdout and "verdict" in res.stdout and "PASS" in res.stdout
    proc = run_cli("selftest", b, "--json", "--runs", "5", "--seconds", "0")
    assert proc.returncode == 0
    report = json.loads(proc.stdout)  # nothing but the report on stdout
    assert report["verdict"]["passed"] is True and report["latency"]["runs"] >= 5


def test_latency_budget_failure_exit_1(tmp_path):
    proc = run_cli("build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", tmp_path,
                   "--latency-budget-ms", "0.000001", "--json")
    b = json.loads(proc.stdout)["bundle"]
    proc = run_cli("selftest", b, "--runs", "5", "--seconds", "0")
    assert proc.returncode == 1
    assert "latency: p90" in proc.stdout and "> budget 1e-06 ms" not in proc.stderr
    assert "FAIL" in proc.stdout


def test_selftest_of_archive(tmp_path):
    proc = run_cli("build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", tmp_path, "--archive", "--json")
    arc = json.loads(proc.stdout)["archive"]
    assert arc.endswith(".tar.gz")
    proc = run_cli("selftest", arc, "--json", "--runs", "3", "--seconds", "0")
    assert proc.returncode == 0 and json.loads(proc.stdout)["verdict"]["passed"]


def test_selftest_of_a_folder_that_is_no_bundle(tmp_path):
    proc = run_cli("selftest", tmp_path)
    assert proc.returncode == 2 and "no manifest.json" in proc.stderr and "Traceback" not in proc.stderr


def _mount_tmpfs(path, options):
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): " + proc.stderr.decode()[-200:])


@pytest.mark.parametrize("options,expect", [("size=100k", "No space left on device"),
                                             ("ro,size=1m", "cannot create --out folder")])
def test_out_on_full_or_readonly_disk_leaves_nothing(tmp_path, options, expect):
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, options)
    try:
        proc = run_cli("build", f"{EXAMPLES}:tiny_cnn", "--profile", "x86-cpu", "--out", mnt / "dist")
        assert proc.returncode == 2, proc.stderr
        assert expect in proc.stderr and "Traceback" not in proc.stderr
        left = [p for p in mnt.rglob("*") if p.is_file()]
        assert left == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_inputs_with_wrong_dtype(tmp_path):
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 1, 3, 32, 32), np.int32))
    proc = run_cli("build", f"{EXAMPLES}:tiny_cnn", "--profile", "x86-cpu", "--inputs", tmp_path / "in.npz",
                   "--out", tmp_path / "d")
    assert proc.returncode == 2
    assert "inputs array 'x'" in proc.stderr and "is int32, the model takes float32" in proc.stderr


def test_signed_build_writes_a_verifiable_signature_and_a_bad_key_writes_nothing(tmp_path):
    from packager import signing

    key = tmp_path / "k"
    assert run_cli("keygen", key).returncode == 0
    proc = run_cli("build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", tmp_path / "d",
                   "--sign-key", key, "--json")
    assert proc.returncode == 0, proc.stderr
    b = json.loads(proc.stdout)["bundle"]
    signers = [p for p in tmp_path.iterdir() if "allowed" in p.name]
    assert signers, list(tmp_path.iterdir())
    ok, _ = signing.verify_manifest(b, str(signers[0]))
    assert ok
    bad = tmp_path / "notakey"
    bad.write_text("garbage")
    proc = run_cli("build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", tmp_path / "d2", "--sign-key", bad)
    assert proc.returncode == 2 and "cannot sign" in proc.stderr
    assert not (tmp_path / "d2").exists() or list((tmp_path / "d2").iterdir()) == []
