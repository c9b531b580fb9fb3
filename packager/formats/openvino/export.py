"""ONNX -> OpenVINO IR with openvino.convert_model; fp16 weights with save_model(compress_to_fp16)."""
from __future__ import annotations

import time
from pathlib import Path

from ...errors import ConversionError, short
from .. import Artifact
from ..base import BuildContext, carry_io
from . import io


def _require():
    try:
        import openvino as ov
    except ImportError as exc:
        raise ConversionError(f"OpenVINO IR needs the openvino package ({exc})",
                              "pip install openvino==2026.4.1 (requirements.txt)") from exc
    return ov


def _convert(ctx: BuildContext, onnx_path: Path, like: Artifact | None) -> Artifact:
    ov = _require()
    out = ctx.folder("openvino") / "model.xml"
    t0 = time.perf_counter()
    try:
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(out), compress_to_fp16=False)   # fp32 weights: quantize() makes fp16
    except Exception as exc:
        raise ConversionError(f"ONNX -> OpenVINO IR (openvino.convert_model) failed: {short(exc)}",
                              "use --format onnx, which onnxruntime runs as given") from exc
    art = io.read(out, "fp32")
    if like is not None:
        art = carry_io(art, like)
    else:
        by_name = {s.name: s for s in ctx.source.inputs}
        art = art.replace(inputs=tuple(s.replace(example_shape=by_name[s.name].example_shape,
                                                 layout=by_name[s.name].layout) if s.name in by_name else s
                                       for s in art.inputs))
    return art.replace(info={"route": f"openvino.convert_model {ov.__version__}",
                             "seconds": round(time.perf_counter() - t0, 3)})


def from_onnx(ctx: BuildContext, onnx_art: Artifact) -> Artifact:
    return _convert(ctx, onnx_art.path, onnx_art)


def compress_fp16(art: Artifact, workdir: Path) -> Artifact:
    """float16 weights (the device computes at its inference_precision; I/O stays float32)."""
    ov = _require()
    out = workdir / "openvino-fp16" / "model.xml"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = ov.Core().read_model(str(art.path))
    ov.save_model(model, str(out), compress_to_fp16=True)
    new = carry_io(io.read(out, "fp16"), art)
    return new.replace(info={"method": "openvino.save_model(compress_to_fp16=True): float16 weights, "
                                       "float32 I/O", "seconds": round(time.perf_counter() - t0, 3)})
