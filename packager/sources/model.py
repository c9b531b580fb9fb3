"""SourceModel: the original model as loaded, immutable (a new one via with_outputs)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..formats import SourceKind
from ..specs import TensorSpec


@dataclass(frozen=True)
class SourceModel:
    kind: SourceKind
    name: str                         # short name for the bundle
    ref: str                          # what the user passed
    sha256: str                       # hash of the source (file bytes, or code + weights)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    obj: Any                          # nn.Module / ScriptModule, or the absolute path of the file or folder
    runner: Callable[[dict], dict] = field(repr=False, default=None)
    example: dict | None = None       # example inputs the factory returned, if any
    notes: tuple[str, ...] = ()
    scalars: dict = field(default_factory=dict)   # forward() parameters TorchScript types int/float/bool
    state: tuple[str, ...] = ()       # attributes forward() assigns (state kept between calls)
    path: Path | None = None          # the source file, absolute (builds run with another cwd)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner(feeds)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def with_outputs(self, outputs: list[TensorSpec]) -> "SourceModel":
        return dataclasses.replace(self, outputs=tuple(outputs))
