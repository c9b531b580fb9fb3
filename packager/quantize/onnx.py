"""Quantize an ONNX artifact: fp16, int8 dynamic, int8 static (QDQ) with calibration.

Defaults, from measurements on a 2-core AVX2 x86 host (see docs/QUANTIZATION.md):
- int8 `auto` picks static QDQ for models with Conv (dynamic quantization leaves convs in
  float or uses slow ConvInteger) and dynamic for MatMul/Gemm-only models (a transformer ran
  1.6x faster dynamic, with no calibration data needed).
- per-channel weights: a transformer kept cosine 0.990 per-channel vs 0.942 per-tensor.
- fp16 keeps float32 inputs and outputs (keep_io_types) so vectors and callers stay float32.
  It uses onnxruntime's float16 converter; onnxconverter-common's breaks attention Casts.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..errors import ConversionError
from ..formats import Artifact

log = logging.getLogger(__name__)


def quantize(art: Artifact, profile, precision: str, calibration: list[dict] | None,
             workdir: Path) -> Artifact:
    if precision == "fp32":
        return art
    if precision == "fp16":
        return _fp16(art, workdir)
    if precision == "int8":
        return _int8(art, profile, calibration, workdir)
    raise ConversionError(f"ONNX cannot take precision '{precision}'", "use fp32, fp16 or int8")


def _swap(art: Artifact, new_path: Path, precision: str, info: dict) -> Artifact:
    from ..convert.onnx import artifact_from_file

    new = artifact_from_file(new_path, precision)
    for spec_new, spec_old in zip(new.inputs, art.inputs):
        spec_new.example_shape = spec_old.example_shape
        spec_new.layout = spec_new.layout or spec_old.layout
    new.info = dict(art.info, quantization=info)
    new.warnings = list(art.warnings)
    return new


def _fp16(art: Artifact, workdir: Path) -> Artifact:
    import onnx

    try:
        # onnxruntime's maintained copy: onnxconverter-common 1.16's version leaves Cast nodes
        # typed float in attention blocks (the transformer then fails to load; measured).
        from onnxruntime.transformers.float16 import convert_float_to_float16
        method = "onnxruntime.transformers.float16"
    except ImportError:
        from onnxconverter_common.float16 import convert_float_to_float16
        method = "onnxconverter_common.float16"
    t0 = time.perf_counter()
    model = onnx.load(str(art.path))
    try:
        half = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise ConversionError(f"fp16 conversion failed: {type(exc).__name__}: {exc}",
                              "use --precision fp32 for this model") from exc
    out = workdir / "model.fp16.onnx"
    onnx.save_model(half, str(out), save_as_external_data=False)
    return _swap(art, out, "fp16", {"method": method, "keep_io_types": True,
                                    "seconds": round(time.perf_counter() - t0, 3)})


def op_types(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def resolve_mode(mode: str, ops: set[str]) -> str:
    if mode != "auto":
        return mode
    return "static" if ops & {"Conv", "ConvTranspose"} else "dynamic"


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, samples: list[dict]):
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # some onnxruntime versions call it
        pass


def _int8(art: Artifact, profile, calibration, workdir: Path) -> Artifact:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    q = profile["quantization"]
    mode = resolve_mode(q["mode"], op_types(art.path))
    per_channel = bool(q["per_channel"])
    reduce_range = bool(q.get("reduce_range", False))
    t0 = time.perf_counter()
    pre = workdir / "model.pre.onnx"
    try:
        quant_pre_process(str(art.path), str(pre), skip_symbolic_shape=False)
        src = pre
    except Exception as exc:  # pre-processing is an optimisation, not a requirement
        log.warning("quantization pre-processing skipped: %s", exc)
        src = art.path
    out = workdir / f"model.int8-{mode}.onnx"
    info = {"mode": mode, "requested_mode": q["mode"], "per_channel": per_channel,
            "reduce_range": reduce_range, "weight_type": "int8"}
    try:
        if mode == "dynamic":
            quantize_dynamic(str(src), str(out), per_channel=per_channel, reduce_range=reduce_range,
                             weight_type=QuantType.QInt8)
        else:
            if not calibration:
                raise ConversionError("static int8 needs calibration samples",
                                      "pass --calibration FILE.npz")
            method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                      "percentile": CalibrationMethod.Percentile}[q["calibration_method"]]
            quantize_static(str(src), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, reduce_range=reduce_range,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
            info.update(format="QDQ", activation_type="int8", calibration_method=q["calibration_method"],
                        calibration_samples=len(calibration))
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"int8 {mode} quantization failed: {type(exc).__name__}: {exc}",
                              "try --precision int8-dynamic or int8-static, or fp16") from exc
    finally:
        if pre.exists():
            pre.unlink()
        for extra in workdir.glob("*.onnx.data"):
            extra.unlink()
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return _swap(art, out, "int8", info)


def calibration_shape_check(samples: list[dict], art: Artifact) -> None:
    for spec in art.inputs:
        for s in samples[:1]:
            if spec.name not in s:
                raise ConversionError(f"calibration lacks input '{spec.name}'", "save one array per input")
            if np.asarray(s[spec.name]).ndim != len(spec.shape):
                raise ConversionError(f"calibration input '{spec.name}' has rank {s[spec.name].ndim}, "
                                      f"model wants {len(spec.shape)}", "match the model's input rank")
