"""What every format backend declares and does (Optimum-style: every backend the same layout).

A backend folder holds:
  __init__.py   the Backend subclass (facts: format, runtime, model file, options) + @register
  export.py     exporters: SourceKind -> Artifact (and converters from another format's Artifact)
  quantize.py   fp16 / int8 for this format, driven by a QuantPlan
  io.py         read a model file's inputs and outputs into an Artifact
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..errors import ConversionError
from . import Artifact, Format, SourceKind

if TYPE_CHECKING:
    import numpy as np

    from ..profiles import Profile
    from ..sources import SourceModel


@dataclass(frozen=True)
class BuildContext:
    """What every step and pass of one build sees (read-only)."""

    source: "SourceModel"
    profile: "Profile"
    workdir: Path
    example: dict[str, "np.ndarray"]   # reference input 0, in the source's layout
    layout: dict                       # input -> {"from", "to", "perm"}: the target's layout changes

    def folder(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class QuantPlan:
    """How to quantize, resolved once from the profile (and the model) before quantizing."""

    precision: str                      # fp32 | fp16 | int8
    mode: str | None = None             # int8: static | dynamic
    requested_mode: str | None = None   # what the profile asked for (auto, static, dynamic)
    per_channel: bool = True
    reduce_range: bool | str = False          # "auto" until packager/quant/recipes.py resolves it
    calibration_method: str = "minmax"        # "auto" until resolved
    calibration_samples: int = 32
    activation_type: str = "int8"             # int8 | uint8 (ONNX static: "auto" until resolved)
    op_types: tuple[str, ...] | None = None   # int8: the op types to quantize (None: every one the tool can)
    float_nodes: tuple[str, ...] = ()         # nodes left in float (the recovery's fallbacks)
    float_tail: int = 0                       # of them, the last this many ops of the graph (a CPU tail)
    float_head: int = 0                       # of them, a head: what computes a diverging tensor (quant/head.py)

    @property
    def needs_calibration(self) -> bool:
        return self.precision == "int8" and self.mode == "static"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


Exporter = Callable[[BuildContext], Artifact]
Converter = Callable[[BuildContext, Artifact], Artifact]


class Backend:
    format: ClassVar[Format]
    label: ClassVar[str]                      # "ONNX", "TF-Lite" ...
    runtime: ClassVar[str]                    # the agent runtime (agent/runtimes/)
    model_file: ClassVar[str]                 # the model's name inside the bundle's model/
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    options: ClassVar[type | None] = None     # dataclass: this format's profile section (key = format)
    needs_static_shapes: ClassVar[bool] = False   # its converters want every size fixed in the graph
    changes_layout: ClassVar[bool] = False        # honours the profile's `layout: NHWC` for NCHW inputs
    alternative: ClassVar[str] = "another format"  # what to suggest when this format cannot be made
    packages: ClassVar[tuple[str, ...]] = ()       # distributions whose versions the manifest records
    exporters: ClassVar[dict[SourceKind, Exporter]] = {}
    converters: ClassVar[dict[Format, Converter]] = {}   # from another format's artifact
    refusals: ClassVar[dict[SourceKind, tuple[str, str]]] = {}   # kind -> (why, fix)

    # -- routes
    def check_route(self, route) -> None:
        """Raise (with the fix) before any work when a tool the route needs is missing."""

    # -- profile
    def runtime_settings(self, profile: "Profile") -> dict:
        """The runtime settings the device agent gets (manifest runtime_settings)."""
        return profile.runtime.to_dict()

    def host_settings(self, settings: dict) -> dict:
        """The runtime settings for judging the model on the build host's CPU."""
        return {**settings, "providers": ["CPUExecutionProvider"]}

    def options_of(self, profile: "Profile") -> Any:
        return profile.format_options(self.format)

    # -- what a device needs
    def requirements(self, art: Artifact) -> dict:
        """What a device needs to load this artifact (manifest `needs.runtime`): the runtime,
        the package that installs it and, where the backend can tell from the model file, the
        oldest version that loads it (`min_version`) and why (`because`)."""
        return {"name": self.runtime, "package": self.runtime}

    # -- quantization
    def int8_mode(self, requested: str, art: Artifact) -> str:
        """static or dynamic for this artifact ('auto' resolved here, once per build)."""
        return "dynamic" if requested == "auto" else requested

    def quant_plan(self, profile: "Profile", art: Artifact) -> QuantPlan:
        q = profile.quantization
        precision = profile.precision
        if precision not in self.precisions:
            raise ConversionError(f"{self.label} cannot take precision '{precision}'",
                                  f"use one of {', '.join(self.precisions)}")
        mode = self.int8_mode(q.mode, art) if precision == "int8" else None
        return QuantPlan(precision=precision, mode=mode, requested_mode=q.mode if precision == "int8" else None,
                         per_channel=q.per_channel, reduce_range=q.reduce_range,
                         calibration_method=q.calibration_method, calibration_samples=q.calibration_samples)

    def quantize(self, art: Artifact, plan: QuantPlan, calibration: list[dict] | None, workdir: Path,
                 profile: "Profile") -> Artifact:
        if plan.precision == "fp32":
            return art
        raise ConversionError(f"{self.label} cannot take precision '{plan.precision}'", "use fp32")

    # -- tuning (edgepack tune): the int8 recipes to try and how a device's accelerators are ordered
    tune_recipes: ClassVar[tuple[tuple[str, dict], ...]] = ()   # (label, `quantization:` patch)
    order_setting: ClassVar[str] = "providers"   # the runtime setting an accelerator order overrides
    cpu_name: ClassVar[str] = "CPUExecutionProvider"   # what the CPU is called in that setting

    def accelerators(self, runtime_info: dict) -> list[str]:
        """The accelerators a target's facts list for this runtime (CPU and remote providers aside)."""
        present = runtime_info.get("providers") or runtime_info.get("devices") or []
        return [p for p in present if p != self.cpu_name and p != "AzureExecutionProvider"]

    def own_order(self, profile: "Profile") -> tuple[str, ...]:
        return tuple(getattr(profile.runtime, self.order_setting))

    def order_patch(self, order) -> dict:
        """The profile keys that pin an accelerator order."""
        return {"runtime": {self.order_setting: list(order)}}

    def recipes(self, plan: QuantPlan, art: Artifact, profile: "Profile") -> list[QuantPlan]:
        """The recipes to measure, in order (packager/quant/recover.py tries them)."""
        return [plan]

    def classifier_outputs(self, art: Artifact) -> set[str]:
        """Outputs that are classifier scores (a Softmax/LogSoftmax produces them): top-1 applies."""
        return set()

    def tensor_errors(self, reference: Artifact, candidate: Artifact, samples: list[dict],
                      workdir: Path) -> dict | None:
        """Per-tensor error of `candidate` against `reference` (packager/quant/tensors.py shape), or
        None where this format cannot match tensors by name."""
        return None

    # -- files
    def read(self, path: Path, precision: str, like: Artifact | None = None) -> Artifact:
        """The Artifact for a model file of this format (I/O read from the file)."""
        raise NotImplementedError

    def bundle_files(self, art: Artifact) -> dict[str, Path]:
        """Name inside model/ -> file: the model and its sidecars."""
        files = {self.model_file: art.path}
        for extra in art.sidecars:
            files[extra.name] = extra
        return files


def carry_io(new: Artifact, old: Artifact) -> Artifact:
    """Keep what the old artifact knew about its inputs (reference shapes, layout) and its order."""
    by_name = {s.name: s for s in old.inputs}
    order = {s.name: i for i, s in enumerate(old.inputs)}
    inputs = []
    for s in new.inputs:
        prev = by_name.get(s.name)
        if prev is not None:
            s = s.replace(example_shape=s.example_shape or prev.example_shape, layout=prev.layout or s.layout)
        inputs.append(s)
    inputs.sort(key=lambda s: order.get(s.name, len(order)))
    return new.replace(inputs=tuple(inputs),
                       warnings=old.warnings + tuple(w for w in new.warnings if w not in old.warnings))
