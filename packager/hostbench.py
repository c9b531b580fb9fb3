"""A quick, honest latency comparison on the build host (not a benchmark; see bench/)."""
from __future__ import annotations

import logging
import time

from agent import runtimes

from .formats import Artifact

log = logging.getLogger(__name__)


def median_ms(art: Artifact, feeds: dict, settings: dict, runs: int = 30, budget_s: float = 1.5) -> float | None:
    host = dict(settings, providers=["CPUExecutionProvider"])
    try:
        rt, _ = runtimes.load_timed(art.runtime, str(art.path), host)
    except Exception as exc:  # the artifact was already checked; this is only a measurement
        log.debug("host timing skipped: %s", exc)
        return None
    for _ in range(3):
        rt.run(feeds)
    times = []
    start = time.perf_counter()
    while len(times) < runs and time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        rt.run(feeds)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1000.0


def compare(float_art: Artifact, quant_art: Artifact, feeds: dict, settings: dict) -> dict | None:
    """Median single-inference latency of the float and the int8 model, interleaved twice."""
    if float_art.path == quant_art.path or not float_art.path.exists():
        return None
    f1 = median_ms(float_art, feeds, settings)
    q1 = median_ms(quant_art, feeds, settings)
    f2 = median_ms(float_art, feeds, settings)
    q2 = median_ms(quant_art, feeds, settings)
    if None in (f1, q1, f2, q2):
        return None
    fp32, int8 = min(f1, f2), min(q1, q2)
    return {"fp32_ms": fp32, "int8_ms": int8, "speedup": fp32 / int8 if int8 > 0 else 1.0,
            "where": "build host, CPUExecutionProvider"}
