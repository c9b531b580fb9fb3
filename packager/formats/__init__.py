"""Target formats, source kinds, the Artifact that flows between steps, and the backend registry.

One folder a backend (packager/formats/<name>/), each registering itself when imported. Shared code
asks the registry (`get(Format.ONNX)`, `all_backends()`) instead of branching on format strings.
Adding a format is a folder plus one line in BACKEND_MODULES (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConversionError
from ..specs import TensorSpec

if TYPE_CHECKING:
    from .base import Backend


class Format(str, Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    TORCHSCRIPT = "torchscript"
    OPENVINO = "openvino"


class SourceKind(str, Enum):
    """What the user handed `edgepack build` (packager/sources/)."""

    ONNX = "onnx"                 # model.onnx
    TORCH = "torch"               # a Python factory returning an nn.Module
    TORCHSCRIPT = "torchscript"   # a TorchScript archive (.pt, .jit, .torchscript, ...)
    EXPORTED = "exported"         # a torch.export ExportedProgram (.pt2)
    KERAS = "keras"               # model.keras
    SAVEDMODEL = "savedmodel"     # a TF SavedModel folder


@dataclass(frozen=True)
class Artifact:
    """A model file in one format with the I/O a runtime will see. Steps and passes return new ones."""

    format: Format
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str = "fp32"
    sidecars: tuple[Path, ...] = ()        # files the model needs beside it (OpenVINO's .bin)
    info: dict = field(default_factory=dict)   # what made it: tool, options, seconds (manifest)
    warnings: tuple[str, ...] = ()

    @property
    def runtime(self) -> str:
        return get(self.format).runtime

    def replace(self, **changes) -> "Artifact":
        return dataclasses.replace(self, **changes)

    def with_info(self, **info) -> "Artifact":
        return dataclasses.replace(self, info={**self.info, **info})

    def warn(self, *messages: str) -> "Artifact":
        return dataclasses.replace(self, warnings=self.warnings + tuple(m for m in messages if m not in self.warnings))


# The backends edgepack ships: each module registers its Backend when imported.
BACKEND_MODULES = (
    "packager.formats.onnx",
    "packager.formats.tflite",
    "packager.formats.torchscript",
    "packager.formats.openvino",
)

_REGISTRY: dict[Format, "Backend"] = {}


def register(backend_cls):
    """Class decorator: instantiate and register a Backend subclass under its format."""
    backend = backend_cls()
    _REGISTRY[backend.format] = backend
    return backend_cls


def _load_all() -> None:
    for name in BACKEND_MODULES:
        importlib.import_module(name)


def all_backends() -> list["Backend"]:
    _load_all()
    return [_REGISTRY[f] for f in Format if f in _REGISTRY]


def names() -> list[str]:
    return [b.format.value for b in all_backends()]


def get(fmt: Format | str) -> "Backend":
    _load_all()
    try:
        fmt = Format(fmt)
    except ValueError:
        raise ConversionError(f"unknown format '{fmt}'", f"use one of {', '.join(names())}") from None
    backend = _REGISTRY.get(fmt)
    if backend is None:
        raise ConversionError(f"target format '{fmt.value}' is not supported by this edgepack yet",
                              f"use one of {', '.join(names())}")
    return backend
