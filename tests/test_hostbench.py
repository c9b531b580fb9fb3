"""packager/hostbench.py: one timing session for the build's two speed reports. Unit tests with
stand-in runtimes (each 'run' sleeps a known time), beside the real ones in tests/quant/test_recover.py."""
from __future__ import annotations

import time

import pytest

from packager import hostbench
from packager.formats import Artifact, Format


class _Sleeper:
    def __init__(self, ms: float):
        self.ms, self.calls = ms, 0

    def run(self, feeds):
        self.calls += 1
        time.sleep(self.ms / 1000.0)


def _art(path, size: int) -> Artifact:
    path.write_bytes(b"\0" * size)
    return Artifact(Format.ONNX, path, (), ())


@pytest.fixture
def models(tmp_path, monkeypatch):
    rts = {"float": _Sleeper(6.0), "full": _Sleeper(2.0), "chosen": _Sleeper(3.0)}
    arts = {"float": _art(tmp_path / "f.onnx", 4000), "full": _art(tmp_path / "q.onnx", 1000),
            "chosen": _art(tmp_path / "c.onnx", 1300)}
    by_path = {arts[k].path: rts[k] for k in arts}
    monkeypatch.setattr(hostbench, "load_on_host", lambda art, settings: by_path[art.path])
    return arts, rts


def test_one_session_reports_the_int8_speedup_and_the_fallback_cost(models):
    arts, rts = models
    out = hostbench.timings(arts["float"], arts["chosen"], rts["chosen"], {}, {}, full=arts["full"])
    lat, cost = out["host_latency"], out["fallback_cost"]
    assert lat["fp32_ms"] >= 6.0 and lat["int8_ms"] >= 3.0          # a sleep lasts at least that long
    assert lat["speedup"] == pytest.approx(lat["fp32_ms"] / lat["int8_ms"])
    assert cost["with_fallbacks_ms"] == lat["int8_ms"]          # the chosen model timed once for both
    assert cost["full_int8_ms"] >= 2.0 and cost["latency_ratio"] == pytest.approx(lat["int8_ms"] / cost["full_int8_ms"])
    assert cost["full_int8_bytes"] == 1000 and cost["with_fallbacks_bytes"] == 1300 and cost["extra_bytes"] == 300
    # warm-up (2) plus two rounds of at least 3 runs each, for every model
    assert all(rt.calls >= 8 for rt in rts.values())


def test_without_fallbacks_only_the_speedup_and_without_a_float_model_only_the_cost(models):
    arts, rts = models
    assert set(hostbench.timings(arts["float"], arts["chosen"], rts["chosen"], {}, {})) == {"host_latency"}
    assert set(hostbench.timings(None, arts["chosen"], rts["chosen"], {}, {}, full=arts["full"],
                                 full_rt=rts["full"])) == {"fallback_cost"}
    assert hostbench.timings(None, arts["chosen"], rts["chosen"], {}, {}) == {}
    assert hostbench.timings(arts["chosen"], arts["chosen"], rts["chosen"], {}, {}) == {}   # fp32: nothing to compare


def test_a_runtime_that_fails_while_timed_leaves_the_build_without_timings(models):
    arts, rts = models

    class Broken:
        def run(self, feeds):
            raise RuntimeError("device lost")

    assert hostbench.timings(arts["float"], arts["chosen"], Broken(), {}, {}) == {}
