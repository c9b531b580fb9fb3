"""Routes as data: plan(source kind, target format) -> the steps that get there.

Backends declare their edges: `exporters` (SourceKind -> their format) and `converters` (another
format's Artifact -> their format), plus `refusals` (a source kind they will not take, with why and
the fix). A route is the shortest chain of those edges, e.g. TorchScript -> ONNX -> TF-Lite
(TorchScript has no torch.export graph for litert-torch, so it goes through ONNX and onnx2tf).
`edgepack build` runs the steps in order, with the profile's graph passes after each one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import formats
from .errors import ConversionError
from .formats import Format, SourceKind


@dataclass(frozen=True)
class Step:
    target: Format                    # the format this step produces
    source: str                       # a SourceKind value (export) or a Format value (convert)
    run: Callable                     # export(ctx) or convert(ctx, artifact)
    exports: bool                     # True: from the source model; False: from the previous artifact

    def describe(self) -> dict:
        return {"from": self.source, "to": self.target.value, "kind": "export" if self.exports else "convert"}


@dataclass(frozen=True)
class Route:
    kind: SourceKind
    target: Format
    steps: tuple[Step, ...]

    def describe(self) -> list[dict]:
        return [s.describe() for s in self.steps]

    def __str__(self) -> str:
        return " -> ".join([self.kind.value] + [s.target.value for s in self.steps])


def plan(kind: SourceKind, target: Format) -> Route:
    """The route from a source of `kind` to `target`; a ConversionError with the fix if none."""
    backend = formats.get(target)
    if kind in backend.refusals:
        why, fix = backend.refusals[kind]
        raise ConversionError(why, fix)
    if kind in backend.exporters:
        return Route(kind, target, (Step(target, kind.value, backend.exporters[kind], True),))
    for via in formats.all_backends():       # one intermediate format, in registry order (ONNX first)
        if via.format == target or kind not in via.exporters or via.format not in backend.converters:
            continue
        return Route(kind, target, (Step(via.format, kind.value, via.exporters[kind], True),
                                    Step(target, via.format.value, backend.converters[via.format], False)))
    raise ConversionError(f"no route from a {kind.value} source to {backend.label}",
                          f"use {backend.alternative}")


def table() -> list[tuple[str, str, str]]:
    """(source kind, format, route or refusal) for every pair: the docs' route table."""
    rows = []
    for kind in SourceKind:
        for b in formats.all_backends():
            try:
                rows.append((kind.value, b.format.value, str(plan(kind, b.format))))
            except ConversionError as exc:
                rows.append((kind.value, b.format.value, "refused: " + exc.message))
    return rows
