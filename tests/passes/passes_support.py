"""Small ONNX graphs made in the test (onnx.helper), and a BuildContext to run passes on them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def foldable_graph(path: Path, opset: int = 17, dims=("N", 3, "H", "W")) -> Path:
    """x[N,3,H,W] -> Conv(3->4) -> Relu -> Reshape(x, Concat(Shape(x)[0:2], [-1])): the shape
    arithmetic folds to a constant once H and W are fixed; one Conv weight comes from a Constant."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(
            rng.normal(size=(4,)).astype(np.float32), "bv"), name="bias_const"),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        helper.make_node("Slice", ["s", "zero", "two"], ["nc"], name="slice"),
        helper.make_node("Concat", ["nc", "minus1"], ["newshape"], axis=0, name="concat"),
        helper.make_node("Reshape", ["r", "newshape"], ["y"], name="reshape"),
    ]
    inits = [w, numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    g = helper.make_graph(nodes, "foldable",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, None])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def context(tmp_path: Path, profile: str, example: dict, source_path: Path):
    """A BuildContext as the pipeline makes it, for a pass run outside a build."""
    from packager import profiles, sources
    from packager.formats.base import BuildContext

    src = sources.load(str(source_path), {k: list(v.shape) for k, v in example.items()})
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    return BuildContext(source=src, profile=profiles.load(profile), workdir=work, example=example, layout={})


def artifact(path: Path, ctx):
    """The ONNX artifact the ONNX step would hand the passes."""
    from packager.formats.onnx.export import from_onnx

    return from_onnx(ctx)


def ort_run(path: Path, feeds: dict) -> list:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def steered_graph(path: Path) -> Path:
    """y = If(Equal(sr, 16000)) then x * 2 else x * 3, with sr an int64 scalar input (as Silero VAD)."""
    def branch(name, const):
        return helper.make_graph([helper.make_node("Mul", ["x", const], [name], name=f"{name}_mul")], name, [],
                                 [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 8])])

    nodes = [helper.make_node("Equal", ["sr", "rate"], ["is16k"], name="is_16k"),
             helper.make_node("If", ["is16k"], ["y"], then_branch=branch("t", "two"),
                              else_branch=branch("e", "three"), name="by_rate")]
    inits = [numpy_helper.from_array(np.array(16000, np.int64), "rate"),
             numpy_helper.from_array(np.array(2, np.float32), "two"),
             numpy_helper.from_array(np.array(3, np.float32), "three")]
    g = helper.make_graph(nodes, "steered",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                           helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def branch_breaks_when_fixed(path: Path) -> Path:
    """y = If(sr == 16000) then x else the first half of Split(x, [50, 50], axis 1), x [N, L]: with L
    fixed to 8 the else branch no longer type-checks and onnxruntime refuses the whole graph (as Silero
    VAD's 8 kHz branch does at 576 samples)."""
    def branch(name, node):
        return helper.make_graph([node], name, [],
                                 [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [None, None])])

    nodes = [helper.make_node("Equal", ["sr", "rate"], ["is16k"], name="is_16k"),
             helper.make_node("If", ["is16k"], ["y"], name="by_rate",
                              then_branch=branch("t", helper.make_node("Identity", ["x"], ["t_y"], name="keep")),
                              else_branch=branch("e", helper.make_node("Split", ["x", "halves"], ["e_y", "e_z"],
                                                                       axis=1, name="halve")))]
    inits = [numpy_helper.from_array(np.array(16000, np.int64), "rate"),
             numpy_helper.from_array(np.array([50, 50], np.int64), "halves")]
    g = helper.make_graph(nodes, "breaks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"]),
                                            helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
