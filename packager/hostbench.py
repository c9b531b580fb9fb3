"""A quick, honest latency comparison on the build host (not a benchmark; see bench/).

The float model is loaded once (the int8 one comes from host parity), then the models are timed
in alternation (int8, float, int8, float; with the fully quantized recipe as a third when nodes
were left in float), each round time-boxed, so the check costs about a second even for larger models.
"""
from __future__ import annotations

import logging
import time

from .errors import ConversionError
from .formats import Artifact
from .parity import load_on_host

log = logging.getLogger(__name__)

RUNS = 20        # runs a round at most (each round is also time-boxed)


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


def time_all(rts: list, feeds: dict, runs: int = RUNS, budget_s: float = 0.15) -> list[float]:
    """Median single-inference ms of loaded runtimes, timed in alternation (best of two rounds)."""
    for rt in rts:  # warm-up
        rt.run(feeds)
        rt.run(feeds)
    rounds = [[_median_ms(rt, feeds, runs, budget_s) for rt in rts] for _ in range(2)]
    return [min(r[i] for r in rounds) for i in range(len(rts))]


def timings(float_art: Artifact | None, chosen: Artifact, chosen_rt, feeds: dict, settings: dict,
            full: Artifact | None = None, full_rt=None) -> dict:
    """One timing session for what a build reports about speed, the chosen model timed once for both:
    `host_latency`, int8 against the float model (float_art given), and `fallback_cost`, what leaving
    nodes in float costs against the same recipe with every node quantized (full given: latency on
    this host, file size). chosen_rt: the chosen model's runtime, already loaded by host parity."""
    named = {}
    if float_art is not None and float_art.path != chosen.path and float_art.path.exists():
        named["fp32"] = _load(float_art, settings)
    if full is not None:
        named["full"] = full_rt or _load(full, settings)
    named = {k: rt for k, rt in named.items() if rt is not None}
    if chosen_rt is None or not named:
        return {}
    try:
        ms = dict(zip(["chosen", *named], time_all([chosen_rt, *named.values()], feeds)))
    except Exception as exc:  # noqa: BLE001 - a measurement, not a check
        log.debug("host timing skipped: %s", exc)
        return {}
    out = {}
    if "fp32" in ms:
        out["host_latency"] = {"fp32_ms": ms["fp32"], "int8_ms": ms["chosen"],
                               "speedup": ms["fp32"] / ms["chosen"] if ms["chosen"] > 0 else 1.0,
                               "where": "build host, CPU", "runs_per_round": RUNS}
    if "full" in ms:
        full_b, chosen_b = _size(full), _size(chosen)
        out["fallback_cost"] = {"full_int8_ms": ms["full"], "with_fallbacks_ms": ms["chosen"],
                                "latency_ratio": ms["chosen"] / ms["full"] if ms["full"] > 0 else 1.0,
                                "full_int8_bytes": full_b, "with_fallbacks_bytes": chosen_b,
                                "extra_bytes": chosen_b - full_b, "where": "build host, CPU"}
    return out


def _size(art: Artifact) -> int:
    return art.path.stat().st_size + sum(p.stat().st_size for p in art.sidecars if p.exists())
