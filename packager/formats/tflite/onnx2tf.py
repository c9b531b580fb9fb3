"""ONNX -> TF-Lite through onnx2tf, run as a subprocess from its own venv (.venv-onnx2tf/).

onnx2tf hard-pins tensorflow 2.19, numpy 1.26, onnx 1.19 and onnxruntime 1.23, which cannot live
beside the main venv, so `scripts/setup-onnx2tf.sh` gives it an isolated venv and this module calls
it with a timeout. Only its float32 flatbuffer is used: fp16 and int8 are done afterwards by
ai-edge-quantizer in the main venv (quantize.py), as for every other TF-Lite route.

No network, by construction: the child blocks socket connections and name lookups before onnx2tf is
imported and replaces onnx2tf's sample-image downloader with one that returns zeros; onnx2tf's integer
quantization (the only step that wants that sample) is never asked for, and its dummy inference is
fed edgepack's own example input (`custom_input_op_name_np_data_path`).

Layout: onnx2tf turns 3-D/4-D/5-D channels-first inputs into channels-last. edgepack asks for that only
for the inputs the route's layout plan names (ctx.layout: 4-D NCHW inputs under a `layout: NHWC`
profile; recorded as `conversion.layout_changes`, the input's manifest layout becomes NHWC and
`vectors.npz` holds NHWC inputs); every other input keeps its shape (`keep_ncw_or_nchw_or_ncdhw_input_names`).
The graph arrives with fixed sizes (the static-shapes pass runs first: this backend needs them).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from ...errors import ConversionError
from .. import Artifact
from ..base import BuildContext
from . import io

REPO = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get("EDGEPACK_ONNX2TF_VENV", REPO / ".venv-onnx2tf"))
SETUP = "bash scripts/setup-onnx2tf.sh"
TIMEOUT_S = float(os.environ.get("EDGEPACK_ONNX2TF_TIMEOUT", "900"))

# Runs first in the child, before onnx2tf (or TensorFlow) is imported.
GUARD = r"""
import socket
def _blocked(*a, **k):
    raise OSError("edgepack: network access is disabled while onnx2tf runs")
socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
import onnx2tf, sys
"""
# Then onnx2tf's sample downloader is replaced everywhere it was imported by name.
NO_DOWNLOAD = r"""
import numpy as np
def _no_download(*a, **k):
    # onnx2tf fetches a 20x128x128x3 image sample whenever every input looks like an NHWC image; with
    # custom_input_op_name_np_data_path (edgepack's example) that sample is never used: hand it zeros.
    return np.zeros((20, 128, 128, 3), dtype=np.float32)
for mod in list(sys.modules.values()):
    if getattr(mod, "__name__", "").startswith("onnx2tf") and hasattr(mod, "download_test_image_data"):
        mod.download_test_image_data = _no_download
"""
# Runs inside .venv-onnx2tf. argv[1]: JSON kwargs for onnx2tf.convert.
_CHILD = GUARD + NO_DOWNLOAD + r"""
import json
onnx2tf.convert(**json.loads(sys.argv[1]))
import onnx2tf as o, tensorflow as tf, onnx
print("EDGEPACK_VERSIONS " + json.dumps({"onnx2tf": getattr(o, "__version__", "?"),
      "tensorflow": tf.__version__, "onnx": onnx.__version__}))
"""


def python() -> Path:
    return VENV / "bin" / "python"


def require() -> Path:
    py = python()
    if not py.exists():
        raise ConversionError(f"ONNX -> TF-Lite needs onnx2tf in its own virtual environment {VENV}, "
                              "which is missing",
                              f"install it (one time, about 2.6 GB): {SETUP}   (from the repository root {REPO})")
    return py


def convert(ctx: BuildContext, onnx_art: Artifact) -> Artifact:
    """The ONNX artifact as a float32 TF-Lite file (ctx.workdir/model.tflite)."""
    py = require()
    source, example, changes = ctx.source, ctx.example, ctx.layout
    keep = [s.name for s in source.inputs if s.name not in changes and len(s.shape) in (3, 4, 5)]
    work = ctx.workdir / "onnx2tf"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    # onnx2tf's dummy inference (its op-by-op shape and accuracy checks) gets edgepack's example
    # input for every input, in the ONNX layout, never a downloaded sample.
    custom = []
    for s in source.inputs:
        p = work / f"input_{len(custom)}.npy"
        np.save(p, np.ascontiguousarray(example[s.name]))
        custom.append([s.name, str(p)])
    kwargs = {
        "input_onnx_file_path": str(onnx_art.path),
        "output_folder_path": str(work / "out"),
        "copy_onnx_input_output_names_to_tflite": True,
        "non_verbose": True,
        # The example's shapes (onnx2tf may still leave the batch axis symbolic in the signature).
        "overwrite_input_shape": [f"{s.name}:" + ",".join(str(int(d)) for d in np.shape(example[s.name]))
                                  for s in source.inputs],
        "custom_input_op_name_np_data_path": custom,
    }
    if keep:
        kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] = keep
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", NO_PROXY="*",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(py), "-c", _CHILD, json.dumps(kwargs)], cwd=str(work), env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"ONNX -> TF-Lite (onnx2tf) ran past {TIMEOUT_S:.0f} s and was stopped",
                              "use --format onnx, or set EDGEPACK_ONNX2TF_TIMEOUT higher") from exc
    seconds = time.perf_counter() - t0
    produced = sorted((work / "out").glob("*_float32.tflite"))
    if proc.returncode != 0 or not produced:
        raise ConversionError(f"ONNX -> TF-Lite (onnx2tf) failed (exit {proc.returncode}): "
                              f"{_tail(proc.stderr or proc.stdout)}",
                              "use --format onnx, which runs the model as given")
    versions = {}
    for line in proc.stdout.splitlines():
        if line.startswith("EDGEPACK_VERSIONS "):
            versions = json.loads(line.split(" ", 1)[1])
    out = ctx.workdir / "model.tflite"
    shutil.copyfile(produced[0], out)
    art = io.with_source_layouts(io.read(out, "fp32", source.input_names), ctx, changes)
    _check_io(art, source, changes)
    info = {"route": "onnx2tf (isolated venv .venv-onnx2tf, subprocess, no network)",
            "seconds": round(seconds, 3), "toolchain": versions,
            "static_shapes": all(isinstance(d, int) for t in art.inputs + art.outputs for d in t.shape)}
    if changes:
        info["layout_changes"] = changes
    return art.replace(info=info)


def _check_io(art: Artifact, source, changes: dict) -> None:
    """The TF-Lite model must take the inputs edgepack will feed and give the ONNX outputs by name."""
    got_in = {s.name: list(s.example_shape or s.shape) for s in art.inputs}
    for spec in source.inputs:
        want = list(getattr(spec, "example_shape", None) or spec.shape)
        if spec.name in changes:
            want = [want[i] for i in changes[spec.name]["perm"]]
        got = got_in.get(spec.name)
        if got is None:
            raise ConversionError(f"onnx2tf's TF-Lite model has no input '{spec.name}' (it has {sorted(got_in)})",
                                  "use --format onnx")
        if len(got) != len(want) or any(isinstance(w, int) and w != g for w, g in zip(want, got)):
            raise ConversionError(f"onnx2tf changed input '{spec.name}' to shape {got} (expected {want})",
                                  "use --format onnx, which keeps the model's layout")
    want_out = {s.name for s in source.outputs}
    got_out = {s.name for s in art.outputs}
    if want_out and not want_out <= got_out:
        raise ConversionError(f"onnx2tf's TF-Lite outputs {sorted(got_out)} do not match the ONNX outputs "
                              f"{sorted(want_out)}", "use --format onnx")


def _tail(text: str, n: int = 400) -> str:
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    return " ".join(" ".join(lines[-6:]).split())[-n:] or "(no output)"
