"""TorchScript: PyTorch's serialized programs, run by torch itself (CUDA fp16 on Jetson, CPU elsewhere)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ...errors import ConversionError
from .. import Artifact, Format, SourceKind, register
from ..base import Backend, QuantPlan
from . import export, io


@dataclass(frozen=True)
class TorchscriptOptions:
    mode: Literal["auto", "trace", "script"] = "auto"   # auto: trace, checked; script when the trace is unsafe


_TF = ("TorchScript is PyTorch-only", "use --format tflite (TFLiteConverter) or --format onnx (tf2onnx)")


@register
class TorchscriptBackend(Backend):
    format = Format.TORCHSCRIPT
    label = "TorchScript"
    runtime = "torch"
    model_file = "model.pt"
    options = TorchscriptOptions
    alternative = "ONNX: --profile jetson (ONNX fp16 on TensorRT/CUDA), or --format onnx"
    packages = ("torch",)
    exporters = {
        SourceKind.TORCH: export.from_module,
        SourceKind.EXPORTED: export.from_module,
        SourceKind.TORCHSCRIPT: export.as_given,
    }
    refusals = {
        SourceKind.KERAS: (f"a keras model cannot become TorchScript ({_TF[0]})", _TF[1]),
        SourceKind.SAVEDMODEL: (f"a savedmodel model cannot become TorchScript ({_TF[0]})", _TF[1]),
        SourceKind.ONNX: ("ONNX -> TorchScript has no sound route in edgepack (onnx2torch needs a "
                          "torchvision that breaks the CPU torch build)",
                          "build from the PyTorch factory or .pt2 with --format torchscript, or keep --format onnx"),
    }

    tune_recipes = (("dynamic", {"mode": "dynamic"}),)
    cpu_name = "cpu"

    def accelerators(self, runtime_info: dict) -> list[str]:
        return ["cuda"] if runtime_info.get("cuda") else []

    def int8_mode(self, requested: str, art: Artifact) -> str:
        if requested == "static":
            raise ConversionError("TorchScript int8 is dynamic only here (int8 Linear/LSTM weights); static "
                                  "int8 needs a different toolchain",
                                  "use --precision int8-dynamic, or --format onnx --precision int8-static, "
                                  "or --format tflite --precision int8-static")
        return "dynamic"

    def quantize(self, art: Artifact, plan: QuantPlan, calibration, workdir: Path, profile) -> Artifact:
        from . import quantize

        return quantize.run(art, plan, workdir)

    def requirements(self, art: Artifact) -> dict:
        # A TorchScript archive loads in the torch that wrote it and newer ones (an older torch
        # refuses a newer file format): the build's torch release is the minimum.
        from importlib import metadata

        built = metadata.version("torch").split("+")[0]
        release = ".".join(built.split(".")[:2])
        return {**super().requirements(art), "min_version": release,
                "because": f"a TorchScript file written by torch {built}"}

    def read(self, path: Path, precision: str, like: Artifact | None = None) -> Artifact:
        return io.read(path, precision, like)
