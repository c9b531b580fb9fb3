"""The latency probe (agent/probe.py)."""
from __future__ import annotations

import numpy as np


def test_probe_counts_and_time():
    from agent import probe

    calls = []
    res = probe.probe(lambda f: calls.append(1), {}, {"warmup_runs": 3, "warmup_seconds": 0, "runs": 7,
                                                    "seconds": 0, "max_seconds": 10})
    assert res["warmup_runs"] == 3 and res["runs"] == 7 and len(calls) == 1 + 3 + 7
    res = probe.probe(lambda f: None, {}, {"warmup_runs": 0, "warmup_seconds": 0, "runs": 1, "seconds": 0.05})
    assert res["measure_seconds"] >= 0.05 and res["runs"] > 1
    res = probe.probe(lambda f: None, {}, {"warmup_runs": 0, "warmup_seconds": 0, "runs": 1200, "seconds": 0})
    assert res["p99_ms"] is not None and res["min_ms"] <= res["p50_ms"] <= res["p90_ms"] <= res["p95_ms"] \
        <= res["p99_ms"] <= res["max_ms"]
    assert probe.percentile([1.0, 2.0, 3.0, 4.0], 50) == np.percentile([1, 2, 3, 4], 50)
