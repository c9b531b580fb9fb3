"""A quick, honest latency comparison on the build host (not a benchmark; see bench/).

The float model is loaded once (the int8 one comes from host parity), then both are timed in
alternation (float, int8, float, int8), each round time-boxed, so the check costs well under a
second even for larger models.
"""
from __future__ import annotations

import logging
import time

from .errors import ConversionError
from .formats import Artifact
from .parity import load_on_host

log = logging.getLogger(__name__)


def _load(art: Artifact, settings: dict):
    try:
        return load_on_host(art, settings)
    except ConversionError as exc:  # the artifact was already checked; this is only a measurement
        log.debug("host timing skipped: %s", exc)
        return None


def _median_ms(rt, feeds: dict, runs: int, budget_s: float) -> float:
    times = []
    start = time.perf_counter()
    while len(times) < runs and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        rt.run(feeds)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1000.0


def time_pair(rt_a, rt_b, feeds: dict, runs: int = 20, budget_s: float = 0.15) -> tuple[float, float]:
    """Median single-inference ms of two loaded runtimes, timed in alternation (best of two rounds)."""
    for rt in (rt_a, rt_b):  # warm-up
        rt.run(feeds)
        rt.run(feeds)
    a = [_median_ms(rt_a, feeds, runs, budget_s)]
    b = [_median_ms(rt_b, feeds, runs, budget_s)]
    a.append(_median_ms(rt_a, feeds, runs, budget_s))
    b.append(_median_ms(rt_b, feeds, runs, budget_s))
    return min(a), min(b)


def compare(float_art: Artifact, quant_art: Artifact, q_rt, feeds: dict, settings: dict,
            runs: int = 20, budget_s: float = 0.15) -> dict | None:
    """Median single-inference latency of the float and the int8 model (best of two rounds).
    q_rt: the int8 model's runtime, already loaded by host parity."""
    if float_art.path == quant_art.path or not float_art.path.exists():
        return None
    f_rt = _load(float_art, settings)
    if f_rt is None or q_rt is None:
        return None
    fp32, int8 = time_pair(f_rt, q_rt, feeds, runs, budget_s)
    return {"fp32_ms": fp32, "int8_ms": int8, "speedup": fp32 / int8 if int8 > 0 else 1.0,
            "where": "build host, CPU", "runs_per_round": runs}


def fallback_cost(full: Artifact, full_rt, chosen: Artifact, chosen_rt, feeds: dict, settings: dict) -> dict | None:
    """What leaving nodes in float costs: the chosen model against the same recipe with every node
    quantized (latency on this host, file size)."""
    full_rt = full_rt or _load(full, settings)
    if full_rt is None or chosen_rt is None:
        return None
    full_ms, chosen_ms = time_pair(full_rt, chosen_rt, feeds)
    full_b, chosen_b = _size(full), _size(chosen)
    return {"full_int8_ms": full_ms, "with_fallbacks_ms": chosen_ms,
            "latency_ratio": chosen_ms / full_ms if full_ms > 0 else 1.0,
            "full_int8_bytes": full_b, "with_fallbacks_bytes": chosen_b, "extra_bytes": chosen_b - full_b,
            "where": "build host, CPU"}


def _size(art: Artifact) -> int:
    return art.path.stat().st_size + sum(p.stat().st_size for p in art.sidecars if p.exists())
