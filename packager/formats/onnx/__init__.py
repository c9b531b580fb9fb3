"""ONNX: the hub format. onnxruntime runs it on the device (CPU, CUDA, TensorRT ...)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import Artifact, Format, SourceKind, register
from ..base import Backend, QuantPlan, carry_io
from . import export, io


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = field(default=17, metadata={"min": 7, "max": 23, "hint": "use an opset such as 17"})
    dynamic_batch: bool = True      # export a symbolic batch axis where the model allows it


@register
class OnnxBackend(Backend):
    format = Format.ONNX
    label = "ONNX"
    runtime = "onnxruntime"
    model_file = "model.onnx"
    options = OnnxOptions
    alternative = "TF-Lite (--format tflite) or TorchScript (--format torchscript)"
    packages = ("onnx", "onnxruntime", "onnxconverter-common")
    exporters = {
        SourceKind.ONNX: export.from_onnx,
        SourceKind.TORCH: export.from_torch,
        SourceKind.TORCHSCRIPT: export.from_torch,
        SourceKind.EXPORTED: export.from_torch,
        SourceKind.KERAS: export.from_tensorflow,
        SourceKind.SAVEDMODEL: export.from_tensorflow,
    }

    # edgepack tune's fixed recipes (one each, no search), beside the profile's own measured search.
    _ONE = {"max_attempts": 1, "max_fallbacks": 0}
    tune_recipes = (
        ("auto search (recipes + float fallback)", {"mode": "auto"}),
        ("static per-channel minmax", {"mode": "static", "per_channel": True, "calibration_method": "minmax",
                                       "op_types": "auto", **_ONE}),
        ("static per-channel minmax, Conv/MatMul/Gemm", {"mode": "static", "per_channel": True,
                                                         "calibration_method": "minmax",
                                                         "op_types": ["Conv", "MatMul", "Gemm"], **_ONE}),
        ("static per-tensor minmax", {"mode": "static", "per_channel": False, "calibration_method": "minmax", **_ONE}),
        ("static per-channel percentile", {"mode": "static", "per_channel": True,
                                           "calibration_method": "percentile", **_ONE}),
        ("dynamic per-channel", {"mode": "dynamic", "per_channel": True, **_ONE}),
        ("dynamic per-tensor", {"mode": "dynamic", "per_channel": False, **_ONE}),
    )

    def requirements(self, art: Artifact) -> dict:
        from . import needs

        return {**super().requirements(art), **needs.requirements(art.path)}

    def int8_mode(self, requested: str, art: Artifact) -> str:
        # Measured (docs/QUANTIZATION.md): static QDQ for conv nets (dynamic leaves convs float or
        # slow ConvInteger), dynamic for MatMul/Gemm models (a transformer ran 1.6x faster).
        if requested != "auto":
            return requested
        return "static" if io.op_types(art.path) & {"Conv", "ConvTranspose"} else "dynamic"

    def quantize(self, art: Artifact, plan: QuantPlan, calibration, workdir: Path, profile) -> Artifact:
        from . import quantize

        return quantize.run(art, plan, calibration, workdir)

    def recipes(self, plan: QuantPlan, art: Artifact, profile) -> list[QuantPlan]:
        from . import quantize

        return quantize.recipes(plan, art, profile.quantization)

    def classifier_outputs(self, art: Artifact) -> set[str]:
        from ...quant import onnx_tensors

        return onnx_tensors.softmax_outputs(art.path)

    def tensor_errors(self, reference: Artifact, candidate: Artifact, samples, workdir: Path):
        from ...quant import onnx_tensors
        from . import quantize

        pre = quantize.prepared_path(reference, workdir)   # the graph the int8 quantizer was given
        ref = pre if candidate.precision == "int8" and pre.is_file() else reference.path
        return onnx_tensors.compare(ref, candidate.path, samples, workdir, candidate.info.get("op_types"))

    def read(self, path: Path, precision: str, like: Artifact | None = None) -> Artifact:
        art = io.read(path, precision)
        return carry_io(art, like) if like is not None else art
