"""Real-model data conventions, on tiny models built here (issue 10, item 6): a scalar input and a
state with its batch on axis 1 (like Silero VAD), int64 token ids with only --inputs, TorchScript
found by content under any suffix, Python-number arguments, and traces of transformer-like models
that warn but agree on perturbed inputs."""
from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import torch

from formats_helpers import REPO, build, selftest

from packager.errors import ConversionError, DataError, SourceError

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "sources"))


# ------------------------------------------------------------------ scalar + state on axis 1 (ONNX)

def _vad_like_onnx(path):
    """out = tanh(x @ W * (sr / 16000)) summed with the state; stateN = state * 0.5 + mean(out).
    Inputs: x [batch, 16], state [2, batch, 8] (batch on axis 1), sr int64 scalar []."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32) * 0.3, "W")
    k = numpy_helper.from_array(np.array(16000.0, np.float32), "K")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    nodes = [
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["srf", "K"], ["scale"]),
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Mul", ["h", "scale"], ["hs"]),
        helper.make_node("Tanh", ["hs"], ["t"]),
        helper.make_node("ReduceSum", ["state"], ["s0"], axes=[0], keepdims=0),   # [batch, 8]
        helper.make_node("Add", ["t", "s0"], ["output"]),
        helper.make_node("Mul", ["state", "half"], ["sh"]),
        helper.make_node("ReduceMean", ["output"], ["m"], axes=[1], keepdims=1),   # [batch, 1]
        helper.make_node("Add", ["sh", "m"], ["stateN"]),
    ]
    g = helper.make_graph(nodes, "vadlike", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]),
        helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 8]),
        helper.make_tensor_value_info("sr", TensorProto.INT64, []),
    ], [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 8]),
        helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 8])], [w, k, half])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def vad_like(tmp_path_factory):
    d = tmp_path_factory.mktemp("vad")
    rng = np.random.default_rng(1)
    np.savez(d / "whole.npz", x=rng.standard_normal((6, 1, 16)).astype(np.float32),
             state=rng.standard_normal((6, 2, 1, 8)).astype(np.float32), sr=np.array([16000, 8000] * 3))
    np.savez(d / "rows.npz", x=rng.standard_normal((6, 16)).astype(np.float32),       # batch-first rows
             state=rng.standard_normal((6, 2, 8)).astype(np.float32),                 # batch axis left out
             sr=np.array([16000] * 6))
    np.savez(d / "wrong.npz", x=rng.standard_normal((2, 16)).astype(np.float32),
             state=rng.standard_normal((2, 6, 8)).astype(np.float32), sr=np.array([16000] * 2))
    return _vad_like_onnx(d / "vadlike.onnx"), d


@pytest.mark.parametrize("data_file", ["whole.npz", "rows.npz"])
def test_scalar_and_state_on_axis_1_build_and_selftest(tmp_path, vad_like, data_file):
    model, d = vad_like
    res = build(model, "x86-cpu", tmp_path, inputs=d / data_file)
    with np.load(res.bundle / "vectors.npz") as v:
        arrays = {k: v[k] for k in v.files}
    shapes = sorted(a.shape for a in arrays.values())
    assert (6,) in shapes and (6, 2, 1, 8) in shapes      # sr stored as (N,), the state whole
    report, code = selftest(res.bundle)                    # the agent feeds sr as a 0-d array
    assert code == 0, report["verdict"]


def test_state_in_the_wrong_layout_says_which_reading_failed(tmp_path, vad_like):
    model, d = vad_like
    with pytest.raises(DataError) as e:
        build(model, "x86-cpu", tmp_path, inputs=d / "wrong.npz")
    assert "'state'" in e.value.message and "one batch element each" in e.value.message
    assert "axis 0 must be 2" in e.value.message


def test_generated_scalar_float_input(tmp_path):
    """A float 0-d input without --inputs: generated as a 0-d array, stored and fed as one."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Mul", ["x", "gain"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                           helper.make_tensor_value_info("gain", TensorProto.FLOAT, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "gain.onnx"))
    res = build(tmp_path / "gain.onnx", "x86-cpu", tmp_path / "out")
    assert next(i for i in res.manifest["inputs"] if i["name"] == "gain")["shape"] == []
    assert selftest(res.bundle)[1] == 0


# ------------------------------------------------------------------ int64 token ids, only --inputs



TINY = REPO / "tests" / "sources" / "tiny_models.py"


@pytest.fixture(scope="module")
def factories(tmp_path_factory):
    d = tmp_path_factory.mktemp("factories")
    rng = np.random.default_rng(3)
    ids = rng.integers(1, 100, size=(6, 8)).astype(np.int64)
    mask = np.ones((6, 8), np.int64)
    mask[:, 6:] = 0
    np.savez(d / "tokens.npz", input_ids=ids, attention_mask=mask)
    return d


@pytest.mark.parametrize("profile, fmt", [("x86-cpu", None), ("x86-cpu", "torchscript")])
def test_factory_with_int64_ids_and_only_inputs(tmp_path, factories, profile, fmt):
    res = build(f"{TINY}:encoder", profile, tmp_path, format=fmt, inputs=factories / "tokens.npz")
    ins = {i["name"]: i for i in res.manifest["inputs"]}
    assert ins["input_ids"]["dtype"] == "int64" and ins["attention_mask"]["dtype"] == "int64"
    assert ins["input_ids"]["shape"][-1] == 8
    assert any("shapes from --inputs" in n for n in res.manifest["provenance"]["source"]["notes"])
    assert selftest(res.bundle)[1] == 0


def test_input_shape_must_agree_with_inputs(tmp_path, factories):
    build(f"{TINY}:encoder", "x86-cpu", tmp_path / "a", inputs=factories / "tokens.npz",
          input_shapes=["input_ids=1x8", "attention_mask=1x8"])
    with pytest.raises(DataError) as e:
        build(f"{TINY}:encoder", "x86-cpu", tmp_path / "b", inputs=factories / "tokens.npz",
              input_shapes=["input_ids=1x7", "attention_mask=1x7"])
    assert "axis 1 must be 7" in e.value.message


def test_factory_inputs_must_not_skip_a_parameter(tmp_path, factories):
    np.savez(tmp_path / "mask_only.npz", attention_mask=np.ones((2, 8), np.int64))
    with pytest.raises(SourceError) as e:
        build(f"{TINY}:encoder", "x86-cpu", tmp_path / "o", inputs=tmp_path / "mask_only.npz")
    assert "'input_ids'" in e.value.message and "by position" in e.value.message


# ------------------------------------------------------------------ non-tensor forward() arguments

def test_forward_with_an_int_parameter_is_refused_in_one_line(tmp_path, factories):
    with pytest.raises(SourceError) as e:
        build(f"{TINY}:scaled", "x86-cpu", tmp_path, input_shapes=["x=1x4"])
    assert "parameter 'n' is int, not a tensor" in e.value.message
    assert "wrapper_factory.py" in e.value.hint and "docs/DATA.md" in e.value.hint


def test_the_wrapper_factory_example_builds(tmp_path):
    res = build(f"{REPO}/examples/wrapper_factory.py:repeat_three", "x86-cpu", tmp_path)
    assert selftest(res.bundle)[1] == 0
    with pytest.raises(SourceError) as e:
        build(f"{REPO}/examples/wrapper_factory.py:repeat", "x86-cpu", tmp_path / "r", input_shapes=["x=1x8"])
    assert "'n' is int" in e.value.message


# ------------------------------------------------------------------ TorchScript by content

@pytest.fixture(scope="module")
def ts_archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("ts")
    from examples.models import MLP
    from tiny_models import WithRate
    torch.manual_seed(0)
    scripted = torch.jit.script(MLP().eval())
    for name in ("mlp.jit", "mlp.ts", "mlp.torchscript", "mlp.model"):
        torch.jit.save(scripted, str(d / name))
    torch.jit.save(torch.jit.script(WithRate().eval()), str(d / "rate.jit"))
    rng = np.random.default_rng(0)
    np.savez(d / "rate.npz", x=rng.standard_normal((4, 8)).astype(np.float32), sr=np.array([16000, 8000] * 2))
    np.savez(d / "mlp.npz", x=rng.standard_normal((4, 32)).astype(np.float32))
    torch.save(MLP().state_dict(), str(d / "weights.jit"))   # a pickle under a TorchScript suffix
    (d / "plain.jit").write_bytes(pickle.dumps({"not": "torchscript"}))
    return d


@pytest.mark.parametrize("name", ["mlp.jit", "mlp.ts", "mlp.torchscript", "mlp.model"])
def test_torchscript_found_by_content(tmp_path, ts_archives, name):
    res = build(ts_archives / name, "x86-cpu", tmp_path, format="torchscript", inputs=ts_archives / "mlp.npz")
    assert res.manifest["provenance"]["source"]["kind"] == "torchscript"
    assert res.manifest["inputs"][0]["shape"] == [1, 32]     # from --inputs, no --input-shape
    assert selftest(res.bundle)[1] == 0


@pytest.mark.parametrize("name, words", [("weights.jit", "torch.save pickle"), ("plain.jit", "not a zip file")])
def test_pickles_under_a_torchscript_suffix_are_refused(tmp_path, ts_archives, name, words):
    with pytest.raises(SourceError) as e:
        build(ts_archives / name, "x86-cpu", tmp_path, input_shapes=["x=1x32"])
    assert "not a TorchScript archive" in e.value.message and words in e.value.message


def test_torchscript_int_argument_runs_as_given(tmp_path, ts_archives):
    """forward(x, sr: int): sr comes from --inputs as (N,) and is fed as a 0-d array (a Python int
    on the host; TorchScript takes the agent's 0-d tensor for the int); the two values take the two
    branches, so a frozen sr would fail parity."""
    res = build(ts_archives / "rate.jit", "x86-cpu", tmp_path, format="torchscript", inputs=ts_archives / "rate.npz")
    sr = next(i for i in res.manifest["inputs"] if i["name"] == "sr")
    assert sr["shape"] == [] and sr["dtype"] == "int64"
    report, code = selftest(res.bundle)
    assert code == 0, report["verdict"]


def test_torchscript_int_argument_cannot_be_exported(tmp_path, ts_archives):
    with pytest.raises(SourceError) as e:
        build(ts_archives / "rate.jit", "x86-cpu", tmp_path, inputs=ts_archives / "rate.npz")
    assert "'sr' as a Python int" in e.value.message and "torchscript" in e.value.hint


# ------------------------------------------------------------------ traces that warn but hold

def test_tracer_warnings_alone_do_not_refuse_a_trace(tmp_path, factories):
    mask = np.ones((4, 8), np.int64)
    mask[:, 6:] = 0   # padding: the trace records the masked path, the perturbed masks check it
    np.savez(tmp_path / "t.npz", input_ids=np.random.default_rng(0).integers(1, 50, (4, 8)).astype(np.int64),
             attention_mask=mask)
    res = build(f"{TINY}:bert", "jetson-torchscript", tmp_path / "b", inputs=tmp_path / "t.npz")
    step = res.manifest["conversion"]["steps"][0]
    assert step["mode"] == "trace" and step["tracer_warnings"]
    assert step["traced_at"] == {"input_ids": [1, 8], "attention_mask": [1, 8]}
    assert {c["sizes"] for c in step["size_checks"]} == {"batch 2", "length 6 (not 8)"}
    assert "specialized_to" not in step
    assert selftest(res.bundle)[1] == 0


def test_a_trace_specialized_to_its_length_is_recorded(tmp_path, factories):
    np.savez(tmp_path / "t.npz", input_ids=np.random.default_rng(0).integers(1, 50, (4, 8)).astype(np.int64),
             attention_mask=np.ones((4, 8), np.int64))
    res = build(f"{TINY}:fixed_length", "x86-cpu", tmp_path / "f", format="torchscript",
                precision="fp32", inputs=tmp_path / "t.npz")
    step = res.manifest["conversion"]["steps"][0]
    assert step["mode"] == "trace"
    assert step["specialized_to"] == {"input_ids": [1, 8], "attention_mask": [1, 8]}
    assert any(not c["agrees"] for c in step["size_checks"] if c["sizes"].startswith("length"))
    assert any("holds only at the example's sizes" in w for w in res.manifest["warnings"])
    assert selftest(res.bundle)[1] == 0


def test_a_trace_that_bakes_a_branch_is_still_not_shipped(tmp_path):
    from formats_helpers import REPO as R
    with pytest.raises(ConversionError):
        build(f"{R}/tests/formats_helpers.py:branchy", "x86-cpu", tmp_path, format="torchscript",
              torchscript_mode="trace")
