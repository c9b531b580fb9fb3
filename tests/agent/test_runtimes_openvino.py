"""The OpenVINO runtime (agent/runtimes/openvino_rt.py) on IR made here from a tiny ONNX model.

The packager's OpenVINO backend is another room's work: these tests convert with openvino itself
(convert_model + save_model, fp32 and fp16 weights) and lay the bundle out by hand.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agent_support import hand_bundle, selftest
from support import run_agent

ov = pytest.importorskip("openvino")
onnx = pytest.importorskip("onnx")

FP32 = {"atol": 1e-4, "rtol": 1e-3, "cosine_min": 0.99999, "top1_min": 1.0}   # x86-cpu's fp32 thresholds
FP16 = {"atol": 1e-2, "rtol": 1e-2, "cosine_min": 0.999, "top1_min": 0.99}


def _tiny_onnx(path):
    """image [N,3,8,8] and a scalar gain -> Conv, Relu, *gain, GlobalAveragePool -> features [N,4]
    -> Gemm -> logits [N,3]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv_b"),
             numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Mul", ["r", "gain"], ["g"]),
             helper.make_node("GlobalAveragePool", ["g"], ["p"]),
             helper.make_node("Flatten", ["p"], ["features"]),
             helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8]),
         helper.make_tensor_value_info("gain", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"onnx": model.onnx, "fp32": model.xml, "fp16": model.xml} (each .xml beside its .bin)."""
    root = tmp_path_factory.mktemp("openvino")
    _tiny_onnx(root / "model.onnx")
    converted = ov.convert_model(str(root / "model.onnx"))
    paths = {"onnx": root / "model.onnx"}
    for name, fp16 in (("fp32", False), ("fp16", True)):
        (root / name).mkdir()
        ov.save_model(converted, str(root / name / "model.xml"), compress_to_fp16=fp16)
        paths[name] = root / name / "model.xml"
    return paths


def _samples(n=4, seed=1):
    rng = np.random.default_rng(seed)
    return [{"image": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
             "gain": np.asarray(rng.uniform(0.5, 2.0), np.float32)} for _ in range(n)]


def _onnxruntime(path, samples):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(names, s))) for s in samples]


def _load(path, **settings):
    from agent import runtimes

    rt, seconds = runtimes.load_timed("openvino", str(path), settings)
    assert seconds > 0
    return rt


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-5), ("fp16", 5e-3)])
def test_ir_runs_by_name_and_matches_onnxruntime(models, precision, atol):
    samples = _samples()
    want = _onnxruntime(models["onnx"], samples)
    rt = _load(models[precision])
    for feeds, ref in zip(samples, want):
        got = rt.run(dict(reversed(list(feeds.items()))))  # matched by name, not by order
        assert sorted(got) == ["features", "logits"]
        for name in ref:
            assert got[name].dtype == np.float32 and got[name].shape == ref[name].shape
            np.testing.assert_allclose(got[name], ref[name], atol=atol, rtol=atol)
    info = rt.describe()
    assert info["name"] == "openvino" and info["version"] == ov.__version__.split("-")[0]
    assert info["providers_used"] == ["CPU"] and info["provider"] == "CPU"
    assert info["performance_hint"] == "LATENCY" and info["inference_precision"] == "f32"


def test_fp16_ir_holds_half_weights_and_float32_io(models):
    xml16, xml32 = models["fp16"].read_text(), models["fp32"].read_text()
    assert 'element_type="f16"' in xml16 and 'element_type="f16"' not in xml32
    assert models["fp16"].with_suffix(".bin").stat().st_size < 0.6 * models["fp32"].with_suffix(".bin").stat().st_size
    model = ov.Core().read_model(str(models["fp16"]))
    assert {str(p.get_element_type().get_type_name()) for p in list(model.inputs) + list(model.outputs)} == {"f32"}


def test_devices_are_tried_in_order_and_skips_are_reported(models):
    rt = _load(models["fp32"], devices=["NOSUCH", "HETERO:NOSUCH", "cpu"])
    info = rt.describe()
    assert info["providers_requested"] == ["NOSUCH", "HETERO:NOSUCH", "CPU"]
    assert "CPU" in info["providers_available"] and info["providers_used"] == ["CPU"]
    assert info["fallbacks"][0] == "NOSUCH not available on this device (has: %s)" % ", ".join(
        info["providers_available"])
    assert info["fallbacks"][1].startswith("HETERO:NOSUCH failed to start: ") and len(info["fallbacks"]) == 2
    # a GPU this machine lacks is skipped the same way (where it has one, it runs there)
    rt = _load(models["fp32"], devices=["GPU", "CPU"])
    if not any(d.startswith("GPU") for d in rt.providers_available):
        assert rt.providers_used == ["CPU"] and rt.fallbacks[0].startswith("GPU not available on this device")


def test_onnxruntime_providers_are_read_when_no_devices_are_given(models):
    rt = _load(models["fp32"], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert rt.providers_requested == ["CPU"] and rt.providers_used == ["CPU"]
    assert rt.fallbacks == ["CUDAExecutionProvider is an onnxruntime provider, not an OpenVINO device: skipped"]
    rt = _load(models["fp32"], providers=["CUDAExecutionProvider"], devices=["CPU"])
    assert rt.fallbacks == [] and rt.providers_requested == ["CPU"]


def test_threads_hint_and_precision_settings(models):
    rt = _load(models["fp32"], threads=1, performance_hint="throughput", inference_precision="bf16")
    assert rt.threads == 1 and rt.describe()["performance_hint"] == "THROUGHPUT" and rt.fallbacks == []
    assert rt._compiled.get_property("INFERENCE_NUM_THREADS") == 1
    rt = _load(models["fp32"])
    assert isinstance(rt.threads, int) and rt.threads > 0  # OpenVINO's own default, as it reports it
    rt = _load(models["fp32"], performance_hint="fastest", inference_precision="fp64")
    assert rt.describe()["performance_hint"] == "LATENCY" and rt.describe()["inference_precision"] == "f32"
    assert rt.fallbacks == ["unknown performance_hint 'FASTEST': LATENCY used (knows LATENCY, THROUGHPUT, "
                            "CUMULATIVE_THROUGHPUT)", "unknown inference_precision 'fp64': f32 used"]


def test_load_and_feed_errors_are_clear(models, tmp_path):
    from agent import runtimes

    with pytest.raises(runtimes.RuntimeLoadError, match="openvino could not read .*missing.xml"):
        _load(tmp_path / "missing.xml")
    rt = _load(models["fp32"])
    with pytest.raises(runtimes.RuntimeLoadError, match=r"the model has no input 'x' \(it has gain, image\)"):
        rt.run({"x": np.zeros((1, 3, 8, 8), np.float32)})
    out = rt.run({"image": np.zeros((2, 3, 8, 8), np.float64), "gain": 1.0})  # cast to the IR's types; any batch
    assert out["logits"].shape == (2, 3) and out["logits"].dtype == np.float32


def test_an_unnamed_output_is_called_output_as_the_torch_runtime_calls_it(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    converted = ov.convert_model(module, example_input=torch.zeros(1, 4))
    assert [o.get_names() for o in converted.outputs] == [set()]
    ov.save_model(converted, str(tmp_path / "model.xml"), compress_to_fp16=False)  # its default is True
    x = np.ones((1, 4), np.float32)
    out = _load(tmp_path / "model.xml").run({"input": x})
    with torch.no_grad():
        np.testing.assert_allclose(out["output"], module(torch.from_numpy(x)).numpy(), atol=1e-5)


def _ir_bundle(models, dest, precision, settings):
    samples = _samples(6, seed=2)
    xml = models[precision]
    return hand_bundle(dest, fmt="openvino", runtime="openvino", precision=precision, profile="intel-cpu",
                       model_files={"model.xml": xml, "model.bin": xml.with_suffix(".bin")},
                       samples=samples, reference=_onnxruntime(models["onnx"], samples),
                       runtime_settings=settings, thresholds=FP32 if precision == "fp32" else FP16)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_selftest_of_an_openvino_bundle(models, tmp_path, precision):
    b = _ir_bundle(models, tmp_path / "b", precision, {"devices": ["GPU", "CPU"], "threads": 1})
    proc, report = selftest(b)
    assert proc.returncode == 0, report["verdict"]
    assert report["integrity"]["passed"] and report["bundle"]["format"] == "openvino"
    rt = report["runtime"]
    assert rt["name"] == "openvino" and rt["threads"] == 1 and rt["inference_precision"] == "f32"
    if "GPU" not in rt["providers_used"]:
        assert rt["provider"] == "CPU" and any(f.startswith("GPU ") for f in rt["fallbacks"])
    assert report["latency"]["provider"] == rt["provider"] and report["latency"]["threads"] == 1
    assert sorted(o["name"] for o in report["parity"]["outputs"]) == ["features", "logits"]
    assert report["device"]["runtimes"]["openvino"]["providers"] == rt["providers_available"]
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_agent_in_a_venv_with_only_numpy_and_openvino(models, tmp_path):
    """The device side of an OpenVINO bundle needs numpy + openvino, nothing else."""
    b = _ir_bundle(models, tmp_path / "b", "fp16", {"devices": ["GPU", "CPU"]})
    venv = tmp_path / "device-venv"
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)

    def pip(*packages):
        proc = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.skip("cannot install %s into a fresh venv here: %s" % (" ".join(packages), proc.stderr[-300:]))

    pip("numpy==2.4.*")
    proc, report = selftest(b, python=python)
    assert proc.returncode == 2 and report["verdict"]["status"] == "unusable"
    assert "openvino is not installed" in report["verdict"]["reasons"][0]
    assert "pip install openvino" in report["verdict"]["reasons"][0]

    pip("openvino==2026.4.1")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True).stdout.lower()
    installed = {line.split("==")[0] for line in listed.split()}
    assert {"numpy", "openvino"} <= installed
    assert not installed & {"onnx", "onnxruntime", "torch", "tensorflow", "ai-edge-litert", "edgepack"}
    proc, report = selftest(b, python=python)
    assert proc.returncode == 0, report["verdict"]
    assert report["runtime"]["name"] == "openvino" and report["device"]["python_executable"].startswith(str(venv))
    assert "Traceback" not in proc.stderr, proc.stderr
    facts = json.loads(run_agent(b, "facts", "--json", python=python).stdout)
    assert set(facts["runtimes"]) == {"openvino"} and "CPU" in facts["runtimes"]["openvino"]["devices"]
