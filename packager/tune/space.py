"""The candidates `edgepack tune` tries: what to BUILD (format x precision x int8 recipe, each a
profile patch) and how to RUN each build (threads x execution-provider order), limited to what the
target can run (its `facts`: runtimes, versions, providers / delegates / devices present)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .. import formats, routes
from ..errors import ConversionError

@dataclass(frozen=True)
class Build:
    """One bundle to build: a format, a precision and (int8) a recipe, as a profile patch."""

    format: str
    precision: str
    recipe: str = ""                      # int8 recipe label; "" for fp32/fp16
    patch: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.format} {self.precision}" + (f" {self.recipe}" if self.recipe else "")


@dataclass(frozen=True)
class Run:
    """How to run one bundle: a thread count and an ordered accelerator list (the agent's overrides)."""

    threads: int
    order: tuple[str, ...]               # the backend's order_setting: providers, delegates or devices
    key: str                             # the runtime setting `order` overrides

    def agent_args(self) -> list[str]:
        return ["--threads", str(self.threads), f"--{self.key}", ",".join(self.order)]

    @property
    def label(self) -> str:
        return f"{self.threads or 'default'} threads, {'>'.join(self.order) or 'no delegate'}"


PROFILE = "the profile's own"


def builds(profile, source_kind, available: dict, formats_wanted=None, precisions_wanted=None) -> list[Build]:
    """The profile's own build first (the baseline), then every (format, precision, recipe) the
    source can reach and the target can run."""
    out = []
    own = formats.get(profile.format)
    if own.runtime in available and (not formats_wanted or profile.format in formats_wanted):
        out.append(Build(profile.format, profile.precision, PROFILE, {}))
    for backend in formats.all_backends():
        fmt = backend.format.value
        if formats_wanted and fmt not in formats_wanted:
            continue
        if backend.runtime not in available:
            continue
        try:
            routes.plan(source_kind, backend.format)
        except ConversionError:
            continue
        for precision in backend.precisions:
            if precisions_wanted and precision not in precisions_wanted:
                continue
            patch = {"format": fmt, "precision": precision}
            if precision != "int8":
                out.append(Build(fmt, precision, "", patch))
                continue
            for label, q in backend.tune_recipes or (("auto", {"mode": "auto"}),):
                out.append(Build(fmt, precision, label, {**patch, "quantization": q}))
    return out


def own_run(backend, profile) -> Run:
    """The profile's own run settings: its threads and its accelerator order."""
    return Run(profile.runtime.threads, backend.own_order(profile), backend.order_setting)


def runs(backend, available: dict, cpu_count: int, profile, threads_wanted=None) -> list[Run]:
    """Thread counts x accelerator orders (each accelerator alone before the CPU, all of them, the
    CPU alone); for the profile's own format, its own run settings first (the baseline)."""
    cpus = max(1, int(cpu_count or 1))
    threads = sorted(set(threads_wanted or [t for t in (1, 2, 4, 8, cpus) if t <= cpus]))
    accel = backend.accelerators(available.get(backend.runtime) or {})
    cpu = backend.cpu_name
    orders = [(a, cpu) for a in accel] + ([tuple(accel) + (cpu,)] if len(accel) > 1 else []) + [(cpu,)]
    grid = [Run(t, o, backend.order_setting) for t, o in itertools.product(threads, dict.fromkeys(orders))]
    if backend.format.value != profile.format:
        return grid
    own = own_run(backend, profile)
    return [own] + [r for r in grid if r != own]
