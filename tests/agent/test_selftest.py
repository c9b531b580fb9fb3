"""The device agent, run as a device runs it: `cd BUNDLE && python -m agent ...` in a subprocess."""
from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import REPO, run_agent

AGENT = REPO / "agent"
PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")


@pytest.fixture
def copy_of(bundles, tmp_path):
    def make(factory="mlp", profile="x86-cpu"):
        dst = tmp_path / "b"
        shutil.copytree(bundles(factory, profile), dst)
        return dst
    return make


def _selftest(b, *extra):
    proc = run_agent(b, "selftest", "--json", ".", "--runs", "3", "--seconds", "0", "--warmup", "0", *extra)
    return proc, json.loads(proc.stdout)


def _rehash(b, rel):
    m = json.loads((b / "manifest.json").read_text())
    data = (b / rel).read_bytes()
    m["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (b / "manifest.json").write_text(json.dumps(m))


def test_every_agent_file_parses_with_python38_grammar():
    for path in AGENT.glob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


def test_agent_imports_no_runtime_at_start():
    code = ("import sys, agent.__main__, agent.selftest, agent.report, agent.manifest, agent.parity; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnxruntime', 'torch', 'tensorflow', 'ai_edge_litert', 'packager', 'onnx')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.skipif(not PY38.exists(), reason="Python 3.8 interpreter not on this machine")
def test_real_python38_runs_facts_and_reports_missing_numpy(bundles):
    b = bundles("mlp", "x86-cpu")
    proc = run_agent(b, "facts", "--json", python=str(PY38))
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["python"].startswith("3.8")
    has_numpy = subprocess.run([str(PY38), "-c", "import numpy"], capture_output=True).returncode == 0
    proc = run_agent(b, "selftest", "--json", ".", python=str(PY38))
    report = json.loads(proc.stdout)
    if has_numpy:
        assert report["verdict"]["status"] in ("pass", "unusable")
    else:
        assert proc.returncode == 2 and report["verdict"]["status"] == "unusable"
        assert "numpy is not importable" in report["verdict"]["reasons"][0]
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not PY38.exists(), reason="Python 3.8 interpreter not on this machine")
def test_real_python38_runs_the_device_layout_commands(bundles, tmp_path):
    b = bundles("mlp", "x86-cpu")
    root = tmp_path / "root"
    rid = hashlib.sha256((b / "manifest.json").read_bytes()).hexdigest()
    for args in (["status", "--root", str(root)], ["prepare", "--root", str(root), "--id", rid],
                 ["rollback", "--root", str(root)]):
        proc = run_agent(b, *args, python=str(PY38))
        assert "Traceback" not in proc.stderr and "SyntaxError" not in proc.stderr, proc.stderr
        json.loads(proc.stdout)
    assert json.loads(run_agent(b, "status", "--root", str(root), python=str(PY38)).stdout)["current"] is None


def test_tampered_model_is_unusable(copy_of):
    b = copy_of()
    model = b / "model" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    proc, report = _selftest(b)
    assert proc.returncode == 2
    assert report["integrity"]["passed"] is False
    assert "model/model.onnx: sha256" in report["verdict"]["reasons"][0]
    assert report["latency"] is None  # nothing ran


def test_missing_file_and_newer_schema_and_bad_manifest(copy_of):
    b = copy_of()
    (b / "vectors.npz").unlink()
    proc, report = _selftest(b)
    assert proc.returncode == 2 and "vectors.npz: missing" in report["verdict"]["reasons"][0]

    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    proc, report = _selftest(b)
    assert proc.returncode == 2 and "schema 99 is newer" in report["verdict"]["reasons"][0]

    (b / "manifest.json").write_text("{not json")
    proc, report = _selftest(b)
    assert proc.returncode == 2 and "not valid JSON" in report["verdict"]["reasons"][0]


def test_device_side_parity_failure_names_the_output(copy_of):
    """A device whose runtime computes something else: simulated by shifting the stored truth."""
    b = copy_of()
    m = json.loads((b / "manifest.json").read_text())
    with np.load(b / "vectors.npz") as data:
        arrays = {k: data[k] for k in data.files}
    key = m["vectors"]["outputs"]["output"]
    arrays[key] = arrays[key] + 0.5
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (b / "vectors.npz").write_bytes(buf.getvalue())
    _rehash(b, "vectors.npz")
    proc, report = _selftest(b)
    assert proc.returncode == 1
    assert report["verdict"]["status"] == "fail"
    reason = report["verdict"]["reasons"][0]
    assert reason.startswith("parity: output 'output':") and "atol=0.0001" in reason
    out = report["parity"]["outputs"][0]
    assert out["passed"] is False and out["max_abs"] == pytest.approx(0.5, abs=1e-3)


def test_runtime_missing_is_unusable(copy_of):
    b = copy_of()
    m = json.loads((b / "manifest.json").read_text())
    m["runtime"] = "coreml"
    (b / "manifest.json").write_text(json.dumps(m))
    proc, report = _selftest(b)
    assert proc.returncode == 2 and "does not know runtime 'coreml'" in report["verdict"]["reasons"][0]


def test_report_file_and_text_output(copy_of, tmp_path):
    b = copy_of()
    rep = tmp_path / "r.json"
    proc = run_agent(b, "selftest", ".", "--runs", "3", "--seconds", "0", "--report", str(rep))
    assert proc.returncode == 0 and "verdict  PASS" in proc.stdout
    assert json.loads(rep.read_text())["verdict"]["passed"] is True


def test_probe_counts_and_time():
    from agent import probe

    calls = []
    res = probe.probe(lambda f: calls.append(1), {}, {"warmup_runs": 3, "warmup_seconds": 0, "runs": 7,
                                                    "seconds": 0, "max_seconds": 10})
    assert res["warmup_runs"] == 3 and res["runs"] == 7 and len(calls) == 1 + 3 + 7
    res = probe.probe(lambda f: None, {}, {"warmup_runs": 0, "warmup_seconds": 0, "runs": 1, "seconds": 0.05})
    assert res["measure_seconds"] >= 0.05 and res["runs"] > 1
    res = probe.probe(lambda f: None, {}, {"warmup_runs": 0, "warmup_seconds": 0, "runs": 1200, "seconds": 0})
    assert res["p99_ms"] is not None and res["min_ms"] <= res["p50_ms"] <= res["p90_ms"] <= res["p95_ms"] \
        <= res["p99_ms"] <= res["max_ms"]
    assert probe.percentile([1.0, 2.0, 3.0, 4.0], 50) == np.percentile([1, 2, 3, 4], 50)


def test_parity_core_catches_nan_shape_and_dtype():
    from agent import parity

    th = {"atol": 1e-3, "rtol": 0, "cosine_min": 0.99, "top1_min": 1.0}
    ref = {"y": [np.ones((1, 4), np.float32)]}
    assert parity.compare(ref, {"y": [np.ones((1, 4), np.float32)]}, th)["passed"]
    nan = np.ones((1, 4), np.float32)
    nan[0, 1] = np.nan
    r = parity.compare(ref, {"y": [nan]}, th)
    assert not r["passed"] and "1 NaN/Inf values" in r["outputs"][0]["failures"][0]
    r = parity.compare(ref, {"y": [np.ones((1, 5), np.float32)]}, th)
    assert "shape [1, 5], expected [1, 4]" in r["outputs"][0]["failures"][0]
    r = parity.compare(ref, {"y": [np.ones((1, 4), np.int64)]}, th)
    assert "dtype int64" in r["outputs"][0]["failures"][0]
    r = parity.compare(ref, {}, th)
    assert "missing" in r["outputs"][0]["failures"][0]
    # top-1 flips are caught for classifier-like outputs
    a = np.array([[0.0, 1.0, 0.9]], np.float32)
    b = np.array([[0.0, 0.9, 1.0]], np.float32)
    r = parity.compare({"y": [a]}, {"y": [b]}, {"top1_min": 1.0})
    assert r["outputs"][0]["top1_agreement"] == 0.0 and not r["passed"]


@pytest.mark.slow
def test_agent_in_a_venv_with_only_numpy_and_onnxruntime(bundles, tmp_path):
    """The device side needs nothing of edgepack installed: numpy + onnxruntime only."""
    b = bundles("tiny_cnn", "x86-cpu-int8")
    venv = tmp_path / "device-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "numpy==2.4.*", "onnxruntime==1.32.0"],
                         capture_output=True, text=True, timeout=900)
    if pip.returncode != 0:
        pytest.skip("cannot install numpy/onnxruntime into a fresh venv here: " + pip.stderr[-300:])
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True).stdout.lower()
    assert "torch" not in listed and "edgepack" not in listed and "onnx==" not in listed
    proc = run_agent(b, "selftest", "--json", ".", "--runs", "5", "--seconds", "0", python=str(venv / "bin" / "python"))
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["verdict"]
    assert report["device"]["python_executable"].startswith(str(venv))
