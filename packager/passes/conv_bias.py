"""conv-bias: fold a one-channel constant Add into the Conv/ConvTranspose before it, for int8 TF-Lite.

paddle2onnx writes a convolution's bias as a separate `Add(conv, b)` with b shaped [1, C, 1, 1].
onnxslim's FusionConvAdd folds it into the conv's bias, except when C is 1 (it asks for
`b.squeeze().ndim == 1`, which a one-element b does not have). onnx2tf then writes that Add as a
[1, 1, 1, 1] constant, TF-Lite's converter fuses it into TRANSPOSE_CONV as a 4-D bias, and
ai-edge-quantizer 0.10 cannot quantize a bias that is not 1-D ("Failed to quantize bias tensor for op
CONV_2D_TRANSPOSE": PP-OCRv4 det's last upsampling layer, measured). Folded here as onnxslim folds the
others, the bias is 1-D. Runs after simplify (the bias is an initializer by then); checked in
onnxruntime on the reference input like every other pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

from ..formats import Format
from . import Pass, graph, int8_tflite_next

CONVS = ("Conv", "ConvTranspose")


@dataclass(frozen=True)
class ConvBiasOptions(graph.Tolerance):
    enabled: Union[Literal["auto"], bool] = "auto"


def _out_channels(node, weight_dims) -> int:
    if node.op_type == "Conv":
        return int(weight_dims[0])
    return int(weight_dims[1]) * int(graph.attr(node, "group", 1))


def foldable(model) -> list[tuple]:
    """(conv node, add node, bias constant name) for each Conv/ConvTranspose -> Add(one-channel
    constant). Reads only the initializers' dims, so a graph loaded without weights will do."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    found = []
    for conv in g.node:
        if conv.op_type not in CONVS or len(conv.input) < 2 or conv.input[1] not in inits:
            continue
        if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits:
            continue
        after = users.get(conv.output[0], [])
        if len(after) != 1 or after[0].op_type != "Add" or conv.output[0] in outputs:
            continue
        add = after[0]
        const = add.input[1] if add.input[0] == conv.output[0] else add.input[0]
        if const not in inits:
            continue
        weight, b = list(inits[conv.input[1]].dims), list(inits[const].dims)
        if _out_channels(conv, weight) != 1 or int(np.prod(b)) != 1 or len(b) > len(weight):
            continue   # onnxslim folds every other channel count itself
        found.append((conv, add, const))
    return found


class ConvBias(Pass):
    name = "conv-bias"
    formats = (Format.ONNX,)
    Options = ConvBiasOptions
    summary = "fold a one-channel bias Add into its Conv/ConvTranspose before onnx2tf for int8 (1-D bias)"

    def wanted(self, ctx, art, opts, next_backend):
        if not int8_tflite_next(ctx, next_backend) or not foldable(graph.load(art.path, weights=False)):
            return None
        return "int8 TF-Lite: ai-edge-quantizer needs a 1-D conv bias; onnxslim leaves one-channel bias Adds"

    def run(self, ctx, art, opts, next_backend=None):
        from onnx import numpy_helper

        model = graph.load(art.path)
        g = model.graph
        inits = {i.name: i for i in g.initializer}
        folded = []
        for conv, add, const in foldable(model):
            b = numpy_helper.to_array(inits[const]).astype(np.float32).reshape(1)
            if len(conv.input) > 2 and conv.input[2]:
                b = b + numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32).reshape(1)
            name = f"{conv.name or conv.output[0]}/folded_bias"
            g.initializer.append(numpy_helper.from_array(b, name))
            while len(conv.input) < 3:
                conv.input.append("")
            conv.input[2] = name
            conv.output[0] = add.output[0]
            g.node.remove(add)
            folded.append(conv.name or conv.output[0])
        if not folded:
            return art, {"kept": "no one-channel bias Add"}
        out = graph.save(model, ctx, art, "convbias")
        refused, check = graph.checked(ctx, art, out, opts, "conv-bias", "folded")
        if refused:
            return refused
        return graph.reread(out, art), {"folded": folded, "check": check}
