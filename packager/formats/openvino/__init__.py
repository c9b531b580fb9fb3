"""OpenVINO IR (model.xml + model.bin): Intel CPUs, integrated GPUs and NPUs, run by `openvino`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import Artifact, Format, register
from ..base import Backend, QuantPlan, carry_io
from . import export, io


@dataclass(frozen=True)
class OpenvinoOptions:
    devices: tuple[str, ...] = ("CPU",)          # tried in order on the device; the CPU ends the chain
    performance_hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] = "LATENCY"
    inference_precision: Literal["f32", "f16", "bf16", "default"] = "f32"   # f32: what parity checked


@register
class OpenvinoBackend(Backend):
    format = Format.OPENVINO
    label = "OpenVINO IR"
    runtime = "openvino"
    model_file = "model.xml"
    precisions = ("fp32", "fp16")
    # convert_model needs known ranks inside (inlined) If branches: silero-vad failed at a Conv whose
    # input rank was unknown until the sizes were fixed and the graph simplified. Fixed sizes also
    # let the CPU plugin pick its kernels once.
    needs_static_shapes = True
    options = OpenvinoOptions
    alternative = "ONNX: --profile x86-cpu (onnxruntime), or --format onnx"
    packages = ("openvino",)
    # Every source goes through its ONNX artifact (an ONNX file as given), so the graph passes run
    # before convert_model (bind-inputs folds an If that openvino cannot convert) and names are kept.
    converters = {Format.ONNX: export.from_onnx}

    def runtime_settings(self, profile) -> dict:
        opts = self.options_of(profile)
        return {"devices": list(opts.devices), "threads": profile.runtime.threads,
                "performance_hint": opts.performance_hint, "inference_precision": opts.inference_precision}

    order_setting = "devices"
    cpu_name = "CPU"

    def own_order(self, profile) -> tuple[str, ...]:
        return tuple(self.options_of(profile).devices)

    def order_patch(self, order) -> dict:
        return {"openvino": {"devices": list(order)}}

    def host_settings(self, settings: dict) -> dict:
        return {**settings, "devices": ["CPU"]}

    def quantize(self, art: Artifact, plan: QuantPlan, calibration, workdir: Path, profile) -> Artifact:
        if plan.precision == "fp32":
            return art
        return export.compress_fp16(art, workdir)

    def requirements(self, art: Artifact) -> dict:
        # The IR names the opsets of the OpenVINO that wrote it; an older runtime may lack
        # them, so the build's release (year.release) is the minimum (conservative).
        from importlib import metadata

        built = metadata.version("openvino")
        release = ".".join(built.split(".")[:2])
        return {**super().requirements(art), "min_version": release,
                "because": f"an IR written by openvino {built}"}

    def read(self, path: Path, precision: str, like: Artifact | None = None) -> Artifact:
        art = io.read(path, precision)
        return carry_io(art, like) if like is not None else art

    def bundle_files(self, art: Artifact) -> dict[str, Path]:
        return {"model.xml": art.path, "model.bin": art.path.with_suffix(".bin")}
