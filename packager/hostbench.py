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


def compare(float_art: Artifact, quant_art: Artifact, q_rt, feeds: dict, settings: dict,
            runs: int = 20, budget_s: float = 0.15) -> dict | None:
    """Median single-inference latency of the float and the int8 model (best of two rounds).
    q_rt: the int8 model's runtime, already loaded by host parity."""
    if float_art.path == quant_art.path or not float_art.path.exists():
        return None
    f_rt = _load(float_art, settings)
    if f_rt is None or q_rt is None:
        return None
    for rt in (f_rt, q_rt):  # warm-up
        rt.run(feeds)
        rt.run(feeds)
    f = [_median_ms(f_rt, feeds, runs, budget_s)]
    q = [_median_ms(q_rt, feeds, runs, budget_s)]
    f.append(_median_ms(f_rt, feeds, runs, budget_s))
    q.append(_median_ms(q_rt, feeds, runs, budget_s))
    fp32, int8 = min(f), min(q)
    return {"fp32_ms": fp32, "int8_ms": int8, "speedup": fp32 / int8 if int8 > 0 else 1.0,
            "where": "build host, CPU", "runs_per_round": runs}
