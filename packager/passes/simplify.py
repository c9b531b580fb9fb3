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
from dataclasses import dataclass
from typing import Literal, Union

from ..errors import short
from ..formats import Format
from . import Pass, graph, is_bundle, quantized_here

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimplifyOptions(graph.Tolerance):
    enabled: Union[Literal["auto"], bool] = "auto"


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
        if (is_bundle(ctx, art, next_backend) and ctx.profile.precision == "fp16"
                and "BatchNormalization" in graph.op_types(graph.load(art.path, weights=False))):
            return ("fp16: BatchNormalization folded into its Conv first (an unfolded BN's scale and "
                    "variance lose their range in float16: PP-OCRv4 det measured cosine 0.88 at its first BN)")
        return None

    def run(self, ctx, art, opts, next_backend=None):
        try:
            import onnxslim
        except ImportError:
            return graph.kept(art, "simplify", "onnxslim is not installed (pip install -r requirements.txt)")
        model = graph.load(art.path)
        before = graph.counts(model)
        try:
            slim, skip = graph.slim(model, next_backend)
        except Exception as exc:
            return graph.kept(art, "simplify", f"onnxslim failed: {type(exc).__name__}: {short(exc, 200)}")
        if slim is None:
            return graph.kept(art, "simplify", "onnxslim returned no model")
        shared = graph.shared_initializers(slim)
        if shared and not graph.shared_initializers(model):
            # measured on Silero VAD: onnxslim gives constants of both If branches one name, and
            # onnxruntime's float16 converter then fails (AssertionError) on the duplicate
            return graph.kept(art, "simplify", f"onnxslim defines {len(shared)} initializer(s) in more than one "
                              f"If/Loop body under one name (e.g. {shared[0]!r}), which onnxruntime's float16 converter refuses")
        out = graph.save(slim, ctx, art, "slim")
        refused, check = graph.checked(ctx, art, out, opts, "simplify", "simplified")
        if refused:
            return refused
        changed = {"tool": f"onnxslim {onnxslim.__version__}", "before": before, "after": graph.counts(slim),
                   "check": check}
        if skip:
            changed["skipped_patterns"] = skip
        return graph.reread(out, art), changed
