"""Format x precision matrix: tiny models through every supported cell, each bundle self-tested
by its own agent in a subprocess; unsupported cells give a clear ConversionError."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from formats_helpers import EXAMPLES, REPO, build, selftest  # noqa: E402

from packager.errors import ConversionError  # noqa: E402

HELPERS = REPO / "tests" / "formats_helpers.py"

FAST = [
    ("tiny_cnn", "tflite", "fp32"), ("tiny_cnn", "tflite", "fp16"), ("tiny_cnn", "tflite", "int8-dynamic"),
    ("tiny_cnn", "tflite", "int8-static"),
    ("tiny_cnn", "torchscript", "fp32"), ("tiny_cnn", "torchscript", "fp16"),
    ("mlp", "tflite", "fp32"), ("mlp", "tflite", "int8-dynamic"),
    ("mlp", "torchscript", "fp32"), ("mlp", "torchscript", "int8-dynamic"),
]
SLOW = [
    ("tiny_cnn", "torchscript", "int8-dynamic"),
    ("mlp", "tflite", "fp16"), ("mlp", "torchscript", "fp16"),
    ("tiny_transformer", "tflite", "fp32"), ("tiny_transformer", "tflite", "fp16"),
    ("tiny_transformer", "tflite", "int8-dynamic"),
    ("tiny_transformer", "torchscript", "fp32"), ("tiny_transformer", "torchscript", "fp16"),
]


def _cell(tmp_path, model, fmt, precision):
    res = build(f"{EXAMPLES}:{model}", "x86-cpu", tmp_path, format=fmt, precision=precision)
    m = res.manifest
    assert m["format"] == fmt and m["precision"] == precision.split("-")[0]
    assert m["host_parity"]["passed"]
    report, code = selftest(res.bundle)
    assert code == 0, report["verdict"]
    assert report["parity"]["passed"]
    assert report["runtime"]["name"] == {"tflite": "litert", "torchscript": "torch"}[fmt]
    assert report["runtime"]["version"]
    return res, report


@pytest.mark.parametrize("model,fmt,precision", FAST, ids=["-".join(c) for c in FAST])
def test_cell(tmp_path, model, fmt, precision):
    res, _ = _cell(tmp_path, model, fmt, precision)
    if fmt == "tflite" and model == "tiny_cnn":
        m = res.manifest
        assert m["inputs"][0]["layout"] == "NCHW"  # x86-cpu keeps the source layout
        assert m["model"]["path"] == "model/model.tflite"


@pytest.mark.slow
@pytest.mark.parametrize("model,fmt,precision", SLOW, ids=["-".join(c) for c in SLOW])
def test_cell_slow(tmp_path, model, fmt, precision):
    _cell(tmp_path, model, fmt, precision)


@pytest.mark.slow
def test_transformer_full_int8_tflite_is_gated_by_the_profile(tmp_path):
    """Full int8 (int8 I/O, every op) costs a transformer more accuracy than the default gate
    allows on some weights (cosine 0.975 vs 0.98 measured on the seeded example; 0.987 on other
    weights): the default profile must refuse exactly when the cosine is below its threshold, and a
    profile that accepts it must produce a bundle the agent passes."""
    from packager.errors import CheckFailed

    try:
        res = build(f"{EXAMPLES}:tiny_transformer", "x86-cpu", tmp_path / "a", format="tflite",
                    precision="int8-static")
        cosine = res.manifest["host_parity"]["outputs"][0]["cosine"]
        assert cosine >= 0.98
    except CheckFailed as exc:
        assert "cosine" in str(exc) and "< 0.98" in str(exc)
    loose = tmp_path / "loose.yaml"
    loose.write_text("extends: x86-cpu\nname: loose-int8\nparity:\n  int8: {cosine_min: 0.95}\n")
    res = build(f"{EXAMPLES}:tiny_transformer", str(loose), tmp_path / "b", format="tflite",
                precision="int8-static")
    assert res.manifest["host_parity"]["outputs"][0]["cosine"] >= 0.95
    report, code = selftest(res.bundle)
    assert code == 0, report["verdict"]


def test_raspberry_pi_takes_nhwc_and_vectors_agree(tmp_path):
    import numpy as np

    res = build(f"{EXAMPLES}:tiny_cnn", "raspberry-pi", tmp_path)
    m = res.manifest
    assert m["inputs"][0]["layout"] == "NHWC" and m["inputs"][0]["shape"] == [1, 32, 32, 3]
    assert m["conversion"]["layout_changes"]["x"]["perm"] == [0, 2, 3, 1]
    with np.load(res.bundle / "vectors.npz") as v:
        assert v["i0"].shape[1:] == (1, 32, 32, 3)  # inputs in the model's layout
    report, code = selftest(res.bundle)
    assert code == 0 and report["runtime"]["threads"] == 4


def test_coral_full_int8_records_compiler_not_run(tmp_path):
    res = build(f"{EXAMPLES}:tiny_cnn", "coral", tmp_path)
    m = res.manifest
    assert m["inputs"][0]["dtype"] == "int8" and m["outputs"][0]["dtype"] == "int8"
    assert all(isinstance(d, int) for d in m["inputs"][0]["shape"])
    q = m["quantization"]
    assert q["calibration"] == "synthetic" and q["float_ops"] == []
    assert q["edgetpu_compiler"]["ran"] is False
    assert any("edgetpu_compiler did NOT run" in w for w in m["warnings"])
    report, code = selftest(res.bundle)
    assert code == 0, report["verdict"]
    assert any("edgetpu" in f for f in report["runtime"]["fallbacks"])  # no Edge TPU here: said so


def test_android_fp16(tmp_path):
    res = build(f"{EXAMPLES}:tiny_cnn", "android", tmp_path)
    assert res.manifest["precision"] == "fp16" and res.manifest["inputs"][0]["dtype"] == "float32"
    assert selftest(res.bundle)[1] == 0


def test_jetson_torchscript_fp16_falls_back_to_fp32_on_cpu(tmp_path):
    res = build(f"{EXAMPLES}:tiny_cnn", "jetson-torchscript", tmp_path)
    q = res.manifest["quantization"]
    chk = q["cpu_half_check"]  # a dict with the cosine, or why the host CPU could not run half
    assert isinstance(chk, str) or chk["cosine_vs_fp32"] > 0.999
    report, code = selftest(res.bundle)
    assert code == 0
    assert any("float32 on the CPU" in f for f in report["runtime"]["fallbacks"]) or \
        report["runtime"]["provider"].startswith("cuda")


# ---------------------------------------------------------------- control flow

def test_control_flow_auto_scripts_instead_of_shipping_a_bad_trace(tmp_path):
    res = build(f"{HELPERS}:branchy", "x86-cpu", tmp_path, format="torchscript", precision="fp32")
    conv = res.manifest["conversion"]
    assert conv["mode"] == "script"
    assert any("baked in one path" in r or "tracer warnings" in r for r in conv["why_script"])
    assert selftest(res.bundle)[1] == 0


def test_control_flow_forced_trace_is_refused(tmp_path):
    with pytest.raises(ConversionError) as e:
        build(f"{HELPERS}:branchy", "x86-cpu", tmp_path, format="torchscript", torchscript_mode="trace")
    assert "control flow" in e.value.message and e.value.hint


def test_control_flow_unscriptable_names_the_construct(tmp_path):
    with pytest.raises(ConversionError) as e:
        build(f"{HELPERS}:unscriptable", "x86-cpu", tmp_path, format="torchscript")
    assert "scripting fails" in e.value.message and "SetComp" in e.value.message
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_control_flow_to_tflite_is_a_clear_error(tmp_path):
    with pytest.raises(ConversionError) as e:
        build(f"{HELPERS}:branchy", "x86-cpu", tmp_path, format="tflite")
    assert "control flow" in e.value.message and "torchscript" in e.value.hint


def test_torchscript_static_int8_is_unsupported(tmp_path):
    with pytest.raises(ConversionError) as e:
        build(f"{EXAMPLES}:mlp", "x86-cpu", tmp_path, format="torchscript", precision="int8-static")
    assert "dynamic only" in e.value.message and "onnx" in e.value.hint


def test_bundle_manifest_is_json_and_model_named_by_format(tmp_path):
    res = build(f"{EXAMPLES}:mlp", "x86-cpu", tmp_path, format="torchscript")
    m = json.loads((res.bundle / "manifest.json").read_text())
    assert m["model"]["path"] == "model/model.pt" and m["runtime"] == "torch"
