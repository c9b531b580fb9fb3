"""Item 3: build overhead. `edgepack build` wall time against a plain script doing only the
conversion and quantization calls for the same model and recipe (bench/plain_build.py), both as
fresh processes (Python start and torch import included on both sides), interleaved.

Cases: conv net int8 (static QDQ, same calibration file), transformer int8 (dynamic), conv net fp32.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import common
from .probe import edgepack_cmd

CASES = [("cnn", "x86-cpu-int8", "int8", "conv net, int8 static"),
         ("transformer", "x86-cpu-int8", "int8", "transformer, int8 dynamic"),
         ("cnn", "x86-cpu", "fp32", "conv net, fp32")]
GOAL = 1.3


# (file suffix, function name) -> stage label; "both" stages are what the plain script also does
STAGES = [("packager/pipeline.py", "build", "build() total"),
          ("packager/sources/__init__.py", "load", "load source (torch import, factory) [both]"),
          ("packager/sources/__init__.py", "run", "run the original on reference inputs"),
          ("torch/onnx/__init__.py", "export", "torch.onnx.export [both]"),
          ("packager/formats/onnx/export.py", "_batch_axis_works", "batch-2 check of the export"),
          ("packager/passes/simplify.py", "run", "simplify pass (onnxslim)"),
          ("onnxruntime/quantization/shape_inference.py", "quant_pre_process", "quant_pre_process [both]"),
          ("onnxruntime/quantization/quantize.py", "quantize_static", "quantize_static [both]"),
          ("onnxruntime/quantization/quantize.py", "quantize_dynamic", "quantize_dynamic [both]"),
          ("packager/parity.py", "run_artifact", "host parity runs"),
          ("packager/hostbench.py", "timings", "int8 vs fp32 host latency check (and the fallback cost)"),
          ("packager/bundle.py", "write", "write bundle")]


def stages(prof: Path) -> dict:
    import pstats
    st = pstats.Stats(str(prof))
    found = {}
    for (f, _, fn), (_, _, _, ct, _) in st.stats.items():
        for suffix, name, label in STAGES:
            if fn == name and f.endswith(suffix):
                found[label] = max(found.get(label, 0.0), ct)
    total = found.get("build() total") or sum(found.values()) or 1.0
    return {k: {"s": round(v, 3), "share": v / total}
            for k, v in sorted(found.items(), key=lambda kv: -kv[1])}


def main(argv=None) -> int:
    a = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    reps = a.reps or (1 if a.smoke else 3)
    res = common.Result("build", "Build overhead (edgepack build vs plain export + quantize)", a.smoke)
    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-build-"))
    try:
        shapes = {"cnn": (1, 3, 32, 32) if a.smoke else (1, 3, 224, 224)}
        rng = np.random.default_rng(1)
        calib = work / "calib-cnn.npz"
        work.mkdir(parents=True, exist_ok=True)
        np.savez(calib, x=rng.standard_normal((4 if a.smoke else 32,) + shapes["cnn"]).astype("float32"))
        res.command("edgepack", edgepack_cmd() + ["build", "bench/models.py:KIND", "--profile", "PROFILE",
                                                  "--out", "DIST", "--force", "--json",
                                                  "[--calibration calib.npz]"])
        res.command("plain script", [common.PY, "bench/plain_build.py", "bench/models.py:KIND", "OUT.onnx",
                                     "--precision", "int8|fp32", "[--calibration calib.npz]"])
        walls = {c[3]: {"edgepack": [], "plain": [], "breakdown": []} for c in CASES}
        for rep in range(reps):
            res.sample_load(f"build rep {rep + 1}")
            for kind, profile, precision, label in CASES:
                src = common.factory(kind, a.smoke)
                cal = ["--calibration", str(calib)] if (kind == "cnn" and precision == "int8") else []
                ep = edgepack_cmd() + ["build", src, "--profile", profile, "--out", str(work / "dist"),
                                       "--name", f"b-{kind}-{precision}", "--force", "--json"] + cal
                plain = [common.PY, common.REPO / "bench" / "plain_build.py", src,
                         work / f"plain-{kind}-{precision}.onnx", "--precision", precision] + cal
                order = [("edgepack", ep), ("plain", plain)]
                if rep % 2:
                    order.reverse()
                for who, cmd in order:
                    p = common.run(cmd, cwd=common.REPO).check()
                    walls[label][who].append(p.wall)
                    if who == "edgepack":
                        m = json.loads(p.out)["manifest"]
                        q = m.get("quantization") or {}
                        walls[label]["breakdown"].append({
                            "wall_s": round(p.wall, 3),
                            "export_s": (m.get("conversion") or {}).get("export_seconds"),
                            "quantize_s": q.get("seconds"),
                            "host_latency_compare": bool(q.get("host_latency"))})
        res.sample_load("build end")
        if not a.smoke:  # where the time goes: one extra build per int8 case under cProfile
            for kind, profile, precision, label in CASES:
                if precision != "int8":
                    continue
                cal = ["--calibration", str(calib)] if kind == "cnn" else []
                prof = work / f"{kind}.prof"
                common.run([common.PY, "-m", "cProfile", "-o", prof, "-m", "packager.cli", "build",
                            common.factory(kind, a.smoke), "--profile", profile, "--out", work / "dist",
                            "--name", f"p-{kind}", "--force", "--json"] + cal, cwd=common.REPO).check()
                walls[label]["profile"] = stages(prof)
                res.note(f"{label}: cProfile of one edgepack build (cumulative s, share of build()): " +
                         ", ".join(f"{k} {v['s']:.2f} s ({v['share']:.0%})" for k, v in walls[label]["profile"].items()))
            res.command("profile", [common.PY, "-m", "cProfile", "-o", "build.prof", "-m", "packager.cli", "build",
                                    "bench/models.py:KIND", "--profile", "x86-cpu-int8", "--out", "DIST", "--force"])
        if not a.smoke:
            _real(res, walls, work, reps)
        for label in walls:
            w = walls[label]
            r = common.ratio(common.summary(w["edgepack"])["median"], common.summary(w["plain"])["median"])
            goal = w.get("goal", GOAL)
            res.row(label, "build wall time", "s", w["edgepack"], w["plain"], "plain export+quantize script"
                    if "real" not in label else "the bare converter calls (bench/plain_real.py)",
                    f"≤ {goal}×", None if r is None else r <= goal, extra={"edgepack_breakdown": w["breakdown"], "profile": w.get("profile")})
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    res.write(a.out)
    return 0


# A real model of the zoo through the two routes where edgepack does the most around the converter.
REAL = [("yolov8s-fall", "raspberry-pi", "tflite", "YOLOv8s (real, ONNX) -> TF-Lite via onnx2tf"),
        ("yolov8s-fall", "x86-cpu-int8", "int8", "YOLOv8s (real, ONNX) -> int8 ONNX")]


def _real(res, walls, work: Path, reps: int) -> None:
    """edgepack build vs the bare calls of the same route (bench/plain_real.py), given edgepack's own
    choices (the recipe it recorded, the nodes it left in float): the overhead of checking, not of
    searching. The onnx2tf cache is off so both convert."""
    import os
    sys.path.insert(0, str(common.REPO / "tests" / "zoo"))
    try:
        import zoo
        case = zoo.BY_NAME["yolov8s-fall"]
        paths = case.resolve()
    except Exception as exc:  # the zoo is optional for the bench
        res.note(f"real-model rows skipped: {exc}")
        return
    finally:
        sys.path.pop(0)
    env = dict(os.environ, EDGEPACK_CACHE="off", **case.env())
    res.command("plain real", [common.PY, "bench/plain_real.py", "MODEL.onnx", "OUT", "--route", "tflite|int8",
                               "--shape", "images=1x3x320x320", "[--inputs|--calibration NPZ]", "[--recipe JSON]"])
    for name, profile, route, label in REAL:
        walls[label] = {"edgepack": [], "plain": [], "breakdown": [], "goal": 1.5}   # issue 10's goal
        recipe = "{}"
        for rep in range(reps):
            res.sample_load(f"build {label} rep {rep + 1}")
            ep = edgepack_cmd() + case.build_argv(profile, work / "dist-real") + ["--force"]
            plain = [common.PY, common.REPO / "bench" / "plain_real.py", paths["source"], work / f"plain-{route}",
                     "--route", route, "--shape", case.input_shapes[0], "--inputs", paths["inputs"],
                     "--calibration", paths["calibration"]]
            order = [("edgepack", ep), ("plain", plain)]
            if rep % 2:
                order.reverse()
            for who, cmd in order:
                if who == "plain":
                    cmd = cmd + ["--recipe", recipe]
                p = common.run(cmd, cwd=common.REPO, env=env, timeout=1800).check()
                walls[label][who].append(p.wall)
                if who == "edgepack":
                    m = json.loads(p.out)["manifest"]
                    q = m.get("quantization") or {}
                    recipe = json.dumps(q.get("recipe") or {})
                    walls[label]["breakdown"].append({"wall_s": round(p.wall, 3), "recipe": q.get("recipe_label"),
                                                      "attempts": len(q.get("attempts") or []),
                                                      "passes": [x["name"] for x in (m.get("conversion") or {}).get("passes", [])]})


if __name__ == "__main__":
    sys.exit(main())
