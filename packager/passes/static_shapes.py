"""static-shapes: write the reference input sizes into an ONNX graph (onnxruntime's own tools).

- Before a converter that needs fixed sizes (onnx2tf: a symbolic size stays -1 in the TF-Lite
  signature and its shape arithmetic fails on it): every symbolic input size is fixed.
- Before int8 quantization of an ONNX bundle: the symbolic sizes other than the batch that the
  reference inputs (--input-shape / --inputs) gave are fixed, and the batch stays symbolic where the
  profile allows it (`onnx: {dynamic_batch: true}`): onnxruntime's quantization pre-processing gives up
  on incomplete symbolic shape inference, and calibration only ever sees those sizes anyway.
- An fp32/fp16 ONNX bundle keeps its symbolic sizes (measured: no latency gain in onnxruntime from
  fixed sizes on the zoo's detector, OCR and transformer; docs/FORMATS.md).

`keep_batch: auto` keeps axis 0 symbolic exactly in the ONNX-bundle case above.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

from ..errors import ConversionError, short
from ..formats import Format
from . import Pass, graph, is_bundle, quantized_here


@dataclass(frozen=True)
class StaticShapesOptions(graph.Tolerance):
    enabled: Union[Literal["auto"], bool] = "auto"
    keep_batch: Union[Literal["auto"], bool] = "auto"   # leave a symbolic axis 0 symbolic


def _symbolic_axes(spec, keep_batch: bool) -> list[int]:
    return [i for i, d in enumerate(spec.shape) if not (isinstance(d, int) and d > 0) and not (keep_batch and i == 0)]


class StaticShapes(Pass):
    name = "static-shapes"
    formats = (Format.ONNX,)
    Options = StaticShapesOptions
    summary = "fix symbolic input sizes to the reference inputs' sizes (and infer the outputs')"

    def keep_batch(self, ctx, art, opts, next_backend) -> bool:
        if opts.keep_batch != "auto":
            return bool(opts.keep_batch)
        return is_bundle(ctx, art, next_backend) and bool(ctx.profile.format_options("onnx").dynamic_batch)

    def wanted(self, ctx, art, opts, next_backend):
        keep = self.keep_batch(ctx, art, opts, next_backend)
        symbolic = [s.name for s in art.inputs if _symbolic_axes(s, keep)]
        if not symbolic:
            return None
        if next_backend is not None and next_backend.needs_static_shapes:
            return f"{next_backend.label} needs fixed sizes; symbolic: {', '.join(symbolic)}"
        if quantized_here(ctx, art, next_backend):
            return ("int8: onnxruntime's quantizer needs complete shapes; fixing the reference sizes of "
                    + ", ".join(symbolic) + (" (batch kept symbolic)" if keep else ""))
        return None

    def run(self, ctx, art, opts, next_backend=None):
        from onnxruntime.tools.onnx_model_utils import fix_output_shapes, remove_invalid_dim_values

        keep = self.keep_batch(ctx, art, opts, next_backend)
        model = graph.load(art.path)
        remove_invalid_dim_values(model.graph)       # -1 sizes (paddle2onnx) become unknown
        try:
            fixed = _fix(model.graph, art, ctx.example, keep)
        except Exception as exc:  # a rank or size that disagrees with the reference inputs
            raise ConversionError(f"fixing the ONNX graph's input sizes failed: {short(exc)}",
                                  "check --input-shape against the model's inputs") from exc
        outputs = "inferred"
        try:
            fix_output_shapes(model)
        except Exception as exc:  # onnx's checker or shape inference refuses: leave outputs to the runtime
            outputs = f"left as they were ({short(exc, 120)})"
        out = graph.save(model, ctx, art, "static")
        # onnxruntime type-checks every If branch at load: a branch that cannot take the fixed sizes
        # (Silero VAD's 8 kHz branch with 576 samples) makes the whole graph unloadable
        refused, check = graph.checked(ctx, art, out, opts, "static-shapes", "fixed-size")
        if refused:
            return refused
        return graph.reread(out, art), {"fixed": fixed, "keep_batch": keep, "output_shapes": outputs,
                                        "check": check}


def _fix(g, art, example: dict, keep: bool) -> dict:
    """Write the example's sizes into the graph inputs' symbolic axes. A size name used for one size
    is replaced everywhere in the graph (onnxruntime's make_dim_param_fixed); a name used for axes of
    different sizes (paddle2onnx writes '?' for every unknown size) is no identity: those axes get their
    size at the input and the name is cleared elsewhere, for shape inference to redo."""
    from onnxruntime.tools.onnx_model_utils import iterate_graph_per_graph_func, make_dim_param_fixed

    by_name = {vi.name: vi for vi in g.input}
    plan, sizes = [], {}
    for spec in art.inputs:
        axes = _symbolic_axes(spec, keep)
        if not axes or spec.name not in example:
            continue
        size = [int(d) for d in np.shape(example[spec.name])]
        dims = by_name[spec.name].type.tensor_type.shape.dim
        if len(dims) != len(size):
            raise ValueError(f"input '{spec.name}' has rank {len(dims)}, the reference input {len(size)}")
        plan.append((spec.name, dims, size, axes))
        for i in axes:
            if dims[i].dim_param:
                sizes.setdefault(dims[i].dim_param, set()).add(size[i])
    if keep:   # a batch name shared with another axis must stay a name
        for _, dims, _, _ in plan:
            if dims and dims[0].dim_param in sizes:
                sizes[dims[0].dim_param].add(-1)
    ambiguous = {p for p, v in sizes.items() if len(v) > 1}
    fixed = {}
    for name, dims, size, axes in plan:
        for i in axes:
            param = dims[i].dim_param
            if param and param not in ambiguous:
                make_dim_param_fixed(g, param, size[i])
            else:
                dims[i].Clear()
                dims[i].dim_value = size[i]
        if keep and dims and not dims[0].dim_value and not dims[0].dim_param:
            dims[0].dim_param = "batch"
        fixed[name] = ["batch" if keep and i == 0 and i not in axes else d for i, d in enumerate(size)]
    if ambiguous:
        iterate_graph_per_graph_func(g, _clear_params, params=ambiguous)
    return fixed


def _clear_params(g, params):
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type"):
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param in params:
                    d.Clear()
