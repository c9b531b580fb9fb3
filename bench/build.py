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
        for _, _, _, label in CASES:
            w = walls[label]
            r = common.ratio(common.summary(w["edgepack"])["median"], common.summary(w["plain"])["median"])
            res.row(label, "build wall time", "s", w["edgepack"], w["plain"], "plain export+quantize script",
                    f"≤ {GOAL}×", None if r is None else r <= GOAL, extra={"edgepack_breakdown": w["breakdown"]})
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    res.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
