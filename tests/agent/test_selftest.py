"""The self-test (agent/selftest.py), run as a device runs it: `cd BUNDLE && python -m agent ...`."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from agent_support import PY38, rehash, selftest
from support import run_agent


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


def test_tampered_model_is_unusable(copy_of):
    b = copy_of()
    model = b / "model" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    proc, report = selftest(b)
    assert proc.returncode == 2
    assert report["integrity"]["passed"] is False
    assert "model/model.onnx: sha256" in report["verdict"]["reasons"][0]
    assert report["latency"] is None  # nothing ran


def test_missing_file_and_newer_schema_and_bad_manifest(copy_of):
    b = copy_of()
    (b / "vectors.npz").unlink()
    proc, report = selftest(b)
    assert proc.returncode == 2 and "vectors.npz: missing" in report["verdict"]["reasons"][0]

    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    proc, report = selftest(b)
    assert proc.returncode == 2 and "schema 99 is newer" in report["verdict"]["reasons"][0]

    (b / "manifest.json").write_text("{not json")
    proc, report = selftest(b)
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
    rehash(b, "vectors.npz")
    proc, report = selftest(b)
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
    proc, report = selftest(b)
    assert proc.returncode == 2 and "does not know runtime 'coreml'" in report["verdict"]["reasons"][0]


def test_report_file_and_text_output(copy_of, tmp_path):
    b = copy_of()
    rep = tmp_path / "r.json"
    proc = run_agent(b, "selftest", ".", "--runs", "3", "--seconds", "0", "--report", str(rep))
    assert proc.returncode == 0 and "verdict  PASS" in proc.stdout
    assert json.loads(rep.read_text())["verdict"]["passed"] is True


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
