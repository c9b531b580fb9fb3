"""Graph preparation passes on small ONNX graphs made in the test: what each pass changes, when it
runs on its own (enabled: auto), that the numbers in onnxruntime stay the same, that a pass which
would change them is refused, and that nothing is written into the current directory."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from passes_support import artifact, context, foldable_graph, ort_run

from packager import formats, passes
from packager.formats import Format

EXAMPLE = {"x": np.random.default_rng(1).normal(size=(1, 3, 8, 12)).astype(np.float32)}


@pytest.fixture
def in_empty_cwd(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert sorted(os.listdir(cwd)) == [], "a pass wrote into the current directory"


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_before_onnx2tf_sizes_are_fixed_then_the_shape_arithmetic_folds(tmp_path, in_empty_cwd):
    src = foldable_graph(tmp_path / "m.onnx")
    ctx = context(tmp_path, "raspberry-pi", EXAMPLE, src)
    art = artifact(src, ctx)
    assert not art.inputs[0].is_static
    new, records = passes.apply(ctx, art, formats.get(Format.TFLITE))
    ran = [r["name"] for r in records]
    assert ran == ["static-shapes", "simplify"], ran           # no int8 here: no opset / shape-inference
    assert new.inputs[0].shape == [1, 3, 8, 12] and new.outputs[0].shape == [1, 4, 96]
    ops = _ops(new.path)
    assert "Shape" not in ops and "Constant" not in ops and "Concat" not in ops, ops
    slim = records[1]["changed"]
    assert slim["before"]["nodes"] > slim["after"]["nodes"] and slim["check"]["checked"]
    assert slim["tool"].startswith("onnxslim ")
    np.testing.assert_allclose(ort_run(new.path, EXAMPLE)[0], ort_run(src, EXAMPLE)[0], rtol=1e-5, atol=1e-5)
    assert all(r["why"] and r["seconds"] >= 0 for r in records)


def test_an_onnx_bundle_in_fp32_keeps_its_graph(tmp_path):
    src = foldable_graph(tmp_path / "m.onnx")
    ctx = context(tmp_path, "x86-cpu", EXAMPLE, src)
    art = artifact(src, ctx)
    new, records = passes.apply(ctx, art, None)
    assert records == [] and new.path == art.path


def test_int8_onnx_bundle_keeps_a_symbolic_batch_and_gets_opset_13_and_shapes(tmp_path, in_empty_cwd):
    src = foldable_graph(tmp_path / "m.onnx", opset=12)
    ctx = context(tmp_path, "x86-cpu-int8", EXAMPLE, src)
    new, records = passes.apply(ctx, artifact(src, ctx), None)
    by = {r["name"]: r for r in records}
    assert list(by) == ["static-shapes", "opset", "simplify", "shape-inference"]
    assert by["static-shapes"]["changed"]["fixed"] == {"x": ["batch", 3, 8, 12]}
    assert new.inputs[0].shape == ["N", 3, 8, 12]               # the batch stays the model's own name
    assert by["opset"]["changed"]["opset"] == [12, 13] and new.info["opset"] == 13
    assert by["shape-inference"]["changed"]["method"].startswith("onnxruntime SymbolicShapeInference")
    two = {"x": np.concatenate([EXAMPLE["x"], -EXAMPLE["x"]])}
    got = ort_run(new.path, two)[0]                            # batch 2 still runs
    np.testing.assert_allclose(got, ort_run(src, two)[0], rtol=1e-5, atol=1e-5)


def test_one_size_name_for_axes_of_different_sizes_is_no_identity(tmp_path):
    """paddle2onnx writes '?' for every unknown size: H=8 and W=12 must not both become 8."""
    src = foldable_graph(tmp_path / "m.onnx", dims=(-1, 3, "?", "?"))
    model = onnx.load(str(src))
    model.graph.value_info.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [-1, 4, "?", "?"]))
    onnx.save(model, str(src))
    ctx = context(tmp_path, "raspberry-pi", EXAMPLE, src)
    new, records = passes.apply(ctx, artifact(src, ctx), formats.get(Format.TFLITE))
    assert new.inputs[0].shape == [1, 3, 8, 12]
    np.testing.assert_allclose(ort_run(new.path, EXAMPLE)[0], ort_run(src, EXAMPLE)[0], rtol=1e-5, atol=1e-5)


def test_a_simplification_that_changes_the_numbers_is_refused(tmp_path, monkeypatch):
    """A fake onnxslim (in addition to the real one above) that scales a weight: the pass must
    notice in onnxruntime, keep the graph it got and say so."""
    import onnxslim

    real = onnxslim.slim

    def wrong(model, *a, **k):
        out = real(model, *a, **k)
        for init in out.graph.initializer:
            if init.name == "w":
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, "w"))
        return out

    monkeypatch.setattr(onnxslim, "slim", wrong)
    src = foldable_graph(tmp_path / "m.onnx")
    ctx = context(tmp_path, "raspberry-pi", EXAMPLE, src)
    before = passes.apply(ctx, artifact(src, ctx), formats.get(Format.TFLITE))
    new, records = before
    slim = [r for r in records if r["name"] == "simplify"][0]
    assert "differ" in slim["changed"]["kept"]
    assert new.path.name.endswith(".static.onnx")              # the static graph, not the slimmed one
    assert any("simplify pass refused" in w for w in new.warnings)


def test_profile_can_turn_a_pass_off_or_force_it(tmp_path):
    import dataclasses

    src = foldable_graph(tmp_path / "m.onnx")
    ctx = context(tmp_path, "raspberry-pi", EXAMPLE, src)
    prof = ctx.profile
    off = dict(prof.passes)
    off["simplify"] = dataclasses.replace(off["simplify"], enabled=False)
    ctx_off = dataclasses.replace(ctx, profile=dataclasses.replace(prof, passes=off))
    _, records = passes.apply(ctx_off, artifact(src, ctx_off), formats.get(Format.TFLITE))
    assert [r["name"] for r in records] == ["static-shapes"]
    on = dict(prof.passes)
    on["shape-inference"] = dataclasses.replace(on["shape-inference"], enabled=True)
    ctx_on = dataclasses.replace(ctx, profile=dataclasses.replace(prof, passes=on))
    _, records = passes.apply(ctx_on, artifact(src, ctx_on), None)
    assert [r["name"] for r in records] == ["shape-inference"] and records[0]["why"] == "enabled: true"


def test_shape_inference_falls_back_and_writes_nothing_into_cwd(tmp_path, in_empty_cwd, monkeypatch):
    """When onnxruntime's symbolic inference gives up it saves sym_shape_infer_temp.onnx into the
    current directory: the pass runs in the build's folder, falls back to onnx's and records it."""
    from onnxruntime.tools import symbolic_shape_infer as ssi

    def incomplete(model, *a, **k):
        onnx.save_model(model, "sym_shape_infer_temp.onnx", save_as_external_data=True)
        raise Exception("Incomplete symbolic shape inference")

    monkeypatch.setattr(ssi.SymbolicShapeInference, "infer_shapes", staticmethod(incomplete))
    src = foldable_graph(tmp_path / "m.onnx")
    ctx = context(tmp_path, "x86-cpu-int8", EXAMPLE, src)
    new, records = passes.apply(ctx, artifact(src, ctx), None)
    shapes = [r for r in records if r["name"] == "shape-inference"][0]["changed"]
    assert shapes["method"].startswith("onnx.shape_inference")
    assert "Incomplete symbolic shape inference" in shapes["fell_back"][0]
    assert (ctx.workdir / "passes" / "sym_shape_infer_temp.onnx").is_file()


def test_pass_options_are_typed_in_profiles(tmp_path):
    from packager import profiles
    from packager.errors import ProfileError

    bad = tmp_path / "p.yaml"
    bad.write_text("extends: base\nname: p\npasses: {opset: {min_opset: 99}, simplify: {atl: 1}}\n")
    with pytest.raises(ProfileError) as e:
        profiles.load(str(bad))
    assert "passes.opset.min_opset" in str(e.value) and "passes.simplify.atl" in str(e.value)


def _branches_sharing_a_name(path):
    """y = If(c) then x * k else x + k, each branch holding its own initializer 'k' (what onnxslim
    writes for Silero VAD's two sample-rate branches)."""
    def branch(name, op, value):
        return helper.make_graph([helper.make_node(op, ["x", "k"], [name], name=f"{name}_{op}")], name, [],
                                 [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 8])],
                                 [numpy_helper.from_array(np.array(value, np.float32), "k")])

    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=branch("t", "Mul", 2.0),
                                            else_branch=branch("e", "Add", 3.0), name="pick")], "shared",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return model


def test_initializers_shared_by_if_branches_are_found_and_fp16_refuses_them(tmp_path):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from packager.passes import graph

    model = _branches_sharing_a_name(tmp_path / "shared.onnx")
    assert graph.shared_initializers(model) == ["k"]
    assert graph.op_types(model) == {"If", "Mul", "Add"}
    with pytest.raises(AssertionError):           # why simplify must not hand such a graph on
        convert_float_to_float16(model, keep_io_types=True)
    assert graph.shared_initializers(onnx.load(str(foldable_graph(tmp_path / "m.onnx")))) == []


def test_a_simplification_that_shares_names_across_branches_is_not_used(tmp_path, monkeypatch):
    """A fake onnxslim (the real one does this to Silero VAD, tests/zoo) that returns a graph whose
    If branches share an initializer name: the pass keeps the graph it got and says why."""
    import onnxslim

    shared = _branches_sharing_a_name(tmp_path / "shared.onnx")
    monkeypatch.setattr(onnxslim, "slim", lambda model, *a, **k: shared)
    src = foldable_graph(tmp_path / "m.onnx")
    ctx = context(tmp_path, "raspberry-pi", EXAMPLE, src)
    new, records = passes.apply(ctx, artifact(src, ctx), formats.get(Format.TFLITE))
    slim = [r for r in records if r["name"] == "simplify"][0]
    assert "more than one If/Loop body" in slim["changed"]["kept"] and "'k'" in slim["changed"]["kept"]
    assert new.path.name.endswith(".static.onnx")


def test_fp16_onnx_folds_batchnorm_only_where_there_is_one(tmp_path):
    src = foldable_graph(tmp_path / "m.onnx")                  # no BatchNormalization
    ctx = context(tmp_path, "jetson", EXAMPLE, src)
    art = artifact(src, ctx)
    new, records = passes.apply(ctx, art, None)
    assert "simplify" not in [r["name"] for r in records] and new.path == art.path
