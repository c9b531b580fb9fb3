"""OpenVINO IR backend: built from PyTorch factories (through their ONNX export), ONNX files and
TorchScript archives, fp32 and fp16 weights, checked on the host and self-tested by the bundled agent
— in a fresh venv that holds only numpy + openvino (slow)."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("openvino")

from formats_helpers import EXAMPLES, build, selftest  # noqa: E402

from packager.errors import ConversionError  # noqa: E402


@pytest.mark.parametrize("model,precision", [("tiny_cnn", "fp32"), ("tiny_transformer", "fp16")])
def test_intel_cpu_profile_builds_and_self_tests(tmp_path, model, precision):
    res = build(f"{EXAMPLES}:{model}", "intel-cpu", tmp_path, precision=precision)
    m = res.manifest
    assert m["format"] == "openvino" and m["runtime"] == "openvino" and m["precision"] == precision
    assert m["model"]["path"] == "model/model.xml" and "model/model.bin" in m["files"]
    assert [s["to"] for s in m["conversion"]["steps"]] == ["onnx", "openvino"]
    assert m["runtime_settings"]["devices"] == ["CPU"]
    assert m["runtime_settings"]["inference_precision"] == "f32"
    assert m["host_parity"]["passed"]
    report, code = selftest(res.bundle)
    assert code == 0, report["verdict"]
    assert report["runtime"]["name"] == "openvino" and report["runtime"]["provider"] == "CPU"


def test_format_openvino_with_another_profiles_settings(tmp_path):
    """--format openvino on jetson: jetson's fp16 precision and thresholds, OpenVINO's defaults."""
    res = build(f"{EXAMPLES}:mlp", "jetson", tmp_path, format="openvino")
    m = res.manifest
    assert m["format"] == "openvino" and m["precision"] == "fp16" and m["profile"]["name"] == "jetson"
    fp16 = m["profile"]["parity"]["fp16"]   # the bundle's thresholds add what the build decided (classifier outputs)
    assert {k: v for k, v in m["parity"]["thresholds"].items() if k in fp16} == fp16
    assert selftest(res.bundle)[1] == 0


def test_onnx_and_torchscript_sources(tmp_path):
    import torch

    onnx_res = build(f"{EXAMPLES}:tiny_cnn", "x86-cpu", tmp_path / "a")
    res = build(onnx_res.bundle / "model" / "model.onnx", "intel-cpu", tmp_path / "b")
    assert [s["to"] for s in res.manifest["conversion"]["steps"]] == ["onnx", "openvino"]
    assert selftest(res.bundle)[1] == 0
    from examples_loader import load_factory

    mlp, example = load_factory("mlp")()
    ts = tmp_path / "mlp.jit"
    torch.jit.save(torch.jit.trace(mlp, example), str(ts))
    shape = "x".join(str(d) for d in example.shape)
    res = build(ts, "intel-cpu", tmp_path / "c", input_shapes=[f"x={shape}"])
    assert [s["to"] for s in res.manifest["conversion"]["steps"]] == ["onnx", "openvino"]
    assert selftest(res.bundle)[1] == 0


def test_int8_is_refused_with_the_way_out(tmp_path):
    with pytest.raises(ConversionError) as e:
        build(f"{EXAMPLES}:mlp", "x86-cpu-int8", tmp_path, format="openvino")
    assert "OpenVINO IR cannot take precision 'int8'" in e.value.message and "fp32, fp16" in e.value.hint


@pytest.mark.slow
def test_bundle_self_tests_in_a_venv_with_only_numpy_and_openvino(tmp_path):
    res = build(f"{EXAMPLES}:tiny_cnn", "intel-cpu", tmp_path / "dist", precision="fp16")
    venv = tmp_path / "device-venv"
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "numpy==2.4.*", "openvino==2026.4.1"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"cannot install numpy + openvino into a fresh venv here: {proc.stderr[-300:]}")
    from packager.selftest import run_local

    report, code = run_local(res.bundle, python=str(python), runs=20, seconds=0.05)
    assert code == 0, report["verdict"]
    assert report["device"]["python_executable"].startswith(str(venv))
    assert set(report["device"]["runtimes"]) == {"openvino"}
