"""bind-inputs: a scalar that steers an If is bound to its reference value before onnx2tf, the If
folds (onnxslim), the numbers stay, and samples that disagree with the bound value are refused."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from passes_support import artifact, context, ort_run, steered_graph

from packager import formats, passes
from packager.errors import DataError
from packager.formats import Format
from packager.passes.bind_inputs import drop_bound, steering_scalars

X = np.arange(8, dtype=np.float32).reshape(1, 8)


def test_the_steering_scalar_is_found(tmp_path):
    assert steering_scalars(onnx.load(str(steered_graph(tmp_path / "g.onnx")))) == ["sr"]


def test_bound_before_tflite_and_the_if_folds(tmp_path):
    src = steered_graph(tmp_path / "g.onnx")
    example = {"x": X, "sr": np.array(16000, np.int64)}
    ctx = context(tmp_path, "raspberry-pi", example, src)
    new, records = passes.apply(ctx, artifact(src, ctx), formats.get(Format.TFLITE))
    bind = records[0]
    assert bind["name"] == "bind-inputs" and bind["changed"]["bound"] == {"sr": 16000}
    assert bind["changed"]["folded"] == ["by_rate"] and bind["changed"]["check"]["checked"]
    assert [s.name for s in new.inputs] == ["x"] and new.info["bound_inputs"] == {"sr": 16000}
    assert "If" not in {n.op_type for n in onnx.load(str(new.path)).graph.node}
    np.testing.assert_array_equal(ort_run(new.path, {"x": X})[0], X * 2)


def test_an_onnx_bundle_keeps_the_branch(tmp_path):
    src = steered_graph(tmp_path / "g.onnx")
    ctx = context(tmp_path, "x86-cpu", {"x": X, "sr": np.array(8000, np.int64)}, src)
    new, records = passes.apply(ctx, artifact(src, ctx), None)
    assert records == [] and {s.name for s in new.inputs} == {"x", "sr"}


def test_bound_before_onnx_int8_which_does_not_enter_an_if(tmp_path):
    src = steered_graph(tmp_path / "g.onnx")
    example = {"x": X, "sr": np.array(16000, np.int64)}
    ctx = context(tmp_path, "x86-cpu-int8", example, src)   # onnxruntime's quantizer skips If bodies
    new, records = passes.apply(ctx, artifact(src, ctx), None)
    assert records[0]["name"] == "bind-inputs" and records[0]["changed"]["bound"] == {"sr": 16000}
    assert "does not enter the If" in records[0]["why"]
    assert [s.name for s in new.inputs] == ["x"] and new.info["bound_inputs"] == {"sr": 16000}
    assert "If" not in {n.op_type for n in onnx.load(str(new.path)).graph.node}


def test_samples_must_hold_the_bound_value():
    same = [{"x": X, "sr": np.array(16000)}, {"x": X, "sr": np.int64(16000)}]
    assert [sorted(s) for s in drop_bound(same, {"sr": 16000}, "reference")] == [["x"], ["x"]]
    with pytest.raises(DataError) as e:
        drop_bound(same + [{"x": X, "sr": np.array(8000)}], {"sr": 16000}, "calibration")
    assert "calibration sample 2 has sr=8000" in e.value.message and "sr=16000" in e.value.hint


def test_fixed_sizes_that_break_a_branch_are_not_used_but_binding_first_saves_them(tmp_path):
    from passes_support import branch_breaks_when_fixed

    src = branch_breaks_when_fixed(tmp_path / "g.onnx")
    example = {"x": X, "sr": np.array(16000, np.int64)}
    unbound = tmp_path / "unbound.yaml"     # int8 ONNX bundle with the If kept: sizes optional
    unbound.write_text("name: unbound\nextends: x86-cpu-int8\npasses: {bind-inputs: {enabled: false}}\n")
    ctx = context(tmp_path / "int8", str(unbound), example, src)
    new, records = passes.apply(ctx, artifact(src, ctx), None)
    static = [r for r in records if r["name"] == "static-shapes"][0]["changed"]
    assert static["kept"].startswith("the fixed-size graph does not run in onnxruntime")
    assert new.inputs[0].shape == ["N", "L"] and any("static-shapes pass refused" in w for w in new.warnings)
    ctx = context(tmp_path / "tfl", "raspberry-pi", example, src)    # before onnx2tf: sr bound, If folded
    new, records = passes.apply(ctx, artifact(src, ctx), formats.get(Format.TFLITE))
    assert [r["name"] for r in records if "kept" not in r["changed"]] == ["bind-inputs", "static-shapes", "simplify"]
    assert [s.shape for s in new.inputs] == [[1, 8]]
    np.testing.assert_array_equal(ort_run(new.path, {"x": X})[0], X)
