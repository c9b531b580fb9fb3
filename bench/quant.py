"""Item 2: the int8 recipe edgepack picks for `x86-cpu-int8` against ONNX Runtime's own
`quantize_dynamic` and `quantize_static` called with their defaults, for the conv net and the
transformer (bench/models.py): latency (bare loop, p50), model size, cosine to the fp32 model.

All three quantize the same fp32 ONNX file (the model inside the `x86-cpu` bundle) and calibrate
on the same 32 samples (the static ones); accuracy is measured on 16 other inputs. Latency
repetitions are interleaved across fp32, edgepack, dynamic and static.

The real-model zoo (bench/quant_zoo.py) runs first when it is installed: `--zoo-only`, `--no-zoo`,
`--only yolov8s-fall,ppocr-det`.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from packager.errors import short

from . import common
from .probe import build, edgepack_cmd

KINDS = {"cnn": "conv net", "transformer": "transformer"}
NOISE = 0.05  # latency tolerance for "never slower" on a shared 2-core host


class _Reader:
    def __init__(self, samples):
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        pass


def _inputs(manifest, n, seed):
    rng = np.random.default_rng(seed)
    specs = manifest["inputs"]
    out = []
    for _ in range(n):
        out.append({s["name"]: rng.standard_normal([d if isinstance(d, int) else 1 for d in s["shape"]])
                    .astype(s["dtype"]) for s in specs})
    return out


def _outputs(model: Path, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return [np.concatenate([o.ravel() for o in sess.run(None, f)]) for f in feeds]


def _cosines(ref, got):
    return [float(np.dot(r, g) / (np.linalg.norm(r) * np.linalg.norm(g) + 1e-30)) for r, g in zip(ref, got)]


def main(argv=None) -> int:
    ap = common.parser(__doc__.splitlines()[0])
    ap.add_argument("--zoo-only", action="store_true", help="only the real-model zoo cases (bench/quant_zoo.py)")
    ap.add_argument("--no-zoo", action="store_true", help="skip the real-model zoo cases")
    ap.add_argument("--only", default="", help="zoo cases, comma-separated (default: all installed)")
    a = ap.parse_args(argv)
    reps = a.reps or (1 if a.smoke else 3)
    res = common.Result("quant", "Quantization recipe (x86-cpu-int8 vs ONNX Runtime defaults)", a.smoke)
    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-quant-"))
    bare_args = ["--runs", "5", "--seconds", "0", "--warmup-runs", "2", "--warmup-seconds", "0"] \
        if a.smoke else ["--runs", "50", "--seconds", "1.0", "--warmup-runs", "10", "--warmup-seconds", "0.3"]
    from onnxruntime.quantization import quantize_dynamic, quantize_static
    try:
        if not a.no_zoo and not a.smoke:
            from .quant_zoo import run_zoo

            res.command("zoo", "python -m bench.quant --zoo-only [--only CASE,...] --out FILE "
                        "(tests/zoo cases; edgepack build --profile x86-cpu-int8 with the zoo's --calibration)")
            run_zoo(res, work / "zoo", reps, bare_args, [c for c in a.only.split(",") if c] or None)
        if a.zoo_only:
            return 0
        res.command("fp32 bundle", edgepack_cmd() + ["build", "bench/models.py:<cnn|transformer>",
                                                    "--profile", "x86-cpu", "--out", "DIST"])
        res.command("edgepack int8", edgepack_cmd() + ["build", "FP32_BUNDLE/model/model.onnx",
                                                      "--profile", "x86-cpu-int8", "--calibration",
                                                      "calib.npz", "--out", "DIST"])
        res.command("ORT dynamic", "onnxruntime.quantization.quantize_dynamic(fp32.onnx, out.onnx)")
        res.command("ORT static", "onnxruntime.quantization.quantize_static(fp32.onnx, out.onnx, "
                                  "reader(calib 32 samples))")
        res.command("latency", [common.PY, "bench/bare_loop.py", "VARIANT"] + bare_args)
        for kind, label in KINDS.items():
            fp32_bundle = build(kind, a.smoke, "x86-cpu", work / "dist")
            manifest = json.loads((fp32_bundle / "manifest.json").read_text())
            fp32 = fp32_bundle / "model" / "model.onnx"
            calib = _inputs(manifest, 4 if a.smoke else 32, seed=1)
            evals = _inputs(manifest, 4 if a.smoke else 16, seed=7)
            np.savez(work / f"calib-{kind}.npz", **{n: np.stack([c[n] for c in calib])
                                                   for n in calib[0]})
            # edgepack quantizes the very same fp32 ONNX file the ORT defaults get
            p = common.run(edgepack_cmd() + ["build", fp32, "--profile", "x86-cpu-int8", "--out", work / "dist8",
                                             "--name", f"bench-{kind}", "--force", "--json", "--calibration",
                                             work / f"calib-{kind}.npz"], cwd=common.REPO).check()
            ep = Path(json.loads(p.out)["bundle"])
            ep_manifest = json.loads((ep / "manifest.json").read_text())
            variants = {"fp32": fp32, "edgepack": ep / "model" / "model.onnx"}
            errors = {}
            for name, fn in (("ort-dynamic", lambda s, d: quantize_dynamic(str(s), str(d))),
                             ("ort-static", lambda s, d: quantize_static(str(s), str(d), _Reader(calib)))):
                out = work / f"{kind}-{name}.onnx"
                try:
                    fn(fp32, out)
                    variants[name] = out
                except Exception as exc:  # a default that fails is a finding, not a crash
                    errors[name] = f"{type(exc).__name__}: {short(exc, 200)}"
            # pseudo-bundles: the fp32 bundle with its model swapped, so bare_loop opens every
            # variant with the same settings and feeds
            dirs = {}
            for name, model in variants.items():
                d = work / "variants" / f"{kind}-{name}"
                if d.exists():
                    shutil.rmtree(d)
                shutil.copytree(fp32_bundle, d)
                shutil.copyfile(model, d / "model" / "model.onnx")
                dirs[name] = d
            ref = _outputs(fp32, evals)
            cos, size, p50 = {}, {}, {n: [] for n in dirs}
            for name, model in variants.items():
                size[name] = model.stat().st_size / 1e6
                try:
                    cos[name] = _cosines(ref, _outputs(model, evals))
                except Exception as exc:
                    errors[name] = f"does not run: {type(exc).__name__}: {short(exc, 200)}"
            for rep in range(reps):
                res.sample_load(f"quant {kind} rep {rep + 1}")
                order = list(dirs)
                if rep % 2:
                    order.reverse()
                for name in order:
                    if name in errors:
                        continue
                    p = common.run([common.PY, common.REPO / "bench" / "bare_loop.py", dirs[name]] + bare_args)
                    if p.rc != 0:
                        errors[name] = f"bare loop failed: {p.err.strip()[-200:]}"
                        continue
                    p50[name].append(p.json()["p50_ms"])
            q = ep_manifest.get("quantization") or {}
            recipe = {k: q.get(k) for k in ("mode", "per_channel", "format", "activation_type",
                                             "calibration_method", "calibration")}
            peers = [n for n in ("ort-dynamic", "ort-static") if p50.get(n)]
            for peer in ("ort-dynamic", "ort-static"):
                if peer in errors:
                    res.row(label, f"vs {peer}", "-", {"median": None}, None, peer,
                            extra={"skipped": True, "error": errors[peer]})
                    continue
                res.row(label, f"p50 latency vs {peer}", "ms", p50["edgepack"], p50[peer], peer,
                        extra={"recipe": recipe})
                res.row(label, f"mean cosine to fp32 vs {peer}", "cos",
                        [float(np.mean(cos["edgepack"]))], [float(np.mean(cos[peer]))], peer,
                        extra={"min_cosine_edgepack": min(cos["edgepack"]), "min_cosine_peer": min(cos[peer])})
                res.row(label, f"model size vs {peer}", "MB", [size["edgepack"]], [size[peer]], peer)
            res.row(label, "p50 latency int8 (edgepack) vs fp32", "ms", p50["edgepack"], p50["fp32"], "fp32 model",
                    extra={"edgepack_warned_slower": any("SLOWER" in w for w in ep_manifest.get("warnings", [])),
                           "build_host_latency": q.get("host_latency")})
            if peers:
                ep_med = common.summary(p50["edgepack"])["median"]
                best_lat = min(common.summary(p50[n])["median"] for n in peers)
                best_cos = max(float(np.mean(cos[n])) for n in peers)
                ep_cos = float(np.mean(cos["edgepack"]))
                met = ep_med <= best_lat * (1 + NOISE) and ep_cos >= best_cos - 1e-3
                res.row(label, "goal: never slower, never less accurate than the better default", "-",
                        [ep_med], [best_lat], "best ORT default (latency)",
                        goal=f"p50 ≤ best default × {1 + NOISE:.2f} and cosine ≥ best default − 0.001",
                        met=met, extra={"edgepack_cosine": ep_cos, "best_default_cosine": best_cos})
            for name, err in errors.items():
                res.note(f"{label}: {name}: {err}")
            res.note(f"{label}: edgepack recipe {recipe}; sizes MB " +
                     ", ".join(f"{k} {v:.2f}" for k, v in size.items()))
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
        res.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
