"""Item 1: latency-probe fidelity and cost.

For a conv net, a transformer and an MLP (bench/models.py), built for `x86-cpu` (ONNX fp32):
  - the agent's p50 (`python -m agent selftest --json .` in the bundle) against a bare timed loop
    over the same onnxruntime session settings (bench/bare_loop.py; the limit);
  - the agent's cost: the selftest's wall time minus the time it spends in the runtime (load,
    first run, parity runs, warmup, measured runs) against the wall time of a process that only
    starts Python and imports numpy + onnxruntime;
  - peak RSS of the selftest against a process that only loads the runtime and the model and runs it.
Repetitions are interleaved (agent, bare, import; the order flips every repetition).
LiteRT: measured only when the agent has a LiteRT runtime and `litert-benchmark` exists.
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


def edgepack_cmd() -> list[str]:
    exe = Path(common.PY).with_name("edgepack")
    return [str(exe)] if exe.exists() else list(EDGEPACK)


def build(kind: str, smoke: bool, profile: str, out: Path, extra=()) -> Path:
    cmd = edgepack_cmd() + ["build", factory(kind, smoke), "--profile", profile, "--out", str(out),
                            "--name", f"bench-{kind}", "--force", "--json", *extra]
    p = common.run(cmd, cwd=common.REPO).check()
    return Path(json.loads(p.out)["bundle"])


def model_seconds(report: dict, samples: int) -> float:
    lat = report["latency"]
    return (lat["load_ms"] / 1000.0 + lat["first_run_ms"] / 1000.0 + samples * lat["mean_ms"] / 1000.0
            + lat["warmup_seconds"] + lat["measure_seconds"])


def main(argv=None) -> int:
    a = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    reps = a.reps or (1 if a.smoke else 3)
    res = common.Result("probe", "Latency probe: fidelity and cost", a.smoke)
    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-probe-"))
    probe_args = ["--runs", "5", "--seconds", "0", "--warmup", "2"] if a.smoke else []
    host_args = ["--runs", "5", "--seconds", "0"] if a.smoke else []
    bare_args = ["--runs", "5", "--seconds", "0", "--warmup-runs", "2", "--warmup-seconds", "0"] \
        if a.smoke else []
    try:
        bundles = {k: build(k, a.smoke, "x86-cpu", work / "dist") for k in MODELS}
        res.command("build", edgepack_cmd() + ["build", "bench/models.py:<cnn|transformer|mlp>",
                                               "--profile", "x86-cpu", "--out", "DIST", "--json"])
        agent_cmd = [common.PY, "-m", "agent", "selftest", "--json", "."] + probe_args
        host_cmd = edgepack_cmd() + ["selftest", "--json"]
        res.command("agent selftest", "cd BUNDLE && " + " ".join(agent_cmd))
        res.command("bare loop (limit)", [common.PY, "bench/bare_loop.py", "BUNDLE"] + bare_args)
        res.command("runtime import only", [common.PY, "bench/bare_loop.py", "BUNDLE", "--mode", "import"])
        res.command("host CLI selftest", host_cmd + ["BUNDLE"] + host_args)
        m = {k: {"agent_p50": [], "bare_p50": [], "agent_wall": [], "model_s": [], "overhead": [],
                 "import_wall": [], "agent_rss": [], "bare_rss": [], "host_wall": [], "runs": [],
                 "threads": None} for k in MODELS}
        for rep in range(reps):
            res.sample_load(f"probe rep {rep + 1}")
            for kind, b in bundles.items():
                samples = int(json.loads((b / "manifest.json").read_text())["vectors"]["samples"])
                order = ["agent", "bare", "import", "host"]
                if rep % 2:
                    order.reverse()
                for what in order:
                    if what == "agent":
                        p = common.run_rss(agent_cmd, cwd=b).check()
                        r = p.json()
                        ms = model_seconds(r, samples)
                        m[kind]["agent_p50"].append(r["latency"]["p50_ms"])
                        m[kind]["agent_wall"].append(p.wall)
                        m[kind]["model_s"].append(ms)
                        m[kind]["overhead"].append(p.wall - ms)
                        m[kind]["agent_rss"].append(p.maxrss / 2**20)
                        m[kind]["runs"].append(r["latency"]["runs"])
                        m[kind]["threads"] = r["latency"]["threads"]
                    elif what == "bare":
                        p = common.run_rss([common.PY, common.REPO / "bench" / "bare_loop.py", b] + bare_args).check()
                        r = p.json()
                        m[kind]["bare_p50"].append(r["p50_ms"])
                        m[kind]["bare_rss"].append(p.maxrss / 2**20)
                    elif what == "import":
                        p = common.run_rss([common.PY, common.REPO / "bench" / "bare_loop.py", b, "--mode", "import"]).check()
                        m[kind]["import_wall"].append(p.wall)
                    else:
                        p = common.run(host_cmd + [b] + host_args, cwd=common.REPO)
                        if p.rc not in (0, 1):
                            p.check()
                        m[kind]["host_wall"].append(p.wall)
        res.sample_load("probe end")
        for kind, label in MODELS.items():
            d = m[kind]
            p50_ratio = common.ratio(common.summary(d["agent_p50"])["median"], common.summary(d["bare_p50"])["median"])
            res.row(label, "p50 latency (agent vs bare loop)", "ms", d["agent_p50"], d["bare_p50"],
                    "bare onnxruntime loop", "within ±3 %",
                    None if p50_ratio is None else abs(p50_ratio - 1) <= 0.03,
                    extra={"threads": d["threads"], "runs": d["runs"],
                           "per_rep_ratio": [round(x / y, 4) for x, y in zip(d["agent_p50"], d["bare_p50"])]})
            extra_s = [o - i for o, i in zip(d["overhead"], d["import_wall"])]
            res.row(label, "selftest wall minus model time (vs Python + runtime import)", "s",
                    d["overhead"], d["import_wall"], "python -c 'import numpy, onnxruntime'",
                    "overhead − import < 0.3 s",
                    max(extra_s) < 0.3 if extra_s else None,
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
        res.note("Model time inside a selftest = load + first run + parity runs (samples × mean) + "
                 "warmup + measured runs, from the agent's own report; what remains of the wall time "
                 "is the agent's cost (Python start, imports, hashing, vectors, report).")
        litert = _litert_status()
        res.note(litert)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    res.write(a.out)
    return 0


def _litert_status() -> str:
    from agent import runtimes
    names = sorted(runtimes.RUNTIMES)
    has_rt = any("lite" in n.lower() for n in names)
    exe = shutil.which("litert-benchmark") or (Path(common.PY).with_name("litert-benchmark")
                                               if Path(common.PY).with_name("litert-benchmark").exists() else None)
    if not has_rt or not exe:
        return (f"LiteRT not measured: agent runtimes = {names}; litert-benchmark "
                f"{'found at ' + str(exe) if exe else 'not installed'} (the TF-Lite work, issue 3, is "
                "not in this tree yet)")
    return f"LiteRT runtime present ({names}) and litert-benchmark at {exe}, but not yet wired into this bench"


if __name__ == "__main__":
    sys.exit(main())
