"""Target formats and the registry that maps each to its converter and quantizer modules.

Shared code dispatches through this registry instead of `if format == ...` chains: adding a
format is one converter file, one quantizer file and one line here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable

from .errors import ConversionError
from .specs import TensorSpec


class Format(str, Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    TORCHSCRIPT = "torchscript"


@dataclass
class Artifact:
    """A converted (and maybe quantized) model file with the I/O the device will see."""

    format: Format
    path: Path
    runtime: str                                   # agent runtime name (agent/runtimes.py)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str = "fp32"
    info: dict = field(default_factory=dict)       # conversion / quantization details for the manifest
    warnings: list[str] = field(default_factory=list)


# format -> (converter module, quantizer module); each exposes convert()/quantize().
REGISTRY: dict[Format, tuple[str, str]] = {
    Format.ONNX: ("packager.convert.onnx", "packager.quantize.onnx"),
    Format.TFLITE: ("packager.convert.tflite", "packager.quantize.tflite"),
    Format.TORCHSCRIPT: ("packager.convert.torchscript", "packager.quantize.torchscript"),
}

# The model's file name inside the bundle's model/ folder.
MODEL_FILE = {Format.ONNX: "model.onnx", Format.TFLITE: "model.tflite", Format.TORCHSCRIPT: "model.pt"}

ALTERNATIVE = {
    Format.ONNX: "TF-Lite (--format tflite) or TorchScript (--format torchscript)",
    Format.TFLITE: "ONNX: --profile x86-cpu, or --format onnx",
    Format.TORCHSCRIPT: "ONNX: --profile jetson (ONNX fp16 on TensorRT/CUDA), or --format onnx",
}


def _module(fmt: Format, which: int):
    entry = REGISTRY.get(fmt)
    if entry is None:
        raise ConversionError(f"target format '{fmt.value}' is not supported by this edgepack yet",
                              f"use {ALTERNATIVE.get(fmt, 'another format')}")
    return importlib.import_module(entry[which])


def alternative(fmt: Format) -> str:
    return ALTERNATIVE.get(fmt, "another format")


def int8_mode(fmt: Format, profile, art: Artifact) -> str:
    """Resolve the profile's int8 mode ('auto' included) for this format: 'dynamic' or 'static'."""
    module = _module(fmt, 1)
    resolve = getattr(module, "resolve_int8_mode", None)
    if resolve is not None:
        return resolve(profile, art)
    if fmt == Format.ONNX:
        return module.resolve_mode(profile["quantization"]["mode"], module.op_types(art.path))
    return profile["quantization"]["mode"]


def converter(fmt: Format) -> Callable:
    return _module(fmt, 0).convert


def quantizer(fmt: Format) -> Callable:
    return _module(fmt, 1).quantize
