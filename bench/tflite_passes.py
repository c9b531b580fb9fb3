"""A graph pass before onnx2tf, on the PP-OCR models' TF-Lite: ops, runtime needs and latency with it and without.

Builds each (model, profile) the pass is about twice in one run, once with `passes.<pass>.enabled:
true` and once with `false`, then self-tests both bundles alternately (the bundle's own agent,
LiteRT on the CPU) and prints the op counts (TRANSPOSE, grouped CONV_2D, DEPTHWISE_CONV_2D,
HARD_SWISH), CONV_2D's op versions, the model's min_runtime_version and the p50 of each, with the
ratio with / without.

    .venv/bin/python bench/tflite_passes.py --pass scalar-operands [--rounds 2]
    .venv/bin/python bench/tflite_passes.py --pass depthwise-strides
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ZOO = Path(os.environ.get("EDGEPACK_ZOO") or ROOT / ".zoo")
OCR = ZOO / "site" / "rapidocr_onnxruntime" / "models"
MODELS = {"ppocr-det": ("ch_PP-OCRv4_det_infer.onnx", "ocr_det", "x=1x3x480x480"),
          "ppocr-rec": ("ch_PP-OCRv4_rec_infer.onnx", "ocr_rec", "x=1x3x48x320"),
          "ppocr-cls": ("ch_ppocr_mobile_v2.0_cls_infer.onnx", "ocr_cls", "x=1x3x48x192")}
# what each pass changes: [1] constants (PP-LCNet) for a float TF-Lite; depthwise convs with strides
# (2, 1) / (1, 2) for int8 (coral; rec x coral is refused, so only cls), and float, which `auto` skips
PASSES = {"scalar-operands": (("ppocr-det", "raspberry-pi"), ("ppocr-rec", "raspberry-pi")),
          "depthwise-strides": (("ppocr-cls", "coral"), ("ppocr-cls", "raspberry-pi"), ("ppocr-rec", "raspberry-pi"))}


def ops(tflite: Path) -> dict:
    from packager.formats.tflite import io, needs

    it = io.interpreter(tflite, plain_ops=True)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    kinds = Counter()
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        name = op["op_name"]
        if name == "CONV_2D":
            x, w = (tensors[i]["shape"] for i in op["inputs"][:2])
            name = "CONV_2D (grouped)" if w[3] != x[3] else name
        kinds[name] += 1
    found = {k: kinds.get(k, 0) for k in ("TRANSPOSE", "CONV_2D (grouped)", "DEPTHWISE_CONV_2D", "HARD_SWISH")}
    return {**found, "CONV_2D versions": needs.op_versions(tflite).get("CONV_2D", []),
            "min_runtime_version": needs.min_runtime_version(tflite)}


def main() -> int:
    from packager.pipeline import BuildOptions, build
    from packager.selftest import run_local

    ap = argparse.ArgumentParser()
    ap.add_argument("--pass", dest="name", choices=sorted(PASSES), required=True)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix=f"{args.name}-"))
    rows = []
    for name, profile in PASSES[args.name]:
        model, data, shape = MODELS[name]
        bundles, int8 = {}, profile == "coral"
        for tag, on in (("with", True), ("without", False)):
            res = build(BuildOptions(source=str(OCR / model), profile=profile, out=out / name / profile / tag,
                                     inputs=ZOO / "data" / f"{data}_inputs.npz", input_shapes=[shape],
                                     calibration=ZOO / "data" / f"{data}_calib.npz" if int8 else None,
                                     profile_patch={"passes": {args.name: {"enabled": on}}}))
            bundles[tag] = res.bundle
        p50 = {"with": [], "without": []}
        for _ in range(args.rounds):
            for tag in ("without", "with"):
                report, code = run_local(bundles[tag], runs=100, seconds=5)
                assert code == 0, report["verdict"]
                p50[tag].append(report["latency"]["p50_ms"])
        row = {"pass": args.name, "model": name, "profile": profile,
               **{f"ops_{t}": ops(b / "model" / "model.tflite") for t, b in bundles.items()},
               **{f"p50_ms_{t}": round(statistics.median(v), 2) for t, v in p50.items()}}
        row["ratio"] = round(row["p50_ms_with"] / row["p50_ms_without"], 2)
        rows.append(row)
        print(json.dumps(row))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
