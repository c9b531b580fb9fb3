"""Quantize an ONNX artifact: fp16, int8 dynamic, int8 static (QDQ) with calibration, each with an
optional list of nodes left in float (the recovery's fallbacks, packager/quant/recover.py).

Defaults and the recipes `auto` measures, in order (docs/QUANTIZATION.md has the numbers):
- static QDQ (models with Conv; resolved in the backend): every op, then Conv/MatMul/Gemm only
  (Ultralytics' int8 recipe for detectors: a Concat of boxes in pixels and scores in [0, 1] shares
  one scale when every op is quantized, and the scores vanish), then Percentile calibration on the
  smaller op set when the time budget allows, then dynamic for models that have MatMul/Gemm.
- dynamic (MatMul/Gemm-only models): per-channel int8 weights.
- per-channel weights: a transformer kept cosine 0.990 per-channel vs 0.942 per-tensor.
- fp16 keeps float32 inputs and outputs (keep_io_types) so vectors and callers stay float32.
  It uses onnxruntime's float16 converter; onnxconverter-common's breaks attention Casts.

Quantization pre-processing (onnxruntime's quant_pre_process, symbolic shape inference with
auto_merge) runs once per build; calibration ranges are computed once per method and reused by
every attempt (onnxruntime's calibration_cache_path). Every tool runs in packager/quant/scratch.py's
sandbox: nothing lands in the user's directory, nothing of theirs on the terminal without --debug.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from ...errors import ConversionError, short
from .. import Artifact
from ..base import QuantPlan, carry_io
from . import io

log = logging.getLogger(__name__)

CONV_MATMUL = ("Conv", "MatMul", "Gemm")
PER_CHANNEL_MIN_OPSET = 13   # DequantizeLinear's `axis` (per-channel) appeared in opset 13


def run(art: Artifact, plan: QuantPlan, calibration: list[dict] | None, workdir: Path) -> Artifact:
    from ...quant.scratch import sandbox

    if plan.precision == "fp32":
        return art
    workdir = Path(workdir).resolve()                # the tools run in another current directory
    art = art.replace(path=Path(art.path).resolve())
    with sandbox(workdir):
        if plan.precision == "fp16":
            out, info = _fp16(art, plan, workdir)
        else:
            out, info = _int8(art, plan, calibration, workdir)
    new = carry_io(io.read(out, plan.precision), art).replace(info=info)
    if plan.precision == "int8":
        count = quantized_nodes(out)
        info["quantized_nodes"] = count
        if count == 0:
            new = new.warn("int8 quantized no node: onnxruntime's quantizer found nothing it quantizes in the "
                           "top graph (it does not enter If/Loop bodies); the bundle computes in float")
    return new


QUANT_OPS = {"QuantizeLinear", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulInteger", "ConvInteger",
             "QLinearConv", "QLinearMatMul", "QAttention", "DynamicQuantizeLSTM"}


def quantized_nodes(path: Path) -> int:
    """Nodes of the top graph that carry int8 (quantize ops, integer kernels)."""
    import onnx

    return sum(n.op_type in QUANT_OPS for n in onnx.load(str(path), load_external_data=False).graph.node)


def _tag(plan: QuantPlan) -> str:
    """A short file-name tag of a plan (every attempt keeps its own file)."""
    import hashlib

    return hashlib.sha256(repr(dataclasses.astuple(plan)).encode()).hexdigest()[:10]


def _fp16(art: Artifact, plan: QuantPlan, workdir: Path) -> tuple[Path, dict]:
    import onnx

    try:
        # onnxruntime's maintained copy: onnxconverter-common 1.16's version leaves Cast nodes
        # typed float in attention blocks (the transformer then fails to load; measured).
        from onnxruntime.transformers.float16 import convert_float_to_float16
        method = "onnxruntime.transformers.float16"
    except ImportError:
        from onnxconverter_common.float16 import convert_float_to_float16
        method = "onnxconverter_common.float16"
    from ...quant.onnx_tensors import node_name

    t0 = time.perf_counter()
    model = onnx.load(str(art.path))
    for i, node in enumerate(model.graph.node):   # a fallback names nodes; unnamed ones get OpType_index
        node.name = node_name(node, i)
    try:
        half = convert_float_to_float16(model, keep_io_types=True, node_block_list=list(plan.float_nodes) or None)
    except Exception as exc:
        raise ConversionError(f"fp16 conversion failed: {type(exc).__name__}: {short(exc)}",
                              "use --precision fp32 for this model") from exc
    removed = 0
    if plan.float_nodes:
        removed = _drop_cast_round_trips(half.graph)
    out = workdir / f"model.fp16-{_tag(plan)}.onnx"
    onnx.save_model(half, str(out), save_as_external_data=False)
    info = {"method": method, "keep_io_types": True, "seconds": round(time.perf_counter() - t0, 3)}
    if plan.float_nodes:
        info["float_nodes"] = list(plan.float_nodes)
        info["casts_removed_between_float_nodes"] = removed
    return out, info


def _drop_cast_round_trips(graph) -> int:
    """onnxruntime's converter types every tensor float16, so two float nodes in a row still pass
    their tensor through Cast(float16) -> Cast(float) (Basic Pitch's x*x + 1e-10 -> Log: the squares
    underflow to 0 on the way, log(0) = -inf). Each such Cast(float) reads the float tensor again;
    a Cast(float16) left without readers goes. (onnxconverter-common's remove_unnecessary_cast_node
    does this for its own converter and fails on a Cast with several readers: measured.)
    Returns the number of Cast nodes removed."""
    from onnx import TensorProto

    def to(node):
        return next((a.i for a in node.attribute if a.name == "to"), None)

    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    rewire, dropped = {}, []
    for node in graph.node:
        up = producer.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if (up is None or to(node) != TensorProto.FLOAT or up.op_type != "Cast" or to(up) != TensorProto.FLOAT16
                or node.output[0] in outputs):
            continue
        rewire[node.output[0]] = up.input[0]
        dropped.append(node)
    for node in graph.node:
        node.input[:] = [rewire.get(i, i) for i in node.input]
    for node in dropped:
        graph.node.remove(node)
    read = {i for n in graph.node for i in n.input} | outputs
    orphans = [n for n in graph.node if n.op_type == "Cast" and to(n) == TensorProto.FLOAT16
               and not any(o in read for o in n.output)]
    for node in orphans:
        graph.node.remove(node)
    return len(dropped) + len(orphans)


def prepared_path(art: Artifact, workdir: Path) -> Path:
    return workdir / f"{art.path.stem}.pre.onnx"


def prepare(art: Artifact, workdir: Path, per_channel: bool) -> tuple[Path, dict]:
    """The graph the quantizer gets (once per build): opset >= 13 for per-channel QDQ, then
    onnxruntime's quant_pre_process with symbolic shape inference (auto_merge)."""
    import json

    out = prepared_path(art, workdir)
    note = workdir / f"{art.path.stem}.pre.json"
    if out.is_file() and note.is_file():
        return out, json.loads(note.read_text())
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    info: dict = {}
    src = art.path
    model = onnx.load(str(src), load_external_data=False)
    opset = io.opset_of(model) or 0
    if per_channel and opset < PER_CHANNEL_MIN_OPSET:
        # measured on the paddle2onnx models (opset 12): per-channel QDQ writes DequantizeLinear(axis=..)
        # that opset 12 lacks and onnxruntime refuses the model ("Unrecognized attribute: axis").
        # The graph-preparation opset pass does this first when a profile asks for it.
        from onnx import version_converter

        try:
            up = version_converter.convert_version(onnx.load(str(src)), PER_CHANNEL_MIN_OPSET)
            src = workdir / f"{art.path.stem}.opset{PER_CHANNEL_MIN_OPSET}.onnx"
            onnx.save_model(up, str(src))
            info["opset"] = f"{opset} -> {PER_CHANNEL_MIN_OPSET} (per-channel QDQ needs DequantizeLinear axis)"
        except Exception as exc:  # noqa: BLE001 - per-tensor still works at the old opset
            info["opset"] = f"{opset} (upgrade failed: {short(exc, 120)}; per-channel off)"
            info["per_channel_off"] = True
    try:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=False, auto_merge=True)
        info["preprocess"] = "onnxruntime quant_pre_process (symbolic shape inference, auto_merge)"
    except Exception as exc:  # pre-processing is an optimisation, not a requirement
        log.debug("quantization pre-processing skipped: %s", short(exc))
        info["preprocess"] = f"skipped ({type(exc).__name__}: {short(exc, 160)})"
        model = onnx.load(str(src))
        onnx.save_model(model, str(out))
    note.write_text(json.dumps(info))
    return out, info


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, samples: list[dict]):
        self._samples = samples
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._samples)


def _calibration_cache(workdir: Path, method: str, op_types) -> Path:
    """One calibration per method and op set; a subset of ops reuses the every-op ranges."""
    every = workdir / f"calib-{method}-all.json"
    if op_types is None or every.is_file():
        return every
    return workdir / f"calib-{method}-{'+'.join(sorted(op_types))}.json"


def _int8(art: Artifact, plan: QuantPlan, calibration, workdir: Path) -> tuple[Path, dict]:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    mode = plan.mode
    t0 = time.perf_counter()
    src, prep = prepare(art, workdir, plan.per_channel)
    per_channel = plan.per_channel and not prep.get("per_channel_off")
    out = workdir / f"model.int8-{mode}-{_tag(plan)}.onnx"
    info = {"mode": mode, "requested_mode": plan.requested_mode, "per_channel": per_channel,
            "reduce_range": plan.reduce_range, "weight_type": "int8",
            "op_types": list(plan.op_types) if plan.op_types else "all", **prep}
    excluded = list(plan.float_nodes) or None
    try:
        if mode == "dynamic":
            quantize_dynamic(str(src), str(out), per_channel=per_channel, reduce_range=bool(plan.reduce_range),
                             weight_type=QuantType.QInt8, op_types_to_quantize=list(plan.op_types or []) or None,
                             nodes_to_exclude=excluded)
        else:
            if not calibration:
                raise ConversionError("static int8 needs calibration samples", "pass --calibration FILE.npz")
            method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                      "percentile": CalibrationMethod.Percentile}[plan.calibration_method]
            cache = _calibration_cache(workdir, plan.calibration_method, plan.op_types)
            act = QuantType.QUInt8 if plan.activation_type == "uint8" else QuantType.QInt8
            info["calibration_reused"] = cache.is_file()
            quantize_static(str(src), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, reduce_range=bool(plan.reduce_range),
                            activation_type=act, weight_type=QuantType.QInt8,
                            calibrate_method=method, op_types_to_quantize=list(plan.op_types or []) or None,
                            nodes_to_exclude=excluded, calibration_cache_path=str(cache),
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
            info.update(format="QDQ", activation_type=plan.activation_type, calibration_method=plan.calibration_method,
                        calibration_samples=len(calibration))
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"int8 {mode} quantization failed: {type(exc).__name__}: {short(exc)}",
                              "try --precision int8-dynamic or int8-static, or fp16") from exc
    if plan.float_nodes:
        info["float_nodes"] = list(plan.float_nodes)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return out, info


def recipes(plan: QuantPlan, art: Artifact, quant) -> list[QuantPlan]:
    """The int8 recipes to measure for this model, in order (quant: the profile's Quantization)."""
    if plan.precision != "int8":
        return [plan]
    ops = io.op_types(art.path)
    explicit_ops = None if quant.op_types == "auto" else tuple(quant.op_types)
    method = "minmax" if plan.calibration_method == "auto" else plan.calibration_method
    base = dataclasses.replace(plan, calibration_method=method, op_types=explicit_ops)
    if plan.mode == "dynamic":
        return [base]
    out = [base]
    small = tuple(o for o in CONV_MATMUL if o in ops)
    # only when it differs: a model with nothing but Conv/MatMul/Gemm to quantize gives the same graph
    if explicit_ops is None and small and _quantizable(ops) - set(small):
        out.append(dataclasses.replace(base, op_types=small))
    if plan.calibration_method == "auto":
        out.append(dataclasses.replace(out[-1], calibration_method="percentile"))
    if plan.requested_mode == "auto" and ops & {"MatMul", "Gemm"}:
        out.append(dataclasses.replace(base, mode="dynamic", op_types=explicit_ops))
    return out


def _quantizable(ops: set[str]) -> set[str]:
    try:
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    except ImportError:  # pragma: no cover - older onnxruntime
        return set(ops)
    return ops & (set(QDQRegistry) | set(QLinearOpsRegistry))
