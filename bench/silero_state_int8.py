"""Why Silero VAD x coral fails: its recurrent state in one int8 tensor (docs/FORMATS.md, "Real models").

Quantizes the float TF-Lite of a raspberry-pi bundle the way the coral build does (the TF-Lite
backend's own `quantize`, static int8 with the `minmax` calibration: the union of every sample's
range, on the first 32 calibration chunks), runs both in the agent's LiteRT runtime (which quantizes
the float feeds for int8 inputs, as on a device) and prints, per reference sample, the speech
probability and the cosine of `stateN` and of each of its halves (h, c).

    .venv/bin/edgepack build .zoo/site/silero_vad/data/silero_vad.onnx --profile raspberry-pi \\
        --inputs .zoo/data/vad_inputs.npz --name silero-vad --out /tmp/rpi
    .venv/bin/python bench/silero_state_int8.py /tmp/rpi/silero-vad-*-raspberry-pi/model/model.tflite
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ZOO = Path(os.environ.get("EDGEPACK_ZOO") or ROOT / ".zoo")

from agent.parity import cosine  # noqa: E402
from agent.runtimes import load_timed  # noqa: E402
from packager import formats, profiles  # noqa: E402
from packager.formats import Format  # noqa: E402
from packager.formats.base import QuantPlan  # noqa: E402
from packager.formats.tflite import io  # noqa: E402


def _samples(d) -> list[dict]:
    return [{"input": d["input"][i].astype(np.float32), "state": d["state"][i].astype(np.float32)}
            for i in range(len(d["input"]))]


def _run(path: Path, samples: list[dict]) -> dict:
    rt, _ = load_timed("litert", str(path), {})
    outs = [rt.run(s) for s in samples]
    return {k: [np.asarray(o[k]) for o in outs] for k in outs[0]}


def main(float_path: str) -> None:
    ref_in = _samples(np.load(ZOO / "data" / "vad_inputs.npz"))
    calib = _samples(np.load(ZOO / "data" / "vad_calib.npz"))[:32]   # the build uses calibration_samples: 32
    backend = formats.get(Format.TFLITE)
    plan = QuantPlan(precision="int8", mode="static", calibration_method="minmax")
    q = backend.quantize(io.read(Path(float_path)), plan, calib, Path(tempfile.mkdtemp()), profiles.load("coral"))
    _, _, ins, outs = io.signature_details(q.path)
    print("int8 scales (scale, zero point): "
          + ", ".join(f"{n} {d['quantization']}" for n, d in {**ins, **outs}.items()))
    ref, got = _run(Path(float_path), ref_in), _run(q.path, ref_in)
    print("sample  p float  p int8  |diff|  cos stateN  cos h   cos c   max|h|  max|c|")
    for i in range(len(ref_in)):
        r, g = (x["stateN"][i].astype(np.float64) for x in (ref, got))
        p, pq = ref["output"][i].item(), got["output"][i].item()
        print(f"{i:6d}  {p:7.3f}  {pq:6.3f}  {abs(p - pq):6.3f}  {cosine(r.ravel(), g.ravel()):10.4f}  "
              f"{cosine(r[0].ravel(), g[0].ravel()):6.4f}  {cosine(r[1].ravel(), g[1].ravel()):6.4f}  "
              f"{np.abs(r[0]).max():6.3f}  {np.abs(r[1]).max():6.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
