"""Quantize a TorchScript artifact.

- fp16: weights stored as float16 (for CUDA devices: Jetson). The agent runs it in half
  precision on CUDA and falls back to float32 on a CPU-only device (reported). The build also
  runs the half model on the host CPU and records how far it is from float32.
- int8: dynamic only (int8 weights for Linear/LSTM, activations quantized on the fly), through
  torch.ao.quantization.quantize_dynamic_jit. Static int8 is not offered for TorchScript: use
  ONNX (QDQ) or TF-Lite for that.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ...errors import ConversionError
from .. import Artifact
from ..base import QuantPlan

log = logging.getLogger(__name__)


def run(art: Artifact, plan: QuantPlan, workdir: Path) -> Artifact:
    precision = plan.precision
    if precision == "fp32":
        return art
    import torch

    t0 = time.perf_counter()
    model = torch.jit.load(str(art.path), map_location="cpu").eval()
    if precision == "fp16":
        half = model.half()
        out = workdir / "model.fp16.pt"
        torch.jit.save(half, str(out))
        info = {"method": "float16 weights (model.half()); float32 I/O at the agent",
                "device": "CUDA runs float16; CPU-only devices fall back to float32"}
        info.update(_cpu_half_check(model, torch.jit.load(str(out), map_location="cpu"), art))
    else:
        out = workdir / "model.int8.pt"
        _quantize_dynamic_in_child(art.path, out, art.info.get("mode"))
        qmodel = torch.jit.load(str(out), map_location="cpu")
        graph = str(qmodel.inlined_graph) if hasattr(qmodel, "inlined_graph") else str(qmodel.graph)
        count = graph.count("quantized::linear_dynamic") + graph.count("quantized::quantized_lstm")
        info = {"mode": "dynamic", "method": "torch.ao.quantization.quantize_dynamic_jit",
                "quantized_layers": count}
        if count == 0:
            art = art.warn("int8 dynamic found no Linear/LSTM layer to quantize: the model is unchanged "
                           "in precision (use fp16, or --format onnx/tflite for int8 convolutions)")
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return art.replace(path=out, precision=precision, info=info)


_CHILD = """
import sys, warnings
import torch
warnings.simplefilter("ignore")
m = torch.jit.load(sys.argv[1], map_location="cpu").eval()
q = torch.ao.quantization.quantize_dynamic_jit(m, {"": torch.ao.quantization.default_dynamic_qconfig})
torch.jit.save(q, sys.argv[2])
"""


def _quantize_dynamic_in_child(src: Path, out: Path, mode) -> None:
    """quantize_dynamic_jit can crash the process (a segfault on scripted nn.Transformer layers in
    torch 2.13, measured): run it in a child so a crash becomes a clear error, not a dead build."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(out)], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0 or not out.is_file():
        why = (f"it crashed (signal {-proc.returncode})" if proc.returncode < 0 else
               " ".join(proc.stderr.strip().splitlines()[-1:])[:300])
        hint = "use --format onnx --precision int8 (dynamic int8 for MatMul models), or --precision fp16"
        if mode == "script":
            hint = ("the model was scripted; if its trace is sound try --torchscript-mode trace, or " + hint)
        raise ConversionError(f"TorchScript int8 dynamic quantization (quantize_dynamic_jit) failed: {why}", hint)


def _cpu_half_check(fp32_model, half_model, art: Artifact) -> dict:
    """Run the half model in float16 on the host CPU against float32: overflow shows up here."""
    import torch

    rng = np.random.default_rng(3)
    args32, args16 = [], []
    for s in art.inputs:
        shape = s.example_shape or [d if isinstance(d, int) else 1 for d in s.shape]
        if np.dtype(s.dtype).kind != "f":
            return {"cpu_half_check": "skipped (non-float inputs)"}
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        args32.append(x)
        args16.append(x.half())
    try:
        with torch.no_grad():
            a = fp32_model(*args32)
            b = half_model(*args16)
    except Exception as exc:
        return {"cpu_half_check": f"not run on this CPU ({type(exc).__name__})"}
    a = a if isinstance(a, torch.Tensor) else next(iter(a.values() if isinstance(a, dict) else a))
    b = b if isinstance(b, torch.Tensor) else next(iter(b.values() if isinstance(b, dict) else b))
    b = b.float()
    if not torch.isfinite(b).all():
        raise ConversionError("the float16 model produces NaN/Inf where float32 does not (overflow)",
                              "use --precision fp32 for this model")
    a, b = a.double().flatten(), b.double().flatten()
    cos = float(torch.dot(a, b) / (a.norm() * b.norm() + 1e-30))
    return {"cpu_half_check": {"cosine_vs_fp32": round(cos, 6), "max_abs": float((a - b).abs().max())}}
