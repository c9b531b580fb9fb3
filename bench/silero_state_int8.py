"""Why Silero VAD x coral fails: its recurrent state in one int8 tensor (docs/FORMATS.md, "Real models").

Quantizes the float TF-Lite of a raspberry-pi bundle with ai-edge-quantizer (static_wi8_ai8, the
union of every calibration sample's range, as the coral build's `minmax` recipe) and prints, per
reference sample, the cosine of the speech probability and of each half of `stateN` (h, c).

    .venv/bin/edgepack build .zoo/site/silero_vad/data/silero_vad.onnx --profile raspberry-pi \\
        --inputs .zoo/data/vad_inputs.npz --name silero-vad --out /tmp/rpi
    .venv/bin/python bench/silero_state_int8.py /tmp/rpi/silero-vad-*-raspberry-pi/model/model.tflite
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ZOO = Path(os.environ.get("EDGEPACK_ZOO") or Path(__file__).resolve().parents[1] / ".zoo")


def _samples(d):
    return [{"input": d["input"][i].astype(np.float32), "state": d["state"][i].astype(np.float32)}
            for i in range(len(d["input"]))]


def _union(old, new):
    if not old:
        return new
    return {**new, "min": np.minimum(old["min"], new["min"]), "max": np.maximum(old["max"], new["max"])}


def quantize(float_path: str, calib: list, out: str) -> str:
    from ai_edge_quantizer import calibrator, quantizer, recipe

    qz = quantizer.Quantizer(float_path)
    qz.load_quantization_recipe(recipe.static_wi8_ai8())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cal = calibrator.Calibrator(qz._float_model_buffer, qsv_update_func=_union)   # noqa: SLF001
        cal.calibrate({"serving_default": calib}, qz._recipe_manager)                # noqa: SLF001
        qz.quantize(cal.get_model_qsvs()).export_model(out, overwrite=True)
    return out


def run(path: str, samples: list) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(path).get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    res = {k: [] for k in outs}
    for s in samples:
        feed = {}
        for n, det in ins.items():
            x = s[n]
            if det["dtype"] != np.float32:
                sc, zp = det["quantization"]
                x = np.clip(np.round(x / sc + zp), -128, 127).astype(det["dtype"])
            feed[n] = x
        got = runner(**feed)
        for k, det in outs.items():
            y = got[k]
            if det["dtype"] != np.float32:
                sc, zp = det["quantization"]
                y = (y.astype(np.float32) - zp) * sc
            res[k].append(y)
    scales = {n: d["quantization"] for n, d in {**ins, **outs}.items()}
    return {k: np.stack(v) for k, v in res.items()}, scales


def cos(a, b) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def main(float_path: str) -> None:
    ref_in = _samples(np.load(ZOO / "data" / "vad_inputs.npz"))
    calib = _samples(np.load(ZOO / "data" / "vad_calib.npz"))[:32]   # the build uses calibration_samples: 32
    q_path = quantize(float_path, calib, str(Path(tempfile.mkdtemp()) / "int8.tflite"))
    ref, _ = run(float_path, ref_in)
    got, scales = run(q_path, ref_in)
    print(f"int8 scales (scale, zero point): state {scales['state']}, stateN {scales['stateN']}, "
          f"input {scales['input']}")
    print("sample  p float  p int8  |diff|  cos stateN  cos h   cos c   max|h|  max|c|")
    for i in range(len(ref_in)):
        r, g = ref["stateN"][i], got["stateN"][i]
        print(f"{i:6d}  {ref['output'][i].item():7.3f}  {got['output'][i].item():6.3f}  "
              f"{abs(ref['output'][i].item() - got['output'][i].item()):6.3f}  {cos(r, g):10.4f}  "
              f"{cos(r[0], g[0]):6.4f}  {cos(r[1], g[1]):6.4f}  {np.abs(r[0]).max():6.3f}  {np.abs(r[1]).max():6.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
