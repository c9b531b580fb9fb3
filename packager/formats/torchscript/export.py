"""Exporters to TorchScript (`model.pt`, torch.jit.save).

Tracing records one run and misses control flow; scripting compiles the Python code and keeps
it, but needs code TorchScript understands. Mode (profile `torchscript.mode`, or --torchscript-mode):
- auto (default): trace, then check the traced vs the eager model on perturbed inputs of the
  example's sizes (floats: other signs and scales; integers: other values in the range seen, e.g.
  other token ids) whose branch may differ; a disagreement -> script. Tracer warnings alone are
  recorded, not a reason (tracing a transformer at a fixed length warns, and is what the
  transformers docs do). The trace is also run at other sizes (batch 2, a shorter sequence): when
  it disagrees there, the manifest records the sizes it is specialized to (`specialized_to`).
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
    given = ctx.source.path or Path(ctx.source.ref)
    if given.is_file():
        shutil.copyfile(given, out)
    else:  # a factory that returned a ScriptModule
        import torch

        torch.jit.save(ctx.source.obj, str(out))
    return _artifact(ctx, out, {"route": "TorchScript (as given)"})


def perturbed(example: dict, n: int = 4) -> list[dict]:
    """Inputs of the example's sizes whose data-dependent branches may go the other way: floats with
    flipped signs and other scales; integers (token ids, masks) drawn again within the range the
    example holds (other token ids of the vocabulary seen)."""
    rng = np.random.default_rng(7)
    out = []
    for i, scale in enumerate((-1.0, 0.1, 10.0, -10.0)[:n]):
        feeds = {}
        for k, v in example.items():
            if v.dtype.kind == "f":
                base = v if i == 0 else rng.standard_normal(v.shape).astype(v.dtype)
                feeds[k] = np.asarray(base * scale, dtype=v.dtype)
            elif v.dtype.kind in "iu" and v.size:
                feeds[k] = np.asarray(rng.integers(int(v.min()), int(v.max()) + 1, size=v.shape), dtype=v.dtype)
            else:
                feeds[k] = v
        out.append(feeds)
    return out


def other_sizes(example: dict) -> list[tuple[str, dict]]:
    """The example at other sizes a trace may have baked in: batch 2 (when the example is batch 1)
    and, for integer sequences (token ids, masks), a shorter length on their last axis."""
    variants = []
    arrays = list(example.values())
    if arrays and all(v.ndim >= 1 and v.shape[0] == 1 for v in arrays):
        twice = {k: np.concatenate([v, perturbed({k: v}, 2)[1][k]]) for k, v in example.items()}
        variants.append(("batch 2", twice))
    lengths = {v.shape[-1] for v in arrays if v.dtype.kind in "iu" and v.ndim >= 2 and v.shape[-1] > 2}
    for length in sorted(lengths):
        shorter = max(2, length - max(1, length // 4))
        feeds = {k: (v[..., :shorter].copy() if v.dtype.kind in "iu" and v.ndim >= 2 and v.shape[-1] == length else v)
                 for k, v in example.items()}
        variants.append((f"length {shorter} (not {length})", feeds))
    return variants


def size_checks(eager, traced, example: dict, names: list[str]) -> tuple[list[dict], dict | None]:
    """Run the trace at other sizes: [{sizes, agrees, why}], and the sizes the trace is specialized
    to ({input: shape}) when one that the eager model takes gives another answer, else None."""
    records, specialized = [], None
    for label, feeds in other_sizes(example):
        miss = disagreement(eager, traced, [feeds], names, strict=True)
        if miss == "eager fails":
            continue  # the model itself takes only the example's sizes
        records.append({"sizes": label, "agrees": miss is None, **({"why": miss} if miss else {})})
        if miss:
            specialized = {k: list(v.shape) for k, v in example.items()}
    return records, specialized


def _args(example, names):
    import torch

    return tuple(torch.from_numpy(np.asarray(example[n], order="C")) for n in names)  # 0-d stays 0-d


def _outputs(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [out[k] for k in sorted(out)]
    return list(out)


def disagreement(eager, compiled, samples: list[dict], names: list[str], strict: bool = False) -> str | None:
    """None when compiled matches eager on every sample; else a description of the first miss
    ('eager fails' with strict, when the eager model itself rejects a sample)."""
    import torch

    for i, feeds in enumerate(samples):
        args = _args(feeds, names)
        with torch.no_grad():
            try:
                a = _outputs(eager(*args))
            except Exception:
                if strict:
                    return "eager fails"
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
            info["tracer_warnings"] = tracer   # recorded; the perturbed inputs decide, not the warnings
            if miss:
                reasons.append(f"the trace baked in one path of the model's control flow ({miss})")
            else:
                compiled, info["mode"] = traced, "trace"
                info["traced_at"] = {k: list(v.shape) for k, v in example.items()}
                info["size_checks"], specialized = size_checks(module, traced, example, names)
                if specialized:
                    info["specialized_to"] = specialized
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
    info["checked_inputs"] = 1 + len(checks)   # the example and its perturbed copies, same sizes
    info["route"] = f"torch.jit.{info['mode']}"
    torch.jit.save(compiled, str(out))
    art = _artifact(ctx, out, info)
    if info.get("specialized_to"):
        art = art.warn("TorchScript: the trace holds only at the example's sizes ("
                       + ", ".join(f"{k} {v}" for k, v in info["specialized_to"].items())
                       + "); feed the device exactly these sizes")
    if info["mode"] == "script" and mode == "auto":
        art = art.warn("TorchScript: tracing was unsafe (" + "; ".join(reasons)[:300] + "), scripted instead")
    return art


def _artifact(ctx: BuildContext, out: Path, info: dict) -> Artifact:
    """The I/O of a TorchScript file is the source's (no need to run it again); a trace specialized
    to the example's sizes says so in its input shapes."""
    fixed = info.get("specialized_to") or {}
    inputs = [s.replace(example_shape=list(s.example_shape) if s.example_shape is not None
                        else list(ctx.example[s.name].shape),
                        **({"shape": list(fixed[s.name])} if s.name in fixed else {}))
              for s in ctx.source.inputs]
    return Artifact(format=Format.TORCHSCRIPT, path=out, inputs=tuple(inputs),
                    outputs=tuple(TensorSpec(s.name, s.dtype, list(s.shape)) for s in ctx.source.outputs),
                    precision="fp32", info=info)
