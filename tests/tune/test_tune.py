"""`edgepack tune` on this host: every candidate built once (cached by content), measured by the
bundle's own agent, the Pareto front and the winner, a profile that pins it and builds, a resumed run
after Ctrl-C, and the selection rules on their own."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import EXAMPLES, run_cli

from packager import pipeline
from packager.tune import TuneOptions, select, tune

FAST = ["--formats", "onnx", "--precisions", "fp32,int8", "--threads", "1", "--probe-runs", "50",
        "--probe-seconds", "0"]


def _opts(tmp_path, **kw):
    base = dict(source=f"{EXAMPLES}:mlp", profile="x86-cpu-int8", formats=["onnx"], precisions=["fp32", "int8"],
                threads=[1], probe_runs=50, probe_seconds=0.0, cache=tmp_path / "cache")
    base.update(kw)
    return TuneOptions(**base)


def test_cli_table_winner_and_a_profile_that_builds(tmp_path):
    out_profile = tmp_path / "tuned.yaml"
    r = run_cli("tune", f"{EXAMPLES}:mlp", "--profile", "x86-cpu-int8", *FAST, "--cache", tmp_path / "cache",
                "--out-profile", out_profile)
    assert r.returncode == 0, r.stderr
    assert "CANDIDATE" in r.stdout and "P99 MS" in r.stdout and "winner   onnx" in r.stdout
    assert ">" in r.stdout and "*" in r.stdout and "Traceback" not in r.stderr
    data = yaml.safe_load(out_profile.read_text())
    assert data["extends"] == "x86-cpu-int8" and data["runtime"]["threads"] in (0, 1)  # own setting or --threads
    assert data["format"] == "onnx" and data["precision"] in ("fp32", "int8")
    b = run_cli("build", f"{EXAMPLES}:mlp", "--profile", out_profile, "--out", tmp_path / "dist", "--json")
    assert b.returncode == 0, b.stderr
    bundle = json.loads(b.stdout)["bundle"]
    s = run_cli("selftest", bundle, "--runs", "20", "--seconds", "0")
    assert s.returncode == 0, s.stdout + s.stderr


def test_json_has_every_candidate_and_nothing_else_on_stdout(tmp_path):
    r = run_cli("tune", f"{EXAMPLES}:mlp", "--profile", "x86-cpu-int8", *FAST, "--cache", tmp_path / "cache",
                "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rows = out["candidates"]
    # the profile's own build, fp32 and five int8 recipes, at the profile's own threads and 1 thread
    assert len(rows) >= 7 and out["winner"]["winner"] and out["baseline"]["recipe"] == "the profile's own"
    passing = [x for x in rows if x["status"] == "pass"]
    assert out["winner"]["p90"] == min(x["p90"] for x in passing)
    for x in rows:
        assert {"p50", "p90", "p99", "load", "size_bytes", "peak_rss_bytes", "worst_cosine", "status", "why",
                "pareto"} <= set(x)
    assert any(x["pareto"] for x in rows)


def test_candidates_are_built_once_and_a_rerun_after_ctrl_c_resumes(tmp_path, monkeypatch):
    calls = []
    real = pipeline.build
    monkeypatch.setattr(pipeline, "build", lambda opts: calls.append(opts.profile_patch) or real(opts))

    def interrupt_after_three(event):
        if event["phase"] == "done" and event["done"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(_opts(tmp_path), on_progress=interrupt_after_three)
    first = len(calls)
    assert first >= 2
    result = tune(_opts(tmp_path))
    rebuilt = calls[first:]
    assert len(rebuilt) == len({json.dumps(c, sort_keys=True) for c in calls}) - first  # nothing built twice
    assert result.winner is not None and len(result.rows) >= 7
    calls.clear()
    tune(_opts(tmp_path))
    assert calls == []                                  # a third run: all from the cache


def test_a_budget_no_candidate_meets_fails_with_the_reason(tmp_path):
    r = run_cli("tune", f"{EXAMPLES}:mlp", "--profile", "x86-cpu-int8", *FAST, "--cache", tmp_path / "cache",
                "--budget-ms", "0.000001")
    assert r.returncode == 1
    assert "no candidate inside the profile's thresholds and --budget-ms" in r.stderr.splitlines()[-1]
    assert "> budget" in r.stdout


def test_bad_options_are_one_line(tmp_path):
    r = run_cli("tune", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--metric", "p42")
    assert r.returncode == 2 and "--metric 'p42' is not one of" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("tune", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--limit", "cam1")
    assert r.returncode == 2 and "--limit needs -i" in r.stderr


def _row(label, p90, cos, status="pass", size=1):
    return {"label": label, "p90": p90, "worst_cosine": cos, "status": status, "size_bytes": size, "why": ""}


def test_pareto_front_and_winner_rules():
    rows = [_row("a", 1.0, 0.999), _row("b", 2.0, 0.9999), _row("c", 3.0, 0.999), _row("d", 0.5, 0.9, "fail")]
    select.pareto(rows, "p90")
    assert [r["pareto"] for r in rows] == [True, True, False, False]
    assert select.winner(rows, "p90", None)["label"] == "a"
    assert select.winner(rows, "p90", 0.9) is None and rows[0]["why"].startswith("p90 1.000 ms > budget")


def test_tune_subcommand_keeps_help_instant():
    code = ("import sys; from packager.cli import app; sys.argv=['edgepack','tune','--help']\n"
            "try:\n    app()\nexcept SystemExit: pass\n"
            "bad=[m for m in ('torch','onnx','onnxruntime','numpy','paramiko') if m in sys.modules]\n"
            "print('HEAVY', bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(Path(__file__).parent))
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
