"""Graph passes: Artifact -> Artifact steps that prepare a graph for what comes next (Olive-style).

A pass subclasses `Pass`, which registers it by name when its module is imported (PASS_MODULES
lists them, in the order they run). Its options are a dataclass, validated from the profile's
`passes: {name: {...}}` section like every other profile key. Every pass has `enabled`:
`auto` (run when `wanted()` gives a reason), `true` (always, where its format applies) or `false`.
The pipeline calls `apply()` after each route step; what ran, why, with which options and how long
it took is recorded in the artifact's info (the manifest's conversion.passes).
"""
from __future__ import annotations

import importlib
import logging
import time
from typing import TYPE_CHECKING, ClassVar

from .. import typed
from ..formats import Artifact, Format

if TYPE_CHECKING:
    from ..formats.base import Backend, BuildContext

log = logging.getLogger(__name__)

PASS_MODULES = (
    "packager.passes.static_shapes",
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

    def run(self, ctx: "BuildContext", art: Artifact, opts) -> tuple[Artifact, dict]:
        """The new artifact and what the pass changed (recorded in the manifest)."""
        raise NotImplementedError


def all_passes() -> list[Pass]:
    for name in PASS_MODULES:
        importlib.import_module(name)
    return list(_PASSES.values())


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
        new, changed = p.run(ctx, art, opts)
        record = {"name": p.name, "format": art.format.value, "options": typed.to_dict(opts),
                  "why": reason or "enabled: true", "seconds": round(time.perf_counter() - t0, 3),
                  "changed": changed}
        records.append(record)
        art = new
    return art, records
