"""static-shapes: write the reference input sizes into an ONNX graph (onnxruntime's own tools).

Converters such as onnx2tf want every size fixed in the graph (with a symbolic batch they leave -1
in the TF-Lite signature); `keep_batch` fixes every other symbolic dim and leaves axis 0 symbolic,
for targets that keep a dynamic batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from ..errors import ConversionError, short
from ..formats import Format
from . import Pass


@dataclass(frozen=True)
class StaticShapesOptions:
    enabled: Union[Literal["auto"], bool] = "auto"
    keep_batch: bool = False        # leave a symbolic axis 0 symbolic


class StaticShapes(Pass):
    name = "static-shapes"
    formats = (Format.ONNX,)
    Options = StaticShapesOptions
    summary = "fix symbolic input sizes to the reference inputs' sizes (and infer the outputs')"

    def wanted(self, ctx, art, opts, next_backend):
        symbolic = [s.name for s in art.inputs if not s.is_static]
        if not symbolic:
            return None
        if next_backend is not None and next_backend.needs_static_shapes:
            return f"{next_backend.label} needs fixed sizes; symbolic: {', '.join(symbolic)}"
        return None

    def run(self, ctx, art, opts):
        import onnx
        from onnxruntime.tools.onnx_model_utils import (fix_output_shapes, make_dim_param_fixed,
                                                        make_input_shape_fixed)

        model = onnx.load(str(art.path))
        fixed = {}
        try:
            for spec in art.inputs:
                shape = list(ctx.example[spec.name].shape)
                if spec.is_static:
                    continue
                if opts.keep_batch:
                    for i, d in enumerate(spec.shape):
                        if i > 0 and isinstance(d, str):
                            make_dim_param_fixed(model.graph, d, shape[i])
                else:
                    make_input_shape_fixed(model.graph, spec.name, shape)
                fixed[spec.name] = shape
            fix_output_shapes(model)
        except Exception as exc:  # a rank or size that disagrees with the reference inputs
            raise ConversionError(f"fixing the ONNX graph's input sizes failed: {short(exc)}",
                                  "check --input-shape against the model's inputs") from exc
        out = ctx.folder("passes") / f"{art.path.stem}.static.onnx"
        onnx.save_model(model, str(out))
        from ..formats import get

        return get(Format.ONNX).read(out, art.precision, like=art), {"fixed": fixed}
