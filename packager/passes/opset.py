"""opset: upgrade an ONNX graph's opset where a later step needs a newer one (onnx.version_converter).

Measured on the zoo (bench/zoo_prep.md): paddle2onnx exports opset 11/12, where per-channel int8 QDQ
writes `DequantizeLinear(axis=...)`, an attribute opset 13 introduced: onnxruntime then refuses the
quantized model ("Unrecognized attribute: axis"). So int8 quantization of an ONNX bundle asks for
`int8_min_opset` (13); a profile can ask for more (`min_opset`), and a backend can declare its own
minimum (`min_opset` on the Backend class). The upgraded graph must give the same outputs on the
reference input in onnxruntime, or it is not used (warning; the graph is kept as it was).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from ..errors import short
from ..formats import Format
from . import Pass, graph, quantized_here


@dataclass(frozen=True)
class OpsetOptions(graph.Tolerance):
    enabled: Union[Literal["auto"], bool] = "auto"
    min_opset: Optional[int] = field(default=None, metadata={"min": 7, "max": 23,
                                                            "hint": "an opset such as 13, or null"})
    int8_min_opset: int = field(default=13, metadata={"min": 7, "max": 23})   # per-channel QDQ (axis)


class Opset(Pass):
    name = "opset"
    formats = (Format.ONNX,)
    Options = OpsetOptions
    summary = "upgrade the ONNX opset to the minimum a later step needs (onnx.version_converter)"

    def target(self, ctx, art, opts, next_backend) -> tuple[int, str]:
        needs = []
        if opts.min_opset:
            needs.append((opts.min_opset, "the profile's min_opset"))
        if quantized_here(ctx, art, next_backend):
            needs.append((opts.int8_min_opset, "int8 quantization (per-channel QDQ needs DequantizeLinear's axis)"))
        declared = getattr(next_backend, "min_opset", None) if next_backend is not None else None
        if declared:
            needs.append((int(declared), f"{next_backend.label}"))
        return max(needs) if needs else (0, "")

    def wanted(self, ctx, art, opts, next_backend):
        want, why = self.target(ctx, art, opts, next_backend)
        have = art.info.get("opset") or 0
        if have and want > have:
            return f"opset {have} < {want}, which {why} needs"
        return None

    def run(self, ctx, art, opts, next_backend=None):
        from onnx import version_converter

        want, _ = self.target(ctx, art, opts, next_backend)
        want = want or opts.min_opset or opts.int8_min_opset
        model = graph.load(art.path)
        have = graph.opset(model)
        if have >= want:
            return art, {"opset": have, "kept": f"already at opset {have}"}
        try:
            new = version_converter.convert_version(model, want)
        except Exception as exc:
            return graph.kept(art, "opset", f"onnx.version_converter cannot take opset {have} to {want}: "
                              f"{short(exc, 200)}")
        out = graph.save(new, ctx, art, f"opset{want}")
        refused, check = graph.checked(ctx, art, out, opts, "opset", f"opset {want}")
        if refused and check.get("checked"):     # unchecked (onnxruntime cannot run the original): kept
            return refused
        return graph.reread(out, art), {"opset": [have, want], "check": check}
