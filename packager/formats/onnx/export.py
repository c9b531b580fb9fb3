"""Exporters to a single-file ONNX model: from ONNX (as given), PyTorch (torch.onnx.export) and
TensorFlow (tf2onnx)."""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from ...errors import ConversionError, short
from ...quiet import quiet_stdout
from .. import Artifact
from ..base import BuildContext
from . import io

log = logging.getLogger(__name__)


def _from_file(ctx: BuildContext, path: Path, info: dict) -> Artifact:
    """The artifact of an exported file, with the source's reference shapes and layouts."""
    art = io.read(path)
    by_name = {s.name: s for s in ctx.source.inputs}
    inputs = []
    for spec in art.inputs:
        src = by_name.get(spec.name)
        if src is not None:
            example = src.example_shape or (list(src.shape) if src.is_static else None)
            spec = spec.replace(example_shape=example, layout=spec.layout or src.layout)
        inputs.append(spec)
    return art.replace(inputs=tuple(inputs), info={**art.info, **info})


def from_onnx(ctx: BuildContext) -> Artifact:
    import onnx

    out = ctx.workdir / "model.onnx"
    model = onnx.load(str(ctx.source.obj))  # pulls in external data, if any
    onnx.save_model(model, str(out), save_as_external_data=False)
    return _from_file(ctx, out, {"route": "onnx (as given)"})


def from_torch(ctx: BuildContext) -> Artifact:
    """torch.onnx.export of an nn.Module, a ScriptModule or an ExportedProgram's module."""
    import torch

    opts = ctx.profile.format_options("onnx")
    out = ctx.folder("onnx") / "model.onnx"
    module, names, example = ctx.source.obj, ctx.source.input_names, ctx.example
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    out_names = ctx.source.output_names
    dynamic = {n: {0: "batch"} for n in names + out_names} if opts.dynamic_batch else None
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # The TorchScript-based exporter: measured 1 s here where the dynamo exporter took
            # 15-23 s for the same small models, with the same parity.
            _export(module, args, out, names, out_names, opts.opset, dynamic)
        except Exception as exc:
            raise ConversionError(f"torch -> ONNX export failed: {type(exc).__name__}: {short(exc, 400)}",
                                  _export_hint(exc)) from exc
    seconds = time.perf_counter() - t0
    dropped = None
    if dynamic and not _batch_axis_works(module, out, names, example):
        # The trace baked the batch size into the graph (a Reshape or view with a fixed size):
        # ship a static batch rather than a dynamic axis that breaks at batch 2.
        dropped = ("dynamic batch dropped: the model fails or differs at batch 2 (a reshape/view "
                   "with a fixed batch size in forward()?); exported with batch fixed at 1")
        _export(module, args, out, names, out_names, opts.opset, None)
        dynamic = None
    tracer = sorted({str(w.message).split("\n")[0] for w in caught if w.category.__name__ == "TracerWarning"})
    _fold_external_data(out)
    kind = ctx.source.kind.value
    route = "torch.onnx.export (TorchScript-based, dynamo=False)" if kind == "torch" else \
        f"torch.onnx.export ({'TorchScript' if kind == 'torchscript' else 'ExportedProgram'})"
    info = {"route": route, "opset": opts.opset, "dynamic_batch": bool(dynamic),
            "export_seconds": round(seconds, 3)}
    if tracer:
        info["tracer_warnings"] = tracer
    art = _from_file(ctx, out, info)
    return art.warn(*([dropped] if dropped else []), *(f"tracer: {m}" for m in tracer))


def _export(module, args, out: Path, names, out_names, opset: int, dynamic) -> None:
    import torch

    torch.onnx.export(module, args, str(out), input_names=names, output_names=out_names,
                      opset_version=opset, dynamic_axes=dynamic, do_constant_folding=True,
                      dynamo=False, external_data=False)


def _batch_axis_works(module, path: Path, names: list[str], example: dict) -> bool:
    """Run batch 2 through the exported graph and the original; both must agree."""
    import onnxruntime as ort
    import torch

    feeds = {n: np.concatenate([example[n], example[n][::-1].copy()]) for n in names}
    if any(example[n].shape[:1] != (1,) for n in names):
        return True  # not a batch-1 example: nothing to probe
    try:
        with torch.inference_mode():
            ref = module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])
    except Exception:
        return False  # the original itself takes only batch 1: a batch axis would be a lie
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref.values()) if isinstance(ref, dict) else list(ref)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        got = sess.run(None, feeds)
    except Exception:
        return False
    for r, g in zip(ref, got):
        r = r.detach().numpy()
        if r.shape != g.shape or not np.allclose(r, g, rtol=1e-3, atol=1e-4):
            return False
    return True


def _fold_external_data(path: Path) -> None:
    """Keep the model one file: load any external tensors and save them inline."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    uses_external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    if uses_external:
        model = onnx.load(str(path))
        for f in path.parent.iterdir():
            if f != path:
                f.unlink()
        onnx.save_model(model, str(path), save_as_external_data=False)


def _export_hint(exc: Exception) -> str:
    text = str(exc)
    if "Unsupported" in text or "not supported" in text or "Exporting the operator" in text:
        return ("the model uses an op the ONNX exporter cannot express at this opset: try a higher "
                "opset in a profile of your own (onnx: {opset: 18}), or replace the op")
    return "run with --debug for the traceback; check the model runs on the given input shapes"


def from_tensorflow(ctx: BuildContext) -> Artifact:
    """Keras `.keras` / TF SavedModel -> ONNX through tf2onnx (serving_default signature), loaded the
    way its `--saved-model` command line loads one (tf_loader.from_saved_model): that freezes the
    signature's captured constants too (Basic Pitch's CQT kernels), which a traced wrapper left as
    graph inputs."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tf2onnx
        from tf2onnx import tf_loader
    except ImportError as exc:
        raise ConversionError(f"Keras/SavedModel -> ONNX needs tensorflow and tf2onnx ({exc})",
                              "pip install -r requirements-tf.txt") from exc
    import onnx

    opset = ctx.profile.format_options("onnx").opset
    out = ctx.folder("onnx") / "model.onnx"
    t0 = time.perf_counter()
    names = ctx.source.input_names
    try:
        with quiet_stdout():
            graph_def, ins, outs, renames = tf_loader.from_saved_model(
                str(ctx.source.obj), None, None, tag="serve", signatures=["serving_default"],
                return_tensors_to_rename=True)
            model_proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=ins, output_names=outs,
                                                            opset=opset, tensors_to_rename=renames)
    except Exception as exc:
        raise ConversionError(f"SavedModel -> ONNX (tf2onnx) failed: {type(exc).__name__}: {short(exc)}",
                              "use --format tflite (TFLiteConverter), or a lower --precision / opset") from exc
    got = sorted(i.name for i in model_proto.graph.input)
    if got != sorted(names):
        raise ConversionError(f"SavedModel -> ONNX (tf2onnx) gave the inputs {got}, the signature has {sorted(names)}",
                              "use --format tflite (TFLiteConverter)")
    onnx.save_model(model_proto, str(out), save_as_external_data=False)
    return _from_file(ctx, out, {"route": f"tf2onnx {tf2onnx.__version__} (serving_default)",
                                 "seconds": round(time.perf_counter() - t0, 3)})


