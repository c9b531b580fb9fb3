"""scalar-operands: a one-element constant of shape [1] in an element-wise op becomes a 0-d scalar, before onnx2tf.

paddle2onnx writes every scalar parameter as a [1] tensor (PP-LCNet's learnable affine blocks:
`Mul(w[1], x)`, `Add(x, b[1])` around each HardSwish). onnx2tf 1.29.24 reads such a rank-1 operand
as a layout change: it computes the op channels-first between two TRANSPOSEs, and the depthwise Conv
after it, which now sees a channels-first tensor, becomes a grouped CONV_2D instead of a
DEPTHWISE_CONV_2D. Measured on PP-OCRv4 det: 53 TRANSPOSE and 13 grouped CONV_2D; with the same
constants as 0-d scalars, 5 TRANSPOSE, every depthwise conv a DEPTHWISE_CONV_2D (the Edge TPU
compiler maps depthwise convs; LiteRT runs grouped ones with its reference kernel), same outputs.

The rewrite is exact where it is made: the other operand has rank >= 1, so broadcasting gives the
same shape either way (a [1] constant against a 0-d tensor would have made a [1] result; those are
left alone). Runs before onnx2tf for a float TF-Lite (fp32, fp16), after simplify (every constant is
an initializer by then); checked in onnxruntime on the reference input like every other pass.

Not before int8 TF-Lite: with the layout right, TF-Lite's converter also fuses PP-OCRv4 rec's
x * relu6(x + 3) / 6 into HARD_SWISH ops, and ai-edge-quantizer's int8 HARD_SWISH loses more than the
unfused ops: rec x coral's best parity score fell from 0.872 to 0.800 (with the HardSwish kept unfused
by hand it was 0.871 again; det, whose HardSwish fuses either way, 0.861 both ways). Both cells are
refused on coral either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from ..formats import Format
from . import Pass, graph, int8_tflite_next

ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow")


@dataclass(frozen=True)
class ScalarOperandsOptions(graph.Tolerance):
    enabled: Union[Literal["auto"], bool] = "auto"


def candidates(model) -> list[tuple]:
    """(node, input index, initializer name) for each [1] initializer operand of an element-wise op
    whose other operand has a known rank >= 1. Reads dims only: a graph loaded without weights will do."""
    g = model.graph
    ones = {i.name for i in g.initializer if list(i.dims) == [1]}
    if not ones or not any(n.op_type in ELEMENTWISE and set(n.input) & ones for n in g.node):
        return []
    ranks = {name: len(shape) for name, shape in graph.inferred_shapes(model).items()}
    found = []
    for node in g.node:
        if node.op_type not in ELEMENTWISE or len(node.input) != 2:
            continue
        for k, name in enumerate(node.input):
            other = node.input[1 - k]
            if name in ones and other not in ones and ranks.get(other, 0) >= 1:
                found.append((node, k, name))
    return found


class ScalarOperands(Pass):
    name = "scalar-operands"
    formats = (Format.ONNX,)
    Options = ScalarOperandsOptions
    summary = "[1]-shaped constants of element-wise ops as 0-d scalars before onnx2tf to a float TF-Lite (no TRANSPOSE pairs, depthwise convs stay depthwise)"

    def wanted(self, ctx, art, opts, next_backend):
        float_tflite = next_backend is not None and next_backend.format == Format.TFLITE \
            and not int8_tflite_next(ctx, next_backend)
        if not float_tflite or not candidates(graph.load(art.path, weights=False)):
            return None
        return "onnx2tf reads a [1] operand as a layout change (TRANSPOSE pairs, grouped convs)"

    def run(self, ctx, art, opts, next_backend=None):
        from onnx import numpy_helper

        model = graph.load(art.path)
        found = candidates(model)
        if not found:
            return art, {"kept": "no [1]-shaped element-wise constant"}
        g = model.graph
        inits = {i.name: i for i in g.initializer}
        scalars: dict[str, str] = {}
        for node, k, name in found:
            if name not in scalars:
                scalars[name] = f"{name}/scalar"
                value = numpy_helper.to_array(inits[name]).reshape(())
                g.initializer.append(numpy_helper.from_array(value, scalars[name]))
            node.input[k] = scalars[name]
        # an If/Loop body may read a top-level initializer by name
        used = {i for sub in graph.graphs(model) for n in sub.node for i in n.input} | {o.name for o in g.output}
        for name in scalars:
            if name not in used:
                g.initializer.remove(inits[name])
        out = graph.save(model, ctx, art, "scalars")
        refused, check = graph.checked(ctx, art, out, opts, "scalar-operands", "rewritten")
        if refused:
            return refused
        return graph.reread(out, art), {"rewritten": len(found), "constants": len(scalars), "check": check}
