"""Graph passes: Artifact -> Artifact steps that prepare a graph for what comes next (Olive-style).

A pass subclasses `Pass`, which registers it by name when its module is imported (PASS_MODULES
lists them, in the order they run). Its options are a dataclass, validated from the profile's
`passes: {name: {...}}` section like every other profile key. Every pass has `enabled`:
`auto` (run when `wanted()` gives a reason), `true` (always, where its format applies) or `false`.
The pipeline calls `apply()` after each route step; what ran, why, with which options, what it
changed and how long it took is recorded in the manifest's conversion.passes. A pass that cannot
improve the graph returns it unchanged with a warning (recorded as `kept`), never a half-made one.

Passes run with the build's temp folder as the working directory: onnxruntime's tools write
`sym_shape_infer_temp.onnx` (and uuid-named `.data` files) into the current directory.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
from typing import TYPE_CHECKING, ClassVar

from .. import typed
from ..formats import Artifact, Format

if TYPE_CHECKING:
    from ..formats.base import Backend, BuildContext

log = logging.getLogger(__name__)

# The order they run in: a scalar that steers an If bound first (the If folds before anything reads
# its branches' stale shapes), then sizes (the simplifier folds shape arithmetic only once sizes are
# fixed), the opset before simplifying (the converter's new Constant inputs get folded), rewrites
# before simplifying too (onnxslim folds their constant Mul/Add into the Conv before them), the
# bias fold, the scalar operands and the depthwise strides after it (onnxslim has made them
# initializers), shape inference last (on the graph the next step gets).
PASS_MODULES = (
    "packager.passes.bind_inputs",
    "packager.passes.static_shapes",
    "packager.passes.opset",
    "packager.passes.hard_sigmoid",
    "packager.passes.simplify",
    "packager.passes.conv_bias",
    "packager.passes.scalar_operands",
    "packager.passes.depthwise_strides",
    "packager.passes.shape_inference",
)

_PASSES: dict[str, "Pass"] = {}


class Pass:
    name: ClassVar[str]
    formats: ClassVar[tuple[Format, ...]]     # the artifact formats it works on
    Options: ClassVar[type]                   # dataclass; must have `enabled`
    summary: ClassVar[str] = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if getattr(cls, "name", None):
            _PASSES[cls.name] = cls()

    def wanted(self, ctx: "BuildContext", art: Artifact, opts, next_backend: "Backend | None") -> str | None:
        """Why this pass should run here (None: no reason; `enabled: auto` then skips it)."""
        return None

    def run(self, ctx: "BuildContext", art: Artifact, opts, next_backend: "Backend | None" = None) -> tuple[Artifact, dict]:
        """The new artifact and what the pass changed (recorded in the manifest)."""
        raise NotImplementedError


def all_passes() -> list[Pass]:
    for name in PASS_MODULES:
        importlib.import_module(name)
    return [_PASSES[n] for n in sorted(_PASSES, key=_order)]


def _order(name: str) -> int:
    mods = [m.rsplit(".", 1)[1].replace("_", "-") for m in PASS_MODULES]
    return mods.index(name) if name in mods else len(mods)


def is_bundle(ctx: "BuildContext", art: Artifact, next_backend: "Backend | None") -> bool:
    """The artifact is what the bundle ships (no converter follows)."""
    return next_backend is None and art.format.value == ctx.profile.format


def quantized_here(ctx: "BuildContext", art: Artifact, next_backend: "Backend | None") -> bool:
    """This artifact goes to int8 quantization next (ORT's quantizer for an ONNX bundle)."""
    return is_bundle(ctx, art, next_backend) and ctx.profile.precision == "int8"


def int8_tflite_next(ctx: "BuildContext", next_backend: "Backend | None") -> bool:
    """onnx2tf comes next and its TF-Lite goes to int8 quantization (ai-edge-quantizer)."""
    return next_backend is not None and next_backend.format == Format.TFLITE and ctx.profile.precision == "int8"


@contextlib.contextmanager
def working_dir(path):
    """Run with `path` as the current directory (restored on every exit path)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def apply(ctx: "BuildContext", art: Artifact, next_backend: "Backend | None") -> tuple[Artifact, list[dict]]:
    """Run the profile's passes that apply to `art`, in order; `next_backend` is the next step's
    target (None after the last step). Returns the new artifact and a record per pass that ran."""
    records = []
    for p in all_passes():
        if art.format not in p.formats:
            continue
        opts = ctx.profile.pass_options(p.name)
        if opts.enabled is False:
            continue
        reason = p.wanted(ctx, art, opts, next_backend)
        if opts.enabled == "auto" and not reason:
            continue
        log.info("pass %s on the %s graph%s", p.name, art.format.value, f" ({reason})" if reason else "")
        t0 = time.perf_counter()
        with working_dir(ctx.folder("passes")):
            new, changed = p.run(ctx, art, opts, next_backend)
        record = {"name": p.name, "format": art.format.value, "options": typed.to_dict(opts),
                  "why": reason or "enabled: true", "seconds": round(time.perf_counter() - t0, 3),
                  "changed": changed}
        records.append(record)
        art = new
    return art, records
