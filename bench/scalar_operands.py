"""The scalar-operands pass on the PP-OCRv4 models' float TF-Lite: ops and latency with it and without.

Builds each model for raspberry-pi (fp32 TF-Lite through onnx2tf) twice in one run, once as shipped
and once with `passes.scalar-operands.enabled: false`, then self-tests both bundles alternately
(the bundle's own agent, LiteRT on the CPU) and prints the op counts (TRANSPOSE, grouped CONV_2D,
DEPTHWISE_CONV_2D, HARD_SWISH) and the p50 of each, with the ratio with / without.

    .venv/bin/python bench/scalar_operands.py [--rounds 2]
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
MODELS = {"ppocr-det": ("ch_PP-OCRv4_det_infer.onnx", "ocr_det_inputs.npz", "x=1x3x480x480"),
          "ppocr-rec": ("ch_PP-OCRv4_rec_infer.onnx", "ocr_rec_inputs.npz", "x=1x3x48x320")}
OFF = {"passes": {"scalar-operands": {"enabled": False}}}


def ops(tflite: Path) -> dict:
    from packager.formats.tflite import io

    it = io.interpreter(tflite, plain_ops=True)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    kinds = Counter()
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        name = op["op_name"]
        if name == "CONV_2D":
            x, w = (tensors[i]["shape"] for i in op["inputs"][:2])
            name = "CONV_2D (grouped)" if w[3] != x[3] else name
        kinds[name] += 1
    return {k: kinds.get(k, 0) for k in ("TRANSPOSE", "CONV_2D (grouped)", "DEPTHWISE_CONV_2D", "HARD_SWISH")}


def main() -> int:
    from packager.pipeline import BuildOptions, build
    from packager.selftest import run_local

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="scalar-operands-"))
    rows = []
    for name, (model, inputs, shape) in MODELS.items():
        bundles = {}
        for tag, patch in (("with", None), ("without", OFF)):
            res = build(BuildOptions(source=str(OCR / model), profile="raspberry-pi", out=out / name / tag,
                                     inputs=ZOO / "data" / inputs, input_shapes=[shape], profile_patch=patch))
            bundles[tag] = res.bundle
        p50 = {"with": [], "without": []}
        for _ in range(args.rounds):
            for tag in ("without", "with"):
                report, code = run_local(bundles[tag], runs=100, seconds=5)
                assert code == 0, report["verdict"]
                p50[tag].append(report["latency"]["p50_ms"])
        row = {"model": name, **{f"ops_{t}": ops(b / "model" / "model.tflite") for t, b in bundles.items()},
               **{f"p50_ms_{t}": round(statistics.median(v), 2) for t, v in p50.items()}}
        row["ratio"] = round(row["p50_ms_with"] / row["p50_ms_without"], 2)
        rows.append(row)
        print(json.dumps(row))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
