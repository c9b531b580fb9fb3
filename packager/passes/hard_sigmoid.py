"""hard-sigmoid: write HardSigmoid as ReLU6 arithmetic before onnx2tf, for int8 TF-Lite.

onnx2tf writes HardSigmoid(x) = max(0, min(1, alpha*x + beta)), which TF-Lite fuses into one
RELU_0_TO_1 op; ai-edge-quantizer 0.10 has no int8 kernel for it, so the op stays float and the
Edge TPU check refuses the model (measured: PP-OCRv4 rec and the PP-OCR angle classifier on coral).
The same function written the way Keras' MobileNetV3 writes it,

    HardSigmoid(x) = Clip(x * 6*alpha + 6*beta, 0, 6) * 1/6

becomes MUL, ADD with a fused RELU6 (folded into the producing Conv where there is one) and MUL:
ops ai-edge-quantizer quantizes. onnx2tf has no pseudo operator for HardSigmoid
(replace_to_pseudo_operators), so this is the one rewrite done here, node for node with onnx.helper,
and checked in onnxruntime on the reference input like every other pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

from ..formats import Format
from . import Pass, graph, int8_tflite_next


@dataclass(frozen=True)
class HardSigmoidOptions(graph.Tolerance):
    enabled: Union[Literal["auto"], bool] = "auto"


class HardSigmoid(Pass):
    name = "hard-sigmoid"
    formats = (Format.ONNX,)
    Options = HardSigmoidOptions
    summary = "HardSigmoid as Clip(6*alpha*x + 6*beta, 0, 6) / 6 before onnx2tf for int8 (no float RELU_0_TO_1)"

    def wanted(self, ctx, art, opts, next_backend):
        if not int8_tflite_next(ctx, next_backend) or \
                "HardSigmoid" not in graph.op_types(graph.load(art.path, weights=False)):
            return None
        return "int8 TF-Lite: onnx2tf's RELU_0_TO_1 has no int8 kernel in ai-edge-quantizer"

    def run(self, ctx, art, opts, next_backend=None):
        from onnx import helper, numpy_helper

        model = graph.load(art.path)
        if graph.opset(model) < 11:
            return graph.kept(art, "hard-sigmoid", f"opset {graph.opset(model)} < 11 (Clip takes its bounds as inputs from 11)")
        g = model.graph
        dtype = np.float32
        nodes, count = [], 0
        for node in g.node:
            if node.op_type != "HardSigmoid":
                nodes.append(node)
                continue
            alpha, beta = float(graph.attr(node, "alpha", 0.2)), float(graph.attr(node, "beta", 0.5))
            base = f"{node.name or node.output[0]}/hs"
            consts = {"scale": 6 * alpha, "shift": 6 * beta, "lo": 0.0, "hi": 6.0, "sixth": 1 / 6}
            for key, value in consts.items():
                g.initializer.append(numpy_helper.from_array(np.asarray(value, dtype), f"{base}_{key}"))
            x, y = node.input[0], node.output[0]
            nodes += [helper.make_node("Mul", [x, f"{base}_scale"], [f"{base}_mul"], name=f"{base}/Mul"),
                      helper.make_node("Add", [f"{base}_mul", f"{base}_shift"], [f"{base}_add"], name=f"{base}/Add"),
                      helper.make_node("Clip", [f"{base}_add", f"{base}_lo", f"{base}_hi"], [f"{base}_clip"],
                                       name=f"{base}/Clip"),
                      helper.make_node("Mul", [f"{base}_clip", f"{base}_sixth"], [y], name=f"{base}/Div6")]
            count += 1
        if not count:
            return art, {"kept": "no HardSigmoid"}
        del g.node[:]
        g.node.extend(nodes)
        out = graph.save(model, ctx, art, "hardsigmoid")
        refused, check = graph.checked(ctx, art, out, opts, "hard-sigmoid", "rewritten")
        if refused:
            return refused
        return graph.reread(out, art), {"rewritten": count, "check": check}
