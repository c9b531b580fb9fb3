"""Every bench script runs in its smoke mode (tiny models, one repetition) and writes a
well-formed result. No speed is asserted here: numbers live in docs/BENCHMARKS.md."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402


def _run(name: str, out: Path, *extra: str) -> dict:
    p = subprocess.run([sys.executable, "-m", f"bench.{name}", "--smoke", "--out", str(out), *extra],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"bench.{name} failed:\n{p.stderr[-3000:]}"
    data = json.loads(out.read_text())
    assert common.check_result(data) == [], common.check_result(data)
    assert data["name"] == name and data["smoke"] is True
    assert data["commands"], "every result lists the commands it ran"
    return data


def test_probe_smoke(tmp_path):
    data = _run("probe", tmp_path / "probe.json")
    groups = {r["group"] for r in data["rows"]}
    assert set(common.MODELS.values()) <= groups
    litert = {g for g in groups if g.endswith("(LiteRT)")}
    assert litert == {f"{m} (LiteRT)" for m in common.MODELS.values()} or \
        any(n.startswith("LiteRT not measured") for n in data["notes"]), data["notes"]
    for r in data["rows"]:
        assert r["peer"]["median"] is not None and r["edgepack"]["n"] == 1
        if "bare loop" in r["metric"]:  # litert-benchmark prints 2 decimals: a tiny model reads 0.00
            assert r["ratio"] is not None


def test_quant_smoke(tmp_path):
    data = _run("quant", tmp_path / "quant.json")
    metrics = {r["metric"] for r in data["rows"]}
    assert "p50 latency int8 (edgepack) vs fp32" in metrics
    for r in data["rows"]:
        if "cosine" in r["metric"] and not r["extra"].get("skipped"):
            assert -1.0 <= r["edgepack"]["median"] <= 1.0 + 1e-6


def test_build_smoke(tmp_path):
    data = _run("build", tmp_path / "build.json")
    assert len(data["rows"]) == 3
    for r in data["rows"]:
        assert r["edgepack"]["median"] > 0 and r["peer"]["median"] > 0


def test_tune_smoke(tmp_path):
    data = _run("tune", tmp_path / "tune.json")
    groups = {r["group"] for r in data["rows"]}
    assert any(g.startswith("conv net, host") for g in groups)
    assert all(r["extra"].get("pick") for r in data["rows"])


def test_fleet_smoke(tmp_path):
    data = _run("fleet", tmp_path / "fleet.json")
    if any(r["extra"].get("skipped") for r in data["rows"]):
        pytest.skip(data["notes"][0])
    assert any("wall time vs paramiko" in r["metric"] for r in data["rows"])
    for r in data["rows"]:
        assert r["extra"].get("all_ok_edgepack", True), data["notes"]
        if "bytes" in r["metric"]:
            assert r["edgepack"]["median"] > 0


def test_driver_renders_markdown(tmp_path):
    """The driver turns result files into the report (tables, machine, commands) without rerunning."""
    from bench import run
    res = common.Result("probe", "Latency probe", smoke=True)
    res.command("x", ["python", "-c", "pass"])
    res.row("conv net", "p50", "ms", [1.0, 1.1, 0.9], [1.0, 1.0, 1.0], "bare", "within ±3 %", True)
    res.write(tmp_path / "probe.json")
    text = run.render({"probe": json.loads((tmp_path / "probe.json").read_text())},
                      {"probe": {"rc": 0, "wall": 1.0}}, True, "now", [1, 1, 1], [1, 1, 1], ["x"])
    assert "| conv net | p50 | ms | 1 (0.9–1.1) | 1 (1–1) |" in text
    assert "CPU:" in text and "`python -c pass`" in text
