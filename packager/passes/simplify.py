"""simplify: constant folding and graph simplification with onnxslim (pinned in requirements.txt).

Why onnxslim and not onnx-simplifier (bench/zoo_prep.md, measured on the zoo): both keep
onnxruntime's outputs, but onnx2tf's TF-Lite of the YOLOv8 detector is wrong from the onnxsim graph
(cosine 0.424 against onnxruntime) and right from the onnxslim one (cosine 1.0000, max abs 0.003);
onnxslim also leaves no Constant nodes (all become initializers) and is what Ultralytics' exporter
runs. It needs fixed sizes to fold shape arithmetic, so it runs after static-shapes.

Runs where it helps (auto): before a converter that needs a static graph (onnx2tf), and before int8
quantization (paddle2onnx computes conv biases with nodes; onnxruntime's quantizer wants them as
initializers). The result is checked against the graph it came from on the reference input in
onnxruntime; one that differs beyond atol/rtol is refused (warning) and the graph kept as it was.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Union

from ..errors import short
from ..formats import Format
from ..quiet import quiet_stdout
from . import Pass, graph, quantized_here

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimplifyOptions:
    enabled: Union[Literal["auto"], bool] = "auto"
    atol: float = field(default=1e-4, metadata={"min": 0})
    rtol: float = field(default=1e-3, metadata={"min": 0})


class Simplify(Pass):
    name = "simplify"
    formats = (Format.ONNX,)
    Options = SimplifyOptions
    summary = "constant folding and simplification (onnxslim), checked in onnxruntime on the reference input"

    def wanted(self, ctx, art, opts, next_backend):
        if next_backend is not None and next_backend.needs_static_shapes:
            return f"{next_backend.label} converts a folded, static graph best (onnxslim, as Ultralytics does)"
        if quantized_here(ctx, art, next_backend):
            return "int8: the quantizer wants weights and biases as initializers, not computed by nodes"
        return None

    def run(self, ctx, art, opts, next_backend=None):
        try:
            import onnxslim
        except ImportError:
            why = "onnxslim is not installed (pip install -r requirements.txt)"
            return art.warn(f"simplify pass skipped: {why}"), {"kept": why}
        model = graph.load(art.path)
        before = graph.counts(model)
        try:
            with quiet_stdout():
                slim = onnxslim.slim(model)
        except Exception as exc:
            why = f"onnxslim failed: {type(exc).__name__}: {short(exc, 200)}"
            return art.warn(f"simplify pass: {why}; the graph is used as it was"), {"kept": why}
        if slim is None:
            why = "onnxslim returned no model"
            return art.warn(f"simplify pass: {why}; the graph is used as it was"), {"kept": why}
        out = graph.save(slim, ctx, art, "slim")
        same, check = graph.compare(art.path, out, ctx.example, opts.atol, opts.rtol)
        if not same:
            why = f"the simplified graph {check['why']}" if check.get("checked") else check["why"]
            return art.warn(f"simplify pass refused: {why}; the graph is used as it was"), \
                {"kept": why, "check": check}
        changed = {"tool": f"onnxslim {onnxslim.__version__}", "before": before, "after": graph.counts(slim),
                   "check": check}
        return graph.reread(out, art), changed
