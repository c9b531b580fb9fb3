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

    tune_recipes = (
        ("static per-channel minmax", {"mode": "static", "per_channel": True, "calibration_method": "minmax"}),
        ("static per-tensor minmax", {"mode": "static", "per_channel": False, "calibration_method": "minmax"}),
        ("static per-channel percentile", {"mode": "static", "per_channel": True, "calibration_method": "percentile"}),
        ("dynamic per-channel", {"mode": "dynamic", "per_channel": True}),
        ("dynamic per-tensor", {"mode": "dynamic", "per_channel": False}),
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

    def read(self, path: Path, precision: str, like: Artifact | None = None) -> Artifact:
        art = io.read(path, precision)
        return carry_io(art, like) if like is not None else art
