"""The rewrites before onnx2tf for int8 TF-Lite (hard-sigmoid, conv-bias, depthwise-strides),
scalar-operands and simplify's Slice rule before onnx2tf, on small graphs made here: each runs only
where it is needed, changes what it says, and keeps onnxruntime's numbers."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from passes_support import artifact, context, ort_run

from packager import formats, passes
from packager.formats import Format
from packager.passes.graph import attr as graph_attr

RNG = np.random.default_rng(3)
X = {"x": RNG.normal(size=(1, 3, 8, 8)).astype(np.float32)}


def _save(path, nodes, inits, out_shape, opset=12):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _run(tmp_path, src, profile, example=X):
    ctx = context(tmp_path, profile, example, src)
    new, records = passes.apply(ctx, artifact(src, ctx), formats.get(Format.TFLITE))
    return new, {r["name"]: r for r in records}


def se_block(path):
    """x -> Conv(3->3) -> HardSigmoid(alpha 0.2, beta 0.5) -> Mul(x): PP-LCNet's squeeze-excite gate."""
    w = numpy_helper.from_array(RNG.normal(size=(3, 3, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("HardSigmoid", ["c"], ["g"], alpha=0.2, beta=0.5, name="gate"),
             helper.make_node("Mul", ["x", "g"], ["y"], name="excite")]
    return _save(path, nodes, [w], [1, 3, 8, 8])


def test_hard_sigmoid_becomes_relu6_arithmetic_for_int8_tflite_only(tmp_path):
    src = se_block(tmp_path / "se.onnx")
    new, by = _run(tmp_path / "coral", src, "coral")
    assert "hard-sigmoid" in by and by["hard-sigmoid"]["changed"]["rewritten"] == 1, by
    ops = _ops(new.path)
    assert "HardSigmoid" not in ops and "Clip" in ops, ops
    np.testing.assert_allclose(ort_run(new.path, X)[0], ort_run(src, X)[0], rtol=1e-5, atol=1e-6)
    _, fp32 = _run(tmp_path / "rpi", src, "raspberry-pi")        # fp32: RELU_0_TO_1 runs fine
    assert "hard-sigmoid" not in fp32


def upsample_head(path, channels=1):
    """x -> ConvTranspose(3->C, stride 2, no bias) -> Add(b [1, C, 1, 1]): paddle2onnx's bias."""
    w = numpy_helper.from_array(RNG.normal(size=(3, channels, 2, 2)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.normal(size=(1, channels, 1, 1)).astype(np.float32), "b")
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["t"], strides=[2, 2], name="up"),
             helper.make_node("Add", ["t", "b"], ["y"], name="bias")]
    return _save(path, nodes, [w, b], [1, channels, 16, 16])


def test_a_one_channel_bias_add_is_folded_for_int8_tflite(tmp_path):
    src = upsample_head(tmp_path / "up.onnx")
    new, by = _run(tmp_path / "coral", src, "coral")
    assert by["conv-bias"]["changed"]["folded"] == ["up"], by
    model = onnx.load(str(new.path))
    assert [n.op_type for n in model.graph.node] == ["ConvTranspose"]
    bias = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}[model.graph.node[0].input[2]]
    assert bias.shape == (1,)                                   # 1-D, what ai-edge-quantizer needs
    np.testing.assert_allclose(ort_run(new.path, X)[0], ort_run(src, X)[0], rtol=1e-5, atol=1e-5)


def test_onnxslim_leaves_the_one_channel_bias_add_that_conv_bias_folds(tmp_path):
    """The reason the pass exists: onnxslim folds a C-channel bias Add, not a one-channel one. When
    onnxslim learns it, this fails and conv-bias can go."""
    one, _ = _run(tmp_path / "one", upsample_head(tmp_path / "one.onnx"), "raspberry-pi")
    four, by = _run(tmp_path / "four", upsample_head(tmp_path / "four.onnx", channels=4), "raspberry-pi")
    assert "Add" in _ops(one.path) and "Add" not in _ops(four.path)
    assert "conv-bias" not in by


def sliced(path):
    """x[:, :2, :] as the torch exporter writes it: three chained one-axis Slices."""
    big = np.iinfo(np.int64).max
    consts, nodes, prev = [], [], "x"
    for i, (start, end, axis) in enumerate([(0, big, 0), (0, 2, 1), (0, big, 2)]):
        for key, v in (("s", start), ("e", end), ("a", axis)):
            consts.append(numpy_helper.from_array(np.array([v], np.int64), f"{key}{i}"))
        out = "y" if i == 2 else f"t{i}"
        nodes.append(helper.make_node("Slice", [prev, f"s{i}", f"e{i}", f"a{i}"], [out], name=f"slice{i}"))
        prev = out
    nodes.insert(0, helper.make_node("Relu", ["x"], ["r"], name="relu"))
    nodes[1].input[0] = "r"
    return _save(path, nodes, consts, [1, 2, 8, 8], opset=13)


def test_before_onnx2tf_chained_slices_stay_one_axis_each(tmp_path):
    src = sliced(tmp_path / "s.onnx")
    new, by = _run(tmp_path / "rpi", src, "raspberry-pi")
    assert by["simplify"]["changed"]["skipped_patterns"] == ["EliminationSlice"]
    model = onnx.load(str(new.path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    slices = [n for n in model.graph.node if n.op_type == "Slice"]
    assert len(slices) == 1 and inits[slices[0].input[3]].tolist() == [1]   # the no-op slices are gone
    np.testing.assert_allclose(ort_run(new.path, X)[0], ort_run(src, X)[0])


def affine_block(path):
    """Conv -> Mul(w) -> Add(b) -> HardSwish -> depthwise Conv: PP-LCNet's learnable affine block
    around its activation, with w and b as paddle2onnx writes scalar parameters (shape [1])."""
    w = numpy_helper.from_array(RNG.normal(size=(3, 3, 1, 1)).astype(np.float32), "w")
    dw = numpy_helper.from_array(RNG.normal(size=(3, 1, 3, 3)).astype(np.float32), "dw")
    s = numpy_helper.from_array(np.array([1.5], np.float32), "s")
    b = numpy_helper.from_array(np.array([0.25], np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="pw"),
             helper.make_node("Mul", ["s", "c"], ["m"], name="lab_mul"),
             helper.make_node("Add", ["m", "b"], ["a"], name="lab_add"),
             helper.make_node("HardSwish", ["a"], ["h"], name="hs"),
             helper.make_node("Conv", ["h", "dw"], ["y"], group=3, pads=[1, 1, 1, 1], name="dwconv")]
    return _save(path, nodes, [w, dw, s, b], [1, 3, 8, 8], opset=14)


def test_one_element_operands_become_scalars_before_onnx2tf_to_float_tflite(tmp_path):
    src = affine_block(tmp_path / "lab.onnx")
    new, by = _run(tmp_path / "rpi", src, "raspberry-pi")                 # fp32 TF-Lite
    assert by["scalar-operands"]["changed"]["rewritten"] == 2, by
    model = onnx.load(str(new.path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    mul = next(n for n in model.graph.node if n.op_type == "Mul")
    assert inits[mul.input[0]].shape == () and "s" not in inits        # the [1] original is gone
    np.testing.assert_allclose(ort_run(new.path, X)[0], ort_run(src, X)[0], rtol=1e-6, atol=1e-6)
    _, fp16 = _run(tmp_path / "android", src, "android")
    assert fp16["scalar-operands"]["changed"]["rewritten"] == 2
    _, int8 = _run(tmp_path / "coral", src, "coral")      # int8: TF-Lite's fused HARD_SWISH loses more
    assert "scalar-operands" not in int8
    ctx = context(tmp_path / "x86", "x86-cpu", X, src)                    # no onnx2tf next: not run
    _, records = passes.apply(ctx, artifact(src, ctx), None)
    assert "scalar-operands" not in {r["name"] for r in records}


def test_a_one_element_operand_against_a_scalar_tensor_keeps_its_shape(tmp_path):
    """[1] * 0-d is [1]; [1] made 0-d would give 0-d: that use is left alone."""
    from packager.passes import scalar_operands

    s = numpy_helper.from_array(np.array([2.0], np.float32), "s")
    nodes = [helper.make_node("ReduceSum", ["x"], ["t"], keepdims=0, name="sum"),
             helper.make_node("Mul", ["t", "s"], ["y"], name="scale")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [s])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)])
    assert scalar_operands.candidates(model) == []


def test_a_one_element_constant_an_if_body_also_reads_stays_for_it(tmp_path):
    """The top-level Mul's [1] operand becomes 0-d; the If body reads the original by name, so it stays."""
    s = numpy_helper.from_array(np.array([2.0], np.float32), "s")
    then_g = helper.make_graph([helper.make_node("Mul", ["m", "s"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 3, 8, 8])])
    else_g = helper.make_graph([helper.make_node("Identity", ["m"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 3, 8, 8])])
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"], name="scale"),
             helper.make_node("ReduceSum", ["x"], ["r"], keepdims=0, name="sum"),
             helper.make_node("Greater", ["r", "zero"], ["c"], name="positive"),
             helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="branch")]
    src = _save(tmp_path / "if.onnx", nodes, [s, numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
                [1, 3, 8, 8], opset=13)
    new, by = _run(tmp_path / "rpi", src, "raspberry-pi")
    assert by["scalar-operands"]["changed"]["rewritten"] == 1, by          # not refused by its check
    assert "s" in {i.name for i in onnx.load(str(new.path)).graph.initializer}
    np.testing.assert_allclose(ort_run(new.path, X)[0], ort_run(src, X)[0], rtol=1e-6, atol=1e-6)


def strided_depthwise(path, strides=(2, 1), auto_pad=None, per_group=1):
    """x[1, 3, 8, 8] -> Conv(3x3, the given strides): depthwise (group 3) as PP-OCR downsamples height
    only, or with per_group=3 a dense conv (group 1)."""
    w = numpy_helper.from_array(RNG.normal(size=(3, per_group, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.normal(size=(3,)).astype(np.float32), "b")
    pads = {"auto_pad": auto_pad} if auto_pad else {"pads": [1, 1, 1, 1]}
    out = [1, 3, -(-8 // strides[0]), -(-8 // strides[1])]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], group=3 // per_group, strides=list(strides),
                              dilations=[1, 1], name="dw", **pads)]
    return _save(path, nodes, [w, b], out, opset=13)


@pytest.mark.parametrize("strides", [(2, 1), (1, 2), (3, 1)])
def test_a_depthwise_conv_with_unequal_strides_becomes_stride_1_and_a_slice_for_int8_tflite(tmp_path, strides):
    src = strided_depthwise(tmp_path / "dw.onnx", strides)
    new, by = _run(tmp_path / "coral", src, "coral")
    assert by["depthwise-strides"]["changed"]["rewritten"] == 1, by
    model = onnx.load(str(new.path))
    assert [n.op_type for n in model.graph.node] == ["Conv", "Slice"]
    assert graph_attr(model.graph.node[0], "strides") == [1, 1]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    steps = inits[model.graph.node[1].input[4]].tolist()
    assert steps == [s for s in strides if s > 1]
    ref, got = ort_run(src, X)[0], ort_run(new.path, X)[0]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_depthwise_strides_runs_for_a_float_tflite_only_when_enabled(tmp_path):
    """auto: int8 TF-Lite only (XNNPACK runs a float grouped conv itself; bench/tflite_passes.py)."""
    src = strided_depthwise(tmp_path / "dw.onnx")
    _, fp32 = _run(tmp_path / "rpi", src, "raspberry-pi")
    assert "depthwise-strides" not in fp32
    on = tmp_path / "rpi-dw.yaml"
    on.write_text("name: rpi-dw\nextends: raspberry-pi\npasses: {depthwise-strides: {enabled: true}}\n")
    new, by = _run(tmp_path / "rpi-on", src, str(on))
    assert by["depthwise-strides"]["changed"]["rewritten"] == 1
    np.testing.assert_allclose(ort_run(new.path, X)[0], ort_run(src, X)[0], rtol=1e-6, atol=1e-6)
    ctx = context(tmp_path / "x86", "x86-cpu-int8", X, src)              # an ONNX bundle: ORT runs it as is
    _, records = passes.apply(ctx, artifact(src, ctx), None)
    assert "depthwise-strides" not in {r["name"] for r in records}


@pytest.mark.parametrize("kind", ["equal strides", "SAME pads", "dense"])
def test_depthwise_strides_leaves_other_convs_alone(tmp_path, kind):
    from packager.passes import depthwise_strides

    src = strided_depthwise(tmp_path / "c.onnx", **{"equal strides": {"strides": (2, 2)},
                                                     "SAME pads": {"auto_pad": "SAME_UPPER"},
                                                     "dense": {"per_group": 3}}[kind])
    assert depthwise_strides.candidates(onnx.load(str(src))) == []
    _, by = _run(tmp_path / "coral", src, "coral")
    assert "depthwise-strides" not in by
