"""depthwise-strides: a depthwise Conv with unequal strides becomes a stride-1 one and a strided Slice, before onnx2tf to int8.

TensorFlow's depthwise_conv2d takes equal strides only, so onnx2tf 1.29.24 writes a depthwise Conv
with strides (2, 1) or (1, 2) as a grouped CONV_2D. PP-OCR models downsample height only (strides
(2, 1)) to keep a text line's width: PP-OCRv4 rec has 4 such convs (3 of (2, 1), 1 of (1, 2)), the
PP-OCR mobile v2.0 angle classifier 4. A grouped CONV_2D is CONV_2D version 6 in TF-Lite's op
versioning, and one opcode entry stands for every CONV_2D of the model: measured on the angle
classifier's coral bundle, all 46 CONV_2D ops are version 6 and the model needs TF-Lite 2.9.0; with
the pass, version 1, DEPTHWISE_CONV_2D for the four, and 1.15.0 (Coral's own tflite-runtime wheels
stop at 2.5.0; the Edge TPU compiler maps DEPTHWISE_CONV_2D).

The rewrite is exact: a stride-1 conv with the same pads and dilations computes every output the
strided one does (and those between); a Slice with the strides as steps, from 0 to the stride-1
output's length, keeps exactly the strided conv's outputs. It costs the depthwise conv's arithmetic
times the stride. Only explicit pads (auto_pad NOTSET or VALID: SAME pads depend on the stride), 2-D
convs whose weight has one input channel per group, and graphs of opset >= 10 (Slice takes steps).

`auto` runs it before onnx2tf to an int8 TF-Lite (the Edge TPU's), after simplify (the weights are
initializers by then); checked in onnxruntime on the reference input like every other pass. Not
for a float TF-Lite: there LiteRT's XNNPACK runs grouped convs itself and the float model needs
TF-Lite 2.10 for other ops either way, so the doubled arithmetic only costs (measured on
raspberry-pi, `bench/tflite_passes.py --pass depthwise-strides`); `enabled: true` runs it there too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from ..formats import Format
from . import Pass, graph, int8_tflite_next

EXPLICIT_PADS = (b"NOTSET", b"VALID")       # auto_pad as onnx.helper reads it


@dataclass(frozen=True)
class DepthwiseStridesOptions(graph.Tolerance):
    enabled: Union[Literal["auto"], bool] = "auto"


def candidates(model) -> list[tuple]:
    """(node, kernel [kh, kw]) of each depthwise Conv with unequal 2-D strides and explicit pads.
    Reads the weights' dims only: a graph loaded without weights will do."""
    g = model.graph
    if graph.opset(model) < 10:
        return []
    weights = {i.name: list(i.dims) for i in g.initializer}
    found = []
    for n in g.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in weights:
            continue
        w = weights[n.input[1]]
        strides = list(graph.attr(n, "strides", None) or [1, 1])
        if len(w) != 4 or w[1] != 1 or int(graph.attr(n, "group", 1)) <= 1 or len(strides) != 2:
            continue
        if strides[0] != strides[1] and graph.attr(n, "auto_pad", b"NOTSET") in EXPLICIT_PADS:
            found.append((n, w[2:]))
    return found


class DepthwiseStrides(Pass):
    name = "depthwise-strides"
    formats = (Format.ONNX,)
    Options = DepthwiseStridesOptions
    summary = "depthwise convs with unequal strides as stride 1 + a strided Slice before onnx2tf to int8 (DEPTHWISE_CONV_2D, not a grouped CONV_2D v6)"

    def wanted(self, ctx, art, opts, next_backend):
        if not int8_tflite_next(ctx, next_backend) or not candidates(graph.load(art.path, weights=False)):
            return None
        return "TensorFlow's depthwise conv takes equal strides only (onnx2tf writes a grouped CONV_2D, op version 6)"

    def run(self, ctx, art, opts, next_backend=None):
        import numpy as np
        from onnx import helper, numpy_helper

        model = graph.load(art.path)
        g = model.graph
        kernels = {n.output[0]: kernel for n, kernel in candidates(model)}
        shapes = graph.inferred_shapes(model) if kernels else {}
        nodes, rewritten = [], []
        for node in g.node:
            nodes.append(node)
            if node.op_type != "Conv" or node.output[0] not in kernels:
                continue
            size = shapes.get(node.input[0])
            if not size or len(size) != 4 or None in size[2:]:
                continue                     # the input's size is unknown: the Slice's ends would be too
            kernel = kernels[node.output[0]]
            pads = list(graph.attr(node, "pads", None) or [0, 0, 0, 0])
            dil = list(graph.attr(node, "dilations", None) or [1, 1])
            strides = list(graph.attr(node, "strides"))
            axes = [a for a in (0, 1) if strides[a] > 1]
            # the stride-1 output's length on each sliced axis
            ends = [size[a + 2] + pads[a] + pads[a + 2] - dil[a] * (kernel[a] - 1) for a in axes]
            label = node.name or node.output[0]
            consts = {f"{label}/slice_{part}": np.array(v, np.int64) for part, v in
                      (("starts", [0] * len(axes)), ("ends", ends), ("axes", [a + 2 for a in axes]),
                       ("steps", [strides[a] for a in axes]))}
            g.initializer.extend(numpy_helper.from_array(v, name) for name, v in consts.items())
            for a in node.attribute:
                if a.name == "strides":
                    a.CopyFrom(helper.make_attribute("strides", [1, 1]))
            dense = f"{node.output[0]}/stride1"
            nodes.append(helper.make_node("Slice", [dense, *consts], [node.output[0]], name=f"{label}/strides"))
            node.output[0] = dense
            rewritten.append({"node": label, "strides": strides})
        if not rewritten:
            return graph.kept(art, self.name, "no depthwise conv with unequal strides has a known input size")
        del g.node[:]
        g.node.extend(nodes)
        out = graph.save(model, ctx, art, "dwstrides")
        refused, check = graph.checked(ctx, art, out, opts, self.name, "rewritten")
        if refused:
            return refused
        return graph.reread(out, art), {"rewritten": len(rewritten), "convs": rewritten, "check": check}
