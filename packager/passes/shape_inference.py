"""shape-inference: write every tensor's shape into the ONNX graph (value_info).

onnxruntime's SymbolicShapeInference with auto_merge=True (it merges two symbolic sizes that must be
equal, where the default gives up: measured on the dynamic YOLOv8 and PP-OCR detector, bench/zoo_prep.md),
falling back to onnx's own shape inference; which one ran and how many tensors got a full shape is
recorded. Runs before int8 quantization of an ONNX bundle (the quantizer's pre-processing needs the
shapes). The graph must still load in onnxruntime, or it is kept as it was (warning).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from ..errors import short
from ..formats import Format
from . import Pass, graph, quantized_here


@dataclass(frozen=True)
class ShapeInferenceOptions:
    enabled: Union[Literal["auto"], bool] = "auto"
    auto_merge: bool = True


def known(model) -> tuple[int, int]:
    """(tensors with a full shape, node outputs) in the top graph."""
    shaped = {vi.name for vi in list(model.graph.value_info) + list(model.graph.output)
              if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape")
              and all(d.dim_value > 0 or d.dim_param for d in vi.type.tensor_type.shape.dim)}
    outs = {o for n in model.graph.node for o in n.output if o}
    return len(outs & shaped), len(outs)


class ShapeInference(Pass):
    name = "shape-inference"
    formats = (Format.ONNX,)
    Options = ShapeInferenceOptions
    summary = "tensor shapes into the graph (onnxruntime symbolic inference, auto_merge; onnx's as fallback)"

    def wanted(self, ctx, art, opts, next_backend):
        if quantized_here(ctx, art, next_backend):
            return "int8: onnxruntime's quantizer pre-processing needs complete shapes"
        return None

    def run(self, ctx, art, opts, next_backend=None):
        import onnx
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        model = graph.load(art.path)
        tried = []
        inferred, method = None, None
        try:
            inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=opts.auto_merge)
            method = f"onnxruntime SymbolicShapeInference (auto_merge={opts.auto_merge})"
        except Exception as exc:   # "Incomplete symbolic shape inference", asserts on odd ops
            tried.append(f"onnxruntime symbolic: {type(exc).__name__}: {short(exc, 120) or 'no message'}")
        if inferred is None:
            try:
                inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
                method = "onnx.shape_inference (data_prop)"
            except Exception as exc:
                tried.append(f"onnx: {type(exc).__name__}: {short(exc, 120)}")
        if inferred is None:
            why = "; ".join(tried)
            return art.warn(f"shape-inference pass: no shapes inferred ({why})"), {"kept": why}
        out = graph.save(inferred, ctx, art, "shapes")
        try:
            graph.run_ort(out, ctx.example)
        except Exception as exc:
            why = f"onnxruntime cannot run the graph with the inferred shapes: {short(exc, 200)}"
            return art.warn(f"shape-inference pass: {why}; the graph is used as it was"), {"kept": why}
        full, total = known(inferred)
        changed = {"method": method, "shaped_tensors": f"{full}/{total}"}
        if tried:
            changed["fell_back"] = tried
        return graph.reread(out, art), changed
