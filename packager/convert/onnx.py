"""Convert a source model to a single-file ONNX model."""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConversionError, short
from ..formats import Artifact, Format
from ..sources import SourceModel
from ..specs import TensorSpec, guess_layout

log = logging.getLogger(__name__)


def convert(source: SourceModel, profile, workdir: Path, example: dict[str, np.ndarray]) -> Artifact:
    out = workdir / "model.onnx"
    if source.kind == "onnx":
        return _from_onnx(source, profile, out)
    if source.kind in ("torch", "torchscript", "exported"):  # nn.Module, ScriptModule, GraphModule
        return _from_torch(source, profile, out, example)
    if source.kind in ("keras", "savedmodel"):
        from . import onnx_tf
        return onnx_tf.convert(source, profile, out)
    raise ConversionError(f"no route from a {source.kind} source to ONNX", "pass an ONNX file or a PyTorch factory")


def _from_onnx(source: SourceModel, profile, out: Path) -> Artifact:
    import onnx

    model = onnx.load(str(source.obj))  # pulls in external data, if any
    onnx.save_model(model, str(out), save_as_external_data=False)
    art = artifact_from_file(out, precision="fp32")
    _carry_example_shapes(source, art)
    art.info = {"route": "onnx (as given)", "opset": _opset(model)}
    return art


def _from_torch(source: SourceModel, profile, out: Path, example: dict[str, np.ndarray]) -> Artifact:
    import torch

    module = source.obj
    names = [s.name for s in source.inputs]
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    out_names = list(source.run(example))
    dynamic = None
    if profile["dynamic_batch"]:
        dynamic = {n: {0: "batch"} for n in names + out_names}
    opset = int(profile["opset"])
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # The TorchScript-based exporter: measured 1 s here where the dynamo exporter took
            # 15-23 s for the same small models, with the same parity.
            torch.onnx.export(module, args, str(out), input_names=names, output_names=out_names,
                              opset_version=opset, dynamic_axes=dynamic, do_constant_folding=True,
                              dynamo=False, external_data=False)
        except Exception as exc:
            raise ConversionError(f"torch -> ONNX export failed: {type(exc).__name__}: {short(exc, 400)}",
                                  _export_hint(exc)) from exc
    seconds = time.perf_counter() - t0
    if dynamic and not _batch_axis_works(module, out, names, example):
        # The trace baked the batch size into the graph (a Reshape or view with a fixed size):
        # ship a static batch rather than a dynamic axis that breaks at batch 2.
        art_warning = ("dynamic batch dropped: the model fails or differs at batch 2 (a reshape/view "
                       "with a fixed batch size in forward()?); exported with batch fixed at 1")
        torch.onnx.export(module, args, str(out), input_names=names, output_names=out_names,
                          opset_version=opset, dynamic_axes=None, do_constant_folding=True,
                          dynamo=False, external_data=False)
        dynamic = None
    else:
        art_warning = None
    tracer = [str(w.message).split("\n")[0] for w in caught if "TracerWarning" in type(w.message).__name__
              or w.category.__name__ == "TracerWarning"]
    _fold_external_data(out)
    art = artifact_from_file(out, precision="fp32")
    _carry_example_shapes(source, art)
    art.info = {"route": "torch.onnx.export (TorchScript-based, dynamo=False)", "opset": opset,
                "dynamic_batch": bool(dynamic), "export_seconds": round(seconds, 3)}
    if art_warning:
        art.warnings.append(art_warning)
    if tracer:
        art.warnings.extend(f"tracer: {m}" for m in tracer)
        art.info["tracer_warnings"] = tracer
    return art


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


def _carry_example_shapes(source: SourceModel, art: Artifact) -> None:
    by_name = {s.name: s for s in source.inputs}
    for spec in art.inputs:
        src = by_name.get(spec.name)
        if src is not None:
            spec.example_shape = src.example_shape or (
                [d for d in src.shape] if all(isinstance(d, int) for d in src.shape) else None)
            spec.layout = spec.layout or src.layout


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


def artifact_from_file(path: Path, precision: str) -> Artifact:
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    init = {i.name for i in model.graph.initializer}

    def spec(vi):
        t = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        shape = []
        for i, d in enumerate(t.shape.dim):
            shape.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0
                         else (d.dim_param or ("batch" if i == 0 else f"dim{i}")))
        return TensorSpec(vi.name, dtype, shape, guess_layout(shape))

    return Artifact(format=Format.ONNX, path=path, runtime="onnxruntime",
                    inputs=[spec(v) for v in model.graph.input if v.name not in init],
                    outputs=[spec(v) for v in model.graph.output], precision=precision,
                    info={"opset": _opset(model)})


def _opset(model):
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return None


def _export_hint(exc: Exception) -> str:
    text = str(exc)
    if "Unsupported" in text or "not supported" in text or "Exporting the operator" in text:
        return ("the model uses an op the ONNX exporter cannot express at this opset: try a higher "
                "opset in a profile of your own (opset: 18), or replace the op")
    return "run with --debug for the traceback; check the model runs on the given input shapes"


__all__ = ["convert", "artifact_from_file"]
