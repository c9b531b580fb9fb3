"""Exporters to TorchScript (`model.pt`, torch.jit.save).

Tracing records one run and misses control flow; scripting compiles the Python code and keeps
it, but needs code TorchScript understands. Mode (profile `torchscript.mode`, or --torchscript-mode):
- auto (default): trace, then check the trace: tracer warnings, and the traced vs the eager
  model on perturbed inputs (other signs, scales) whose branch may differ. Any doubt -> script.
- trace: trace only; a trace that disagrees with the eager model is an error, never shipped.
- script: script only.
If neither gives a module that matches the eager model, the error names the construct.
A TorchScript `.pt` source is taken as it is; an ExportedProgram `.pt2` is traced (its graph
is already straight-line).
"""
from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from ...errors import ConversionError, short
from ...specs import TensorSpec
from .. import Artifact, Format
from ..base import BuildContext

log = logging.getLogger(__name__)


def as_given(ctx: BuildContext) -> Artifact:
    """A TorchScript source is taken as it is."""
    out = ctx.workdir / "model.pt"
    shutil.copyfile(ctx.source.ref, out)
    return _artifact(ctx, out, {"route": "TorchScript (as given)"})


def perturbed(example: dict, n: int = 4) -> list[dict]:
    """Inputs whose data-dependent branches may go the other way: flipped signs, other scales."""
    rng = np.random.default_rng(7)
    out = []
    for i, scale in enumerate((-1.0, 0.1, 10.0, -10.0)[:n]):
        feeds = {}
        for k, v in example.items():
            if v.dtype.kind == "f":
                base = v if i == 0 else rng.standard_normal(v.shape).astype(v.dtype)
                feeds[k] = (base * scale).astype(v.dtype)
            else:
                feeds[k] = v
        out.append(feeds)
    return out


def _args(example, names):
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)


def _outputs(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [out[k] for k in sorted(out)]
    return list(out)


def disagreement(eager, compiled, samples: list[dict], names: list[str]) -> str | None:
    """None when compiled matches eager on every sample; else a description of the first miss."""
    import torch

    for i, feeds in enumerate(samples):
        args = _args(feeds, names)
        with torch.no_grad():
            try:
                a = _outputs(eager(*args))
            except Exception:
                continue  # the eager model itself rejects this input: nothing to compare
            try:
                b = _outputs(compiled(*args))
            except Exception as exc:
                return f"perturbed input {i}: the compiled model fails ({type(exc).__name__}: {str(exc)[:120]})"
        if len(a) != len(b):
            return f"perturbed input {i}: {len(b)} outputs, eager gives {len(a)}"
        for x, y in zip(a, b):
            if x.shape != y.shape:
                return f"perturbed input {i}: output shape {list(y.shape)}, eager gives {list(x.shape)}"
            x, y = x.double(), y.double()
            tol = 1e-4 + 1e-3 * float(x.abs().max())
            if float((x - y).abs().max()) > tol:
                return f"perturbed input {i}: max |diff| {float((x - y).abs().max()):.3g} from the eager model"
    return None


def _trace(module, args):
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(module, args, check_trace=False, strict=False)
    tracer = sorted({str(w.message).split("\n")[0][:200] for w in caught
                     if w.category.__name__ == "TracerWarning"})
    return traced, tracer


def _script(module):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(module)


def _script_blocker(exc: Exception) -> str:
    """The construct TorchScript rejects: the error's first line and the source line it points at."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    code = [ln.strip() for ln in lines[1:] if not set(ln.strip()) <= set("~^ ") and "File " not in ln][:2]
    return first.strip() + (f" at `{code[-1]}`" if code else "")


def from_module(ctx: BuildContext) -> Artifact:
    """An nn.Module (or an ExportedProgram's module): traced or scripted, whichever is sound."""
    import torch

    source, example = ctx.source, ctx.example
    out = ctx.workdir / "model.pt"
    module = source.obj
    names = source.input_names
    args = _args(example, names)
    checks = perturbed(example)
    mode = ctx.profile.format_options("torchscript").mode
    info: dict = {"requested_mode": mode}
    t0 = time.perf_counter()
    compiled = None
    reasons = []
    if mode in ("auto", "trace"):
        try:
            traced, tracer = _trace(module, args)
            miss = disagreement(module, traced, [example] + checks, names)
            info["tracer_warnings"] = tracer
            if miss:
                reasons.append(f"the trace baked in one path of the model's control flow ({miss})")
            elif tracer and source.kind.value != "exported":
                reasons.append("tracer warnings: " + "; ".join(tracer[:3]))
            if not reasons or (mode == "trace" and not miss):
                compiled, info["mode"] = traced, "trace"
        except Exception as exc:
            reasons.append(f"tracing failed: {type(exc).__name__}: {short(exc, 200)}")
        if compiled is None and mode == "trace":
            raise ConversionError("TorchScript tracing is unsafe for this model: " + "; ".join(reasons),
                                  "use --torchscript-mode script (or auto), or remove the data-dependent branch")
    if compiled is None:
        if source.kind.value == "exported":
            raise ConversionError("an ExportedProgram could not be traced to TorchScript: " + "; ".join(reasons),
                                  "use --format onnx or --format tflite for .pt2 sources")
        try:
            scripted = _script(module)
        except Exception as exc:
            raise ConversionError("TorchScript: " + ("; ".join(reasons) + "; and " if reasons else "")
                                  + "scripting fails: " + _script_blocker(exc),
                                  "make that construct TorchScript-compatible (type annotations, no "
                                  "unsupported Python features), or use --format onnx") from exc
        miss = disagreement(module, scripted, [example] + checks, names)
        if miss:
            raise ConversionError(f"the scripted model disagrees with the eager model ({miss})",
                                  "report it with --debug; use --format onnx meanwhile")
        compiled, info["mode"] = scripted, "script"
        if reasons:
            info["why_script"] = reasons
    info["seconds"] = round(time.perf_counter() - t0, 3)
    info["checked_inputs"] = 1 + len(checks)
    info["route"] = f"torch.jit.{info['mode']}"
    torch.jit.save(compiled, str(out))
    art = _artifact(ctx, out, info)
    if info["mode"] == "script" and mode == "auto":
        art = art.warn("TorchScript: tracing was unsafe (" + "; ".join(reasons)[:300] + "), scripted instead")
    return art


def _artifact(ctx: BuildContext, out: Path, info: dict) -> Artifact:
    """The I/O of a TorchScript file is the source's (no need to run it again)."""
    inputs = [s.replace(example_shape=list(s.example_shape) if s.example_shape else list(ctx.example[s.name].shape))
              for s in ctx.source.inputs]
    return Artifact(format=Format.TORCHSCRIPT, path=out, inputs=tuple(inputs),
                    outputs=tuple(TensorSpec(s.name, s.dtype, list(s.shape)) for s in ctx.source.outputs),
                    precision="fp32", info=info)
