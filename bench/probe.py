"""Item 1: latency-probe fidelity and cost.

For a conv net, a transformer and an MLP (bench/models.py), built for `x86-cpu` (ONNX fp32) and,
where the agent has a LiteRT runtime, for a LiteRT profile (raspberry-pi with this host's 2 threads):
  - the agent's p50 (`python -m agent selftest --json .` in the bundle) against a bare timed loop
    over the same runtime with the same settings (bench/bare_loop.py; the limit), and for LiteRT
    also against the `litert-benchmark` command that ai-edge-litert installs;
  - the agent's cost: the selftest's wall time minus the time it spends in the runtime (load,
    first run, parity runs, warmup, measured runs) against the wall time of a process that only
    starts Python and imports numpy + the runtime;
  - peak RSS of the selftest against a process that only loads the runtime and the model and runs it.
Repetitions are interleaved (the order flips every repetition).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from . import common
from .common import MODELS, factory

EDGEPACK = [common.PY, "-m", "packager.cli"]
LITERT_PROFILE = """\
name: bench-litert
description: raspberry-pi (TF-Lite fp32 on LiteRT) with this host's threads, for the benchmark
extends: raspberry-pi
runtime:
  threads: 2
device:
  arch: []
"""


def edgepack_cmd() -> list[str]:
    exe = Path(common.PY).with_name("edgepack")
    return [str(exe)] if exe.exists() else list(EDGEPACK)


def build(kind: str, smoke: bool, profile: str, out: Path, extra=()) -> Path:
    cmd = edgepack_cmd() + ["build", factory(kind, smoke), "--profile", str(profile), "--out", str(out),
                            "--name", f"bench-{kind}", "--force", "--json", *extra]
    p = common.run(cmd, cwd=common.REPO).check()
    return Path(json.loads(p.out)["bundle"])


def model_seconds(report: dict, samples: int) -> float:
    lat = report["latency"]
    return (lat["load_ms"] / 1000.0 + lat["first_run_ms"] / 1000.0 + samples * lat["mean_ms"] / 1000.0
            + lat["warmup_seconds"] + lat["measure_seconds"])


def litert_benchmark() -> str | None:
    exe = Path(common.PY).with_name("litert-benchmark")
    return str(exe) if exe.exists() else shutil.which("litert-benchmark")


def litert_available() -> tuple[bool, str]:
    from agent import runtimes
    if "litert" not in runtimes.RUNTIMES:
        return False, f"the agent has no LiteRT runtime (knows {sorted(runtimes.RUNTIMES)})"
    try:
        runtimes.RUNTIMES["litert"].find()
    except Exception as exc:  # RuntimeMissing
        return False, f"no LiteRT package: {exc}"
    if not litert_benchmark():
        return False, "litert-benchmark is not installed"
    return True, "LiteRT measured"


def measure(res, bundles: dict, reps: int, smoke: bool, suffix: str) -> None:
    probe_args = ["--runs", "5", "--seconds", "0", "--warmup", "2"] if smoke else []
    host_args = ["--runs", "5", "--seconds", "0"] if smoke else []
    bare_args = ["--runs", "5", "--seconds", "0", "--warmup-runs", "2", "--warmup-seconds", "0"] \
        if smoke else []
    agent_cmd = [common.PY, "-m", "agent", "selftest", "--json", "."] + probe_args
    host_cmd = edgepack_cmd() + ["selftest", "--json"]
    lrb = litert_benchmark() if suffix else None
    res.command("agent selftest", "cd BUNDLE && " + " ".join(agent_cmd))
    res.command("bare loop (limit)", [common.PY, "bench/bare_loop.py", "BUNDLE"] + bare_args)
    res.command("runtime import only", [common.PY, "bench/bare_loop.py", "BUNDLE", "--mode", "import"])
    res.command("host CLI selftest", host_cmd + ["BUNDLE"] + host_args)
    if lrb:
        res.command("litert-benchmark", f"{lrb} --model BUNDLE/model/model.tflite --num_threads T "
                                        "--num_runs R --warmup_runs W --result_json OUT (R, W, T = the agent's)")
    m = {k: {"agent_p50": [], "bare_p50": [], "lrb_p50": [], "agent_wall": [], "model_s": [], "overhead": [],
             "import_wall": [], "agent_rss": [], "bare_rss": [], "host_wall": [], "runs": [],
             "threads": None} for k in bundles}
    for rep in range(reps):
        res.sample_load(f"probe{suffix} rep {rep + 1}")
        for kind, b in bundles.items():
            manifest = json.loads((b / "manifest.json").read_text())
            samples = int(manifest["vectors"]["samples"])
            order = ["agent", "bare", "import", "host"] + (["lrb"] if lrb else [])
            if rep % 2:
                order.reverse()
            for what in order:
                d = m[kind]
                if what == "agent":
                    p = common.run_rss(agent_cmd, cwd=b).check()
                    r = p.json()
                    ms = model_seconds(r, samples)
                    d["agent_p50"].append(r["latency"]["p50_ms"])
                    d["agent_wall"].append(p.wall)
                    d["model_s"].append(ms)
                    d["overhead"].append(p.wall - ms)
                    d["agent_rss"].append(p.maxrss / 2**20)
                    d["runs"].append(r["latency"]["runs"])
                    d["threads"] = r["latency"]["threads"]
                elif what == "bare":
                    p = common.run_rss([common.PY, common.REPO / "bench" / "bare_loop.py", b] + bare_args).check()
                    r = p.json()
                    d["bare_p50"].append(r["p50_ms"])
                    d["bare_rss"].append(p.maxrss / 2**20)
                elif what == "import":
                    p = common.run_rss([common.PY, common.REPO / "bench" / "bare_loop.py", b, "--mode", "import"]).check()
                    d["import_wall"].append(p.wall)
                elif what == "lrb":
                    runs = d["runs"][-1] if d["runs"] else 100
                    out = b.parent / f"lrb-{kind}.json"
                    threads = int((manifest.get("runtime_settings") or {}).get("threads") or 0)
                    warm = int((manifest.get("probe") or {}).get("warmup_runs", 10))
                    p = common.run([lrb, "--model", b / "model" / "model.tflite", "--num_runs", runs,
                                    "--warmup_runs", 2 if smoke else warm,
                                    "--result_json", out] + (["--num_threads", threads] if threads else [])).check()
                    d["lrb_p50"].append(json.loads(out.read_text())["latency"]["median_ms"])
                else:
                    p = common.run(host_cmd + [b] + host_args, cwd=common.REPO)
                    if p.rc not in (0, 1):
                        p.check()
                    d["host_wall"].append(p.wall)
    peer_rt = "LiteRT Interpreter" if suffix else "onnxruntime"
    for kind in bundles:
        d, label = m[kind], MODELS[kind] + suffix
        # ratio = median of the paired (same repetition, back to back) ratios: on a shared host the
        # load changes between repetitions far more than between two neighbouring runs
        pairs = [x / y for x, y in zip(d["agent_p50"], d["bare_p50"]) if y]
        p50_ratio = common.summary(pairs)["median"]
        res.row(label, "p50 latency (agent vs bare loop)", "ms", d["agent_p50"], d["bare_p50"],
                f"bare {peer_rt} loop", "within ±3 %",
                None if p50_ratio is None else abs(p50_ratio - 1) <= 0.03, ratio_value=p50_ratio,
                extra={"threads": d["threads"], "runs": d["runs"], "ratio": "median of paired ratios",
                       "per_rep_ratio": [round(x, 4) for x in pairs]})
        if d["lrb_p50"]:
            pairs = [x / y for x, y in zip(d["agent_p50"], d["lrb_p50"]) if y]
            r = common.summary(pairs)["median"]
            res.row(label, "p50 latency (agent vs litert-benchmark median)", "ms", d["agent_p50"], d["lrb_p50"],
                    "litert-benchmark", "within ±3 %", None if r is None else abs(r - 1) <= 0.03, ratio_value=r,
                    extra={"ratio": "median of paired ratios", "per_rep_ratio": [round(x, 4) for x in pairs],
                           "note": "litert-benchmark prints 2 decimals (0.01 ms) and uses the CompiledModel API"})
        extra_s = [o - i for o, i in zip(d["overhead"], d["import_wall"])]
        res.row(label, "selftest wall minus model time (vs Python + runtime import)", "s",
                d["overhead"], d["import_wall"], "python + import numpy, runtime",
                "overhead − import < 0.3 s", common.summary(extra_s)["median"] < 0.3 if extra_s else None,
                extra={"overhead_minus_import_s": common.summary(extra_s),
                       "selftest_wall_s": common.summary(d["agent_wall"]),
                       "model_s": common.summary(d["model_s"])})
        diff = [x - y for x, y in zip(d["agent_rss"], d["bare_rss"])]
        res.row(label, "peak RSS (selftest vs runtime+model only)", "MiB", d["agent_rss"], d["bare_rss"],
                "bare loop process", "within 25 MB",
                (common.summary(diff)["median"] * 2**20 <= 25e6) if diff else None,
                extra={"difference_mib": common.summary(diff)})
        res.row(label, "host CLI `edgepack selftest` wall vs agent selftest wall", "s",
                d["host_wall"], d["agent_wall"], "python -m agent selftest",
                extra={"note": "informative: typer CLI start + subprocess"})


def main(argv=None) -> int:
    a = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    reps = a.reps or (1 if a.smoke else 3)
    res = common.Result("probe", "Latency probe: fidelity and cost", a.smoke)
    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-probe-"))
    try:
        bundles = {k: build(k, a.smoke, "x86-cpu", work / "dist") for k in MODELS}
        res.command("build", edgepack_cmd() + ["build", "bench/models.py:<cnn|transformer|mlp>",
                                               "--profile", "x86-cpu", "--out", "DIST", "--json"])
        measure(res, bundles, reps, a.smoke, "")
        ok, why = litert_available()
        if ok:
            (work / "bench-litert.yaml").write_text(LITERT_PROFILE)
            lbundles = {}
            for k in MODELS:
                try:
                    lbundles[k] = build(k, a.smoke, work / "bench-litert.yaml", work / "dist-litert")
                except RuntimeError as exc:
                    res.note(f"LiteRT {MODELS[k]}: edgepack build failed: {str(exc)[-400:]}")
            res.command("build (LiteRT)", edgepack_cmd() + ["build", "bench/models.py:<kind>", "--profile",
                                                            "bench-litert.yaml", "--out", "DIST", "--json"])
            res.note("LiteRT profile: " + " ".join(LITERT_PROFILE.split()))
            if lbundles:
                measure(res, lbundles, reps, a.smoke, " (LiteRT)")
        else:
            res.note(f"LiteRT not measured: {why}")
        res.sample_load("probe end")
        res.note("Model time inside a selftest = load + first run + parity runs (samples × mean) + "
                 "warmup + measured runs, from the agent's own report; what remains of the wall time "
                 "is the agent's cost (Python start, imports, hashing, vectors, report).")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    res.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
