"""Quantize an ONNX artifact: fp16, int8 dynamic, int8 static (QDQ) with calibration.

Defaults, from measurements on a 2-core AVX2 x86 host (see docs/QUANTIZATION.md):
- int8 `auto` (resolved once, in the backend) picks static QDQ for models with Conv and dynamic for
  MatMul/Gemm-only models.
- per-channel weights: a transformer kept cosine 0.990 per-channel vs 0.942 per-tensor.
- fp16 keeps float32 inputs and outputs (keep_io_types) so vectors and callers stay float32.
  It uses onnxruntime's float16 converter; onnxconverter-common's breaks attention Casts.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ...errors import ConversionError, short
from .. import Artifact
from ..base import QuantPlan, carry_io
from . import io

log = logging.getLogger(__name__)


def run(art: Artifact, plan: QuantPlan, calibration: list[dict] | None, workdir: Path) -> Artifact:
    if plan.precision == "fp32":
        return art
    if plan.precision == "fp16":
        out, info = _fp16(art, workdir)
    else:
        out, info = _int8(art, plan, calibration, workdir)
    new = carry_io(io.read(out, plan.precision), art)
    return new.replace(info=info)


def _fp16(art: Artifact, workdir: Path) -> tuple[Path, dict]:
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
        raise ConversionError(f"fp16 conversion failed: {type(exc).__name__}: {short(exc)}",
                              "use --precision fp32 for this model") from exc
    out = workdir / "model.fp16.onnx"
    onnx.save_model(half, str(out), save_as_external_data=False)
    return out, {"method": method, "keep_io_types": True, "seconds": round(time.perf_counter() - t0, 3)}


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, samples: list[dict]):
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # some onnxruntime versions call it
        pass


def _int8(art: Artifact, plan: QuantPlan, calibration, workdir: Path) -> tuple[Path, dict]:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    mode = plan.mode
    t0 = time.perf_counter()
    pre = workdir / "model.pre.onnx"
    try:
        quant_pre_process(str(art.path), str(pre), skip_symbolic_shape=False)
        src = pre
    except Exception as exc:  # pre-processing is an optimisation, not a requirement
        log.warning("quantization pre-processing skipped: %s", short(exc))
        src = art.path
    out = workdir / f"model.int8-{mode}.onnx"
    info = {"mode": mode, "requested_mode": plan.requested_mode, "per_channel": plan.per_channel,
            "reduce_range": plan.reduce_range, "weight_type": "int8"}
    try:
        if mode == "dynamic":
            quantize_dynamic(str(src), str(out), per_channel=plan.per_channel, reduce_range=plan.reduce_range,
                             weight_type=QuantType.QInt8)
        else:
            if not calibration:
                raise ConversionError("static int8 needs calibration samples", "pass --calibration FILE.npz")
            method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                      "percentile": CalibrationMethod.Percentile}[plan.calibration_method]
            quantize_static(str(src), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=plan.per_channel, reduce_range=plan.reduce_range,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
            info.update(format="QDQ", activation_type="int8", calibration_method=plan.calibration_method,
                        calibration_samples=len(calibration))
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"int8 {mode} quantization failed: {type(exc).__name__}: {short(exc)}",
                              "try --precision int8-dynamic or int8-static, or fp16") from exc
    finally:
        if pre.exists():
            pre.unlink()
        for extra in workdir.glob("*.onnx.data"):
            extra.unlink()
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return out, info
