"""TF-Lite (LiteRT): the format of phones, Raspberry Pis and the Coral Edge TPU."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from .. import Artifact, Format, SourceKind, register
from ..base import Backend, QuantPlan, carry_io
from . import export, io, onnx2tf


@dataclass(frozen=True)
class TfliteOptions:
    io_dtype: Optional[Literal["float32", "int8", "uint8"]] = None   # full int8: the I/O type it must have
    edgetpu_compile: bool = False    # check every op is integer (edgetpu_compiler itself is a separate step)


@register
class TfliteBackend(Backend):
    format = Format.TFLITE
    label = "TF-Lite"
    runtime = "litert"
    model_file = "model.tflite"
    options = TfliteOptions
    needs_static_shapes = True     # onnx2tf: a symbolic batch stays -1 in the signature
    changes_layout = True          # honours `layout: NHWC` (litert-torch wrapper, onnx2tf)
    alternative = "ONNX: --profile x86-cpu, or --format onnx"
    packages = ("litert-torch", "ai-edge-quantizer", "ai-edge-litert")
    exporters = {
        SourceKind.TORCH: export.from_torch,
        SourceKind.EXPORTED: export.from_torch,
        SourceKind.KERAS: export.from_savedmodel,
        SourceKind.SAVEDMODEL: export.from_savedmodel,
    }
    # ONNX sources, and TorchScript (no torch.export graph for litert-torch) through its ONNX export.
    converters = {Format.ONNX: onnx2tf.convert}

    tune_recipes = (("static (full int8)", {"mode": "static"}), ("dynamic", {"mode": "dynamic"}))
    order_setting = "delegates"
    cpu_name = "xnnpack"        # LiteRT's CPU path

    def accelerators(self, runtime_info: dict) -> list[str]:
        return [d for d in runtime_info.get("delegates") or [] if d != self.cpu_name]

    def check_route(self, route) -> None:
        if any(not s.exports and s.source == Format.ONNX.value for s in route.steps):
            onnx2tf.require()    # before spending time on the export

    def int8_mode(self, requested: str, art: Artifact) -> str:
        if requested != "auto":
            return requested
        return "static" if any(len(s.shape) == 4 for s in art.inputs) else "dynamic"

    def quantize(self, art: Artifact, plan: QuantPlan, calibration, workdir: Path, profile) -> Artifact:
        from . import quantize

        return quantize.run(art, plan, calibration, workdir, self.options_of(profile))

    def requirements(self, art: Artifact) -> dict:
        # The converter records the oldest TensorFlow Lite runtime that has every op version
        # the model uses (metadata `min_runtime_version`, from its op-version table).
        from . import needs

        need = needs.min_runtime_version(art.path)
        out = {**super().requirements(art), "package": "ai-edge-litert"}
        if need:
            out.update(because=f"TF-Lite op versions that need TensorFlow Lite {need}",
                       min_version_by={"tflite-runtime": need, "tensorflow": need,
                                       "tensorflow-cpu": need}, min_runtime_version=need)
        return out

    def recipes(self, plan: QuantPlan, art: Artifact, profile) -> list[QuantPlan]:
        from . import quantize

        return quantize.recipes(plan)

    def classifier_outputs(self, art: Artifact) -> set[str]:
        from ...quant import tflite_tensors

        return tflite_tensors.softmax_outputs(art.path)

    def tensor_errors(self, reference: Artifact, candidate: Artifact, samples, workdir: Path):
        from ...quant import tflite_tensors

        return tflite_tensors.compare(reference.path, candidate.path, samples, workdir)

    def read(self, path: Path, precision: str, like: Artifact | None = None) -> Artifact:
        art = io.read(path, precision, [s.name for s in like.inputs] if like else None)
        return carry_io(art, like) if like is not None else art
