"""The int8 recipe edgepack chooses (x86-cpu-int8: measured recipes + fallbacks) against ONNX
Runtime's `quantize_static` / `quantize_dynamic` called with their defaults, on the real-model zoo
(tests/zoo: pretrained models from pinned PyPI packages, real sample data).

Every quantizer gets the same float ONNX file (the zoo model), the same 32 calibration samples, and
is judged on the same 8 sample inputs against the float model with edgepack's int8 parity code
(agent/parity.py): whole-output cosine, worst sample, worst channel slice (a YOLO score row), all
outputs (the lowest). Latency: the bare loop (bench/bare_loop.py) over pseudo-bundles that differ only
in model.onnx, interleaved. Needs `bash scripts/setup-zoo.sh`; cases that are not installed are skipped.

    python -m bench.quant --zoo-only [--only yolov8s-fall,ppocr-det] --out bench/results/quant.json
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from packager.errors import short

from . import common

sys.path.insert(0, str(common.REPO / "tests" / "zoo"))
import zoo  # noqa: E402

CASES = ("yolov8s-fall", "ppocr-det", "ppocr-rec", "ppocr-cls", "minilm-onnx")
INT8 = {"cosine_min": 0.98, "sample_cosine_min": 0.97, "slice_cosine_min": 0.95, "slice_atol": 0.05, "top1_min": 0.9}


class Reader:
    def __init__(self, samples):
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)


def _samples(path: str, names: list[str], limit: int | None = None) -> list[dict]:
    with np.load(path) as d:
        n = len(d[names[0]])
        n = min(n, limit) if limit else n
        return [{k: np.asarray(d[k][i]) for k in names} for i in range(n)]


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _feed(sess, s: dict) -> dict:
    want = {i.name: i for i in sess.get_inputs()}
    out = {}
    for k, v in s.items():
        if k in want:
            v = v.astype(np.float32) if v.dtype.kind == "f" else v
            rank = len(want[k].shape)
            out[k] = v[None] if v.ndim == rank - 1 else v
    return out


def _accuracy(float_path: Path, model: Path, feeds: list[dict]) -> dict:
    from agent import parity
    from packager.quant.onnx_tensors import softmax_outputs

    fs, qs = _session(float_path), _session(model)
    names = [o.name for o in fs.get_outputs()]
    ref = {n: [] for n in names}
    got = {n: [] for n in names}
    for f in feeds:
        for n, a in zip(names, fs.run(None, _feed(fs, f))):
            ref[n].append(a)
        for n, a in zip([o.name for o in qs.get_outputs()], qs.run(None, _feed(qs, f))):
            got.setdefault(n, []).append(a)
    res = parity.compare(ref, got, dict(INT8, classifier_outputs=sorted(softmax_outputs(float_path))))
    out = {"score": parity.score(res), "passed": res["passed"]}
    for o in res["outputs"]:
        out[o["name"]] = {"cosine": o.get("cosine"), "worst_sample": (o.get("worst_sample") or {}).get("cosine"),
                          "worst_slice": (o.get("worst_slice") or {}).get("cosine")}
    return out


def run_zoo(res, work: Path, reps: int, bare_args: list[str], only: list[str] | None = None) -> None:
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    from .probe import edgepack_cmd

    for name in CASES:
        if only and name not in only:
            continue
        case = zoo.BY_NAME[name]
        try:
            paths = case.resolve()
        except zoo.ZooMissing as exc:
            res.note(f"{name}: skipped ({exc})")
            continue
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        env = case.env()
        fp32 = Path(paths["source"])
        # the fp32 bundle (for its manifest: inputs and settings of the pseudo-bundles)
        p = common.run(edgepack_cmd() + case.build_argv("x86-cpu", d / "dist") + ["--force"], cwd=d, env=env).check()
        fp32_bundle = Path(p.json()["bundle"])
        t0 = time.perf_counter()
        p = common.run(edgepack_cmd() + case.build_argv("x86-cpu-int8", d / "dist") + ["--force"], cwd=d, env=env,
                       timeout=3600)
        build_s = time.perf_counter() - t0
        if p.rc != 0:
            res.note(f"{name}: edgepack int8 build failed: {short(p.err, 400)}")
            continue
        ep_bundle = Path(p.json()["bundle"])
        q = json.loads((ep_bundle / "manifest.json").read_text())["quantization"]
        inputs = [s["name"] for s in json.loads((fp32_bundle / "manifest.json").read_text())["inputs"]]
        fs = _session(fp32)
        calib = [_feed(fs, c) for c in _samples(paths["calibration"], inputs, 32)]
        feeds = [_feed(fs, f) for f in _samples(paths["inputs"], inputs, 8)]
        variants = {"fp32": fp32, "edgepack": ep_bundle / "model" / "model.onnx"}
        errors, seconds = {}, {"edgepack": build_s}
        for peer, fn in (("ort-static", lambda s, o: quantize_static(str(s), str(o), Reader(calib))),
                         ("ort-dynamic", lambda s, o: quantize_dynamic(str(s), str(o)))):
            out = d / f"{peer}.onnx"
            t0 = time.perf_counter()
            try:
                fn(fp32, out)
                variants[peer] = out
            except Exception as exc:  # a default that fails is a finding, not a crash
                errors[peer] = f"{type(exc).__name__}: {short(exc, 200)}"
            seconds[peer] = time.perf_counter() - t0
        acc = {}
        for v, path in variants.items():
            if v == "fp32":
                continue
            try:
                acc[v] = _accuracy(fp32, path, feeds)
            except Exception as exc:
                errors[v] = f"does not run: {type(exc).__name__}: {short(exc, 200)}"
        dirs = {}
        for v, path in variants.items():
            if v in errors:
                continue
            vd = d / "variants" / v
            if vd.exists():
                shutil.rmtree(vd)
            shutil.copytree(fp32_bundle, vd)
            shutil.copyfile(path, vd / "model" / "model.onnx")
            dirs[v] = vd
        p50 = {v: [] for v in dirs}
        for rep in range(reps):
            res.sample_load(f"quant zoo {name} rep {rep + 1}")
            for v in (list(dirs) if rep % 2 == 0 else list(reversed(dirs))):
                pr = common.run([common.PY, common.REPO / "bench" / "bare_loop.py", dirs[v]] + bare_args, timeout=1800)
                if pr.rc == 0:
                    p50[v].append(pr.json()["p50_ms"])
        recipe = {"recipe": q.get("recipe_label"), "float_nodes": q.get("float_nodes"),
                  "attempts": len(q.get("attempts") or []), "fallback_cost": q.get("fallback_cost")}
        for peer in ("ort-static", "ort-dynamic"):
            if peer in errors or peer not in acc:
                res.row(name, f"vs {peer}", "-", {"median": None}, None, peer,
                        extra={"skipped": True, "error": errors.get(peer)})
                continue
            res.row(name, f"parity score (lowest cosine / worst sample / worst slice) vs {peer}", "cos",
                    [acc["edgepack"]["score"]], [acc[peer]["score"]], peer,
                    goal="never less accurate", met=acc["edgepack"]["score"] >= acc[peer]["score"] - 1e-4,
                    extra={"edgepack": acc["edgepack"], "peer": acc[peer], **recipe})
            res.row(name, f"p50 latency vs {peer}", "ms", p50["edgepack"], p50.get(peer), peer)
            res.row(name, f"quantize seconds vs {peer}", "s", [seconds["edgepack"]], [seconds[peer]], peer,
                    extra={"note": "edgepack: the whole int8 build (search, parity, bundle); ORT: the call alone"})
        res.row(name, "p50 latency int8 (edgepack) vs fp32", "ms", p50.get("edgepack"), p50.get("fp32"), "fp32 model",
                extra={"build_host_latency": q.get("host_latency")})
        for v, e in errors.items():
            res.note(f"{name}: {v}: {e}")
        res.note(f"{name}: edgepack {recipe}; sizes MB " +
                 ", ".join(f"{k} {Path(v).stat().st_size / 1e6:.2f}" for k, v in variants.items()))
