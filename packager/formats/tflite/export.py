"""Exporters to a single-file TF-Lite flatbuffer (fp32; quantize.py does the rest).

- PyTorch factory / ExportedProgram `.pt2`: litert-torch (torch.export, then the LiteRT converter;
  no TensorFlow involved). Inputs the route turns channels-last (ctx.layout) are taken as NHWC
  through a transpose inside the model, so the device feeds channels-last images.
- Keras `.keras` / TF SavedModel: tf.lite.TFLiteConverter.from_saved_model on serving_default.
(ONNX -> TF-Lite is onnx2tf.py: a converter from the ONNX artifact.)
"""
from __future__ import annotations

import logging
import re
import time

import numpy as np

from ...errors import ConversionError, short
from ...quiet import quiet_stdout
from .. import Artifact
from ..base import BuildContext
from . import io

log = logging.getLogger(__name__)


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


def from_torch(ctx: BuildContext) -> Artifact:
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
    names, outs, changes = ctx.source.input_names, ctx.source.output_names, ctx.layout
    kwargs = {}
    for n in names:
        arr = np.ascontiguousarray(ctx.example[n])
        if n in changes:
            arr = np.ascontiguousarray(arr.transpose(changes[n]["perm"]))
        kwargs[n] = torch.from_numpy(arr)
    wrapper = make_wrapper(ctx.source.obj, names, changes, outs)
    out = ctx.workdir / "model.tflite"
    t0 = time.perf_counter()
    try:
        with quiet_stdout():
            edge = litert_torch.convert(wrapper, sample_args=(), sample_kwargs=kwargs)
            edge.export(str(out))
    except Exception as exc:
        raise ConversionError(f"PyTorch -> TF-Lite (litert-torch) failed: {describe_failure(exc)}",
                              failure_hint(exc)) from exc
    info = {"route": "litert-torch (torch.export -> LiteRT converter)",
            "seconds": round(time.perf_counter() - t0, 3), "static_shapes": True}
    if changes:
        info["layout_changes"] = changes
    art = io.with_source_layouts(io.read(out, "fp32", names), ctx, changes).replace(info=info)
    if ctx.profile.format_options("onnx").dynamic_batch:
        art = art.replace(info={**info, "dynamic_batch": False}).warn(
            "TF-Lite from PyTorch has a static batch of 1 (dynamic_batch ignored)")
    return art


_CONTROL_FLOW = ("data-dependent", "GuardOnDataDependentSymNode", "Could not guard on data-dependent",
                 "dynamic control flow")


def describe_failure(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    ops = sorted(set(re.findall(r"aten[.:]{1,2}[A-Za-z_0-9]+(?:\.[A-Za-z_0-9]+)?", text)))
    head = f"{type(exc).__name__}: {text[:300]}"
    if any(k in text for k in _CONTROL_FLOW):
        return "the model has data-dependent control flow (an `if`/loop on a tensor's value) that " \
               "torch.export cannot capture; " + head
    if ops:
        return f"op(s) {', '.join(ops[:5])} cannot be expressed in TF-Lite; " + head
    return head


def failure_hint(exc: Exception) -> str:
    if any(k in str(exc) for k in _CONTROL_FLOW):
        return ("use --format torchscript (scripting keeps control flow), or rewrite the branch with "
                "torch.where / torch.cond")
    return "use --format onnx (or --format torchscript), which can express more ops; run with --debug for details"


def from_savedmodel(ctx: BuildContext) -> Artifact:
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    out = ctx.workdir / "model.tflite"
    t0 = time.perf_counter()
    try:
        with quiet_stdout():
            conv = tf.lite.TFLiteConverter.from_saved_model(str(ctx.source.obj), signature_keys=["serving_default"])
            flat = conv.convert()
    except Exception as exc:
        ops = re.findall(r"'(tf\.[A-Za-z0-9_]+)'", str(exc))
        what = f"op(s) {', '.join(sorted(set(ops))[:5])} have no TF-Lite builtin; " if ops else ""
        raise ConversionError(f"SavedModel -> TF-Lite (TFLiteConverter) failed: {what}{short(exc)}",
                              "use --format onnx (tf2onnx), or replace the op") from exc
    out.write_bytes(flat)
    art = io.with_source_layouts(io.read(out, "fp32", ctx.source.input_names), ctx, {})  # Keras: as saved
    return art.replace(info={"route": "tf.lite.TFLiteConverter.from_saved_model (serving_default)",
                             "seconds": round(time.perf_counter() - t0, 3)})
