"""Convert a source model to a single-file TF-Lite flatbuffer (fp32; quantize/tflite.py does the rest).

Routes:
- PyTorch factory / ExportedProgram `.pt2`: litert-torch (torch.export, then the LiteRT converter;
  no TensorFlow involved). With `layout: NHWC` in the profile, 4-D NCHW inputs are taken as NHWC
  (a transpose inside the model), so the device feeds channels-last images; the manifest records
  the change and the reference vectors hold the inputs in the layout the model takes.
- Keras `.keras` / TF SavedModel: tf.lite.TFLiteConverter.from_saved_model on serving_default.
- ONNX file: onnx2tf, run as a subprocess from its own venv .venv-onnx2tf (onnx2tf_route.py).
- TorchScript `.pt`: torch.onnx.export of the ScriptModule (convert/onnx.py), then onnx2tf.
"""
from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import ConversionError
from ..formats import Artifact, Format
from ..sources import SourceModel
from ..specs import TensorSpec

log = logging.getLogger(__name__)

NCHW_TO_NHWC = [0, 2, 3, 1]


def convert(source: SourceModel, profile, workdir: Path, example: dict) -> Artifact:
    out = workdir / "model.tflite"
    if source.kind in ("torch", "exported"):
        return _from_torch(source, profile, out, example)
    if source.kind in ("keras", "savedmodel"):
        return _from_savedmodel(source, profile, out)
    if source.kind == "onnx":
        from . import onnx2tf_route
        return onnx2tf_route.convert(Path(source.obj), source, profile, out, example)
    if source.kind == "torchscript":
        return _from_torchscript(source, profile, workdir, out, example)
    raise ConversionError(f"no route from a {source.kind} source to TF-Lite", "use --format onnx")


# --------------------------------------------------------------------------- PyTorch via litert-torch

def output_names(source: SourceModel, example: dict) -> list[str]:
    return list(source.run(example))


def make_wrapper(module, names: list[str], perms: dict, out_names: list[str]):
    """nn.Module taking the named inputs (some channels-last) and returning a dict of outputs.

    Named parameters make the TF-Lite signature use the source's input names; the dict output
    makes it use the reference vectors' output names, so host and device compare by name.
    """
    import torch

    for n in names:
        if not n.isidentifier():
            raise ConversionError(f"input name '{n}' is not a valid identifier", "rename the model's inputs")

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def call(self, *args):
            args = [a.permute(0, 3, 1, 2) if names[i] in perms else a for i, a in enumerate(args)]
            out = self.inner(*args)
            if isinstance(out, torch.Tensor):
                out = [out]
            if isinstance(out, dict):
                return {k: out[k] for k in out_names}
            return dict(zip(out_names, out))

    code = "def forward(self, {a}):\n    return self.call({a})\n".format(a=", ".join(names))
    ns: dict = {}
    exec(code, ns)  # noqa: S102 - fixed template over identifier-checked names
    Wrapper.forward = ns["forward"]
    wrapper = Wrapper()
    wrapper.training = False  # not .eval(): an ExportedProgram's module refuses train()/eval()
    return wrapper


def _layout_changes(source: SourceModel, profile) -> dict:
    if str(profile["layout"]).upper() != "NHWC":
        return {}
    return {s.name: {"from": "NCHW", "to": "NHWC", "perm": NCHW_TO_NHWC}
            for s in source.inputs if s.layout == "NCHW" and len(s.shape) == 4}


@contextlib.contextmanager
def quiet_stdout():
    """Converters print progress on stdout; edgepack's stdout carries only its own (JSON) output."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _from_torch(source: SourceModel, profile, out: Path, example: dict) -> Artifact:
    try:
        import torch
        with quiet_stdout():
            import litert_torch
    except ImportError as exc:
        raise ConversionError(f"TF-Lite from PyTorch needs litert-torch, which is not installed ({exc})",
                              "pip install -r requirements-tf.txt") from exc
    try:  # its progress log goes to a rich console on stdout
        from litert_torch import progress
        progress.console.quiet = True
    except Exception:
        pass
    names = [s.name for s in source.inputs]
    outs = output_names(source, example)
    changes = _layout_changes(source, profile)
    kwargs = {}
    for n in names:
        arr = np.ascontiguousarray(example[n])
        if n in changes:
            arr = np.ascontiguousarray(arr.transpose(NCHW_TO_NHWC))
        kwargs[n] = torch.from_numpy(arr)
    wrapper = make_wrapper(source.obj, names, changes, outs)
    t0 = time.perf_counter()
    try:
        with quiet_stdout():
            edge = litert_torch.convert(wrapper, sample_args=(), sample_kwargs=kwargs)
            edge.export(str(out))
    except Exception as exc:
        raise ConversionError(f"PyTorch -> TF-Lite (litert-torch) failed: {describe_failure(exc)}",
                              failure_hint(exc)) from exc
    seconds = time.perf_counter() - t0
    art = artifact_from_file(out, "fp32", source)
    for spec in art.inputs:
        if spec.name in changes:
            spec.layout = "NHWC"
    art.info = {"route": "litert-torch (torch.export -> LiteRT converter)", "seconds": round(seconds, 3),
                "static_shapes": True}
    if changes:
        art.info["layout_changes"] = changes
    if profile["dynamic_batch"]:
        art.info["dynamic_batch"] = False
        art.warnings.append("TF-Lite from PyTorch has a static batch of 1 (dynamic_batch ignored)")
    return art


_CONTROL_FLOW = ("data-dependent", "GuardOnDataDependentSymNode", "Could not guard on data-dependent",
                 "dynamic control flow", "UserError")


def describe_failure(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    ops = sorted(set(re.findall(r"aten[.:]{1,2}[A-Za-z_0-9]+(?:\.[A-Za-z_0-9]+)?", text)))
    head = f"{type(exc).__name__}: {text[:300]}"
    if any(k in text for k in _CONTROL_FLOW[:4]):
        return "the model has data-dependent control flow (an `if`/loop on a tensor's value) that " \
               "torch.export cannot capture; " + head
    if ops:
        return f"op(s) {', '.join(ops[:5])} cannot be expressed in TF-Lite; " + head
    return head


def failure_hint(exc: Exception) -> str:
    text = str(exc)
    if any(k in text for k in _CONTROL_FLOW[:4]):
        return ("use --format torchscript (scripting keeps control flow), or rewrite the branch with "
                "torch.where / torch.cond")
    return "use --format onnx (or --format torchscript), which can express more ops; run with --debug for details"


# --------------------------------------------------------------------------- TorchScript via ONNX

def _from_torchscript(source: SourceModel, profile, workdir: Path, out: Path, example: dict) -> Artifact:
    """litert-torch needs torch.export, which cannot read a ScriptModule: go ScriptModule -> ONNX -> onnx2tf."""
    from . import onnx as onnx_conv, onnx2tf_route

    onnx2tf_route.require()  # before spending time on the export
    sub = workdir / "via-onnx"
    sub.mkdir(exist_ok=True)
    onnx_art = onnx_conv.convert(source, _static_batch(profile), sub, example)
    art = onnx2tf_route.convert(onnx_art.path, source, profile, out, example,
                                route_prefix="torch.onnx.export (TorchScript) -> ")
    art.info["onnx_export"] = {k: v for k, v in onnx_art.info.items() if k in ("opset", "export_seconds")}
    return art


def _static_batch(profile):
    """The profile with dynamic_batch off (the TF-Lite model has a static batch anyway)."""
    import dataclasses

    return dataclasses.replace(profile, data=dict(profile.data, dynamic_batch=False))


# --------------------------------------------------------------------------- TensorFlow

def _from_savedmodel(source: SourceModel, profile, out: Path) -> Artifact:
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    t0 = time.perf_counter()
    try:
        with quiet_stdout():
            conv = tf.lite.TFLiteConverter.from_saved_model(str(source.obj), signature_keys=["serving_default"])
            flat = conv.convert()
    except Exception as exc:
        text = " ".join(str(exc).split())
        ops = re.findall(r"'(tf\.[A-Za-z0-9_]+)'", text)
        what = f"op(s) {', '.join(sorted(set(ops))[:5])} have no TF-Lite builtin; " if ops else ""
        raise ConversionError(f"SavedModel -> TF-Lite (TFLiteConverter) failed: {what}{text[:300]}",
                              "use --format onnx (tf2onnx), or replace the op") from exc
    out.write_bytes(flat)
    art = artifact_from_file(out, "fp32", source)
    art.info = {"route": "tf.lite.TFLiteConverter.from_saved_model (serving_default)",
                "seconds": round(time.perf_counter() - t0, 3)}
    return art


# --------------------------------------------------------------------------- artifact

def interpreter(path: Path, plain_ops: bool = False):
    """A TF-Lite interpreter; plain_ops: without the default XNNPACK delegate (to list real ops)."""
    from agent.runtimes import LiteRtRuntime

    mod, _, _ = LiteRtRuntime.find()
    kwargs = {}
    resolver = getattr(mod, "OpResolverType", None)
    if plain_ops and resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = mod.Interpreter(model_path=str(path), **kwargs)
    it.allocate_tensors()
    return it


def signature_details(path: Path):
    it = interpreter(path)
    sigs = it.get_signature_list()
    if len(sigs) != 1:
        raise ConversionError(f"the TF-Lite model has {len(sigs)} signatures, edgepack needs exactly one",
                              "export a single serving signature")
    key = list(sigs)[0]
    runner = it.get_signature_runner(key)
    return it, key, runner.get_input_details(), runner.get_output_details()


def artifact_from_file(path: Path, precision: str, source: SourceModel | None = None) -> Artifact:
    _, _, ins, outs = signature_details(path)
    by_name = {s.name: s for s in (source.inputs if source else [])}

    def spec(name, d, is_input):
        shape = [int(x) for x in d["shape"]]
        sig = [int(x) for x in d.get("shape_signature", d["shape"])]
        dims = [("batch" if i == 0 else f"dim{i}") if s < 0 else v for i, (v, s) in enumerate(zip(shape, sig))]
        dtype = np.dtype(d["dtype"]).name
        s = TensorSpec(name, dtype, dims, None)
        src = by_name.get(name) if is_input else None
        if src is not None:
            s.layout = src.layout
        if is_input:
            s.example_shape = shape
        return s

    inputs = [spec(n, d, True) for n, d in ins.items()]
    if source is not None:  # the source's input order
        order = {s.name: i for i, s in enumerate(source.inputs)}
        inputs.sort(key=lambda s: order.get(s.name, len(order)))
    outputs = [spec(n, d, False) for n, d in outs.items()]
    return Artifact(format=Format.TFLITE, path=path, runtime="litert", inputs=inputs, outputs=outputs,
                    precision=precision)


__all__ = ["convert", "artifact_from_file", "make_wrapper"]
