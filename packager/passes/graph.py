"""What the ONNX passes share: load and save a graph, count its nodes, and check a rewritten graph
against the one it came from on the build's reference input, in onnxruntime.

Not a pass itself (no Pass subclass here): the helpers keep each pass file about its one job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import short
from ..formats import Artifact, Format

log = logging.getLogger(__name__)

TWO_GB = 2 ** 31 - 1


@dataclass(frozen=True)
class Tolerance:
    """How far a rewritten graph's outputs may move in onnxruntime on the reference input
    (|a - b| <= atol + rtol * |b|): the options of every pass that checks its result."""

    atol: float = field(default=1e-4, metadata={"min": 0})
    rtol: float = field(default=1e-3, metadata={"min": 0})
_OUTPUTS: dict[str, list] = {}     # ORT outputs of a graph file on the build's example (one build's files)


def load(path: Path, weights: bool = True):
    import onnx

    return onnx.load(str(path), load_external_data=weights)


def save(model, ctx, art: Artifact, tag: str) -> Path:
    """The rewritten graph as <workdir>/passes/<stem>.<tag>.onnx (one file unless over 2 GB)."""
    import onnx

    out = ctx.folder("passes") / f"{art.path.stem.split('.')[0]}.{tag}.onnx"
    big = model.ByteSize() > TWO_GB
    onnx.save_model(model, str(out), save_as_external_data=big,
                    location=out.name + ".data" if big else None)
    return out


def reread(path: Path, art: Artifact) -> Artifact:
    """The Artifact of a rewritten graph: its own I/O, the reference shapes and what made it kept."""
    from ..formats import get

    new = get(Format.ONNX).read(path, art.precision, like=art)
    return new.replace(info={**art.info, **new.info})


def counts(model) -> dict:
    ops: dict[str, int] = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"nodes": len(model.graph.node), "initializers": len(model.graph.initializer),
            **{k: ops[k] for k in ("Constant", "Shape", "If", "Loop") if k in ops}}


def graphs(model):
    """The top graph and every If/Loop/Scan body inside it, depth first."""
    stack = [model.graph]
    while stack:
        g = stack.pop()
        yield g
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


def inferred_shapes(model) -> dict[str, list]:
    """Each tensor's shape as ONNX shape inference knows it: {name: [size, or None where symbolic]},
    initializers and every input, value_info and output of known rank (weights not needed)."""
    from onnx import shape_inference

    g = shape_inference.infer_shapes(model).graph
    shapes = {i.name: list(i.dims) for i in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return shapes


def op_types(model) -> set[str]:
    """Every op type in the model, bodies of If/Loop included."""
    return {n.op_type for g in graphs(model) for n in g.node}


def attr(node, name: str, default=None):
    """A node attribute's value (onnx.helper.get_attribute_value), or `default` when it is not set."""
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def slim(model, next_backend=None):
    """onnxslim.slim as the passes call it. Before onnx2tf, chained Slices stay apart: onnxslim's
    EliminationSlice merges x[:, :129, :] into one Slice over axes [0, 1, 2] (full ranges on 0 and 2),
    and onnx2tf 1.29.24 maps such a Slice wrongly onto its channels-last tensor (Silero VAD's STFT
    became an empty (1, 0, 258) tensor, measured); kept apart, onnxslim drops the no-op slices and
    one 1-axis Slice remains. Returns (model, the fusion patterns skipped)."""
    import onnxslim

    from ..quiet import quiet_stdout

    skip = ["EliminationSlice"] if next_backend is not None and next_backend.needs_static_shapes else []
    with quiet_stdout():
        out = onnxslim.slim(model, skip_fusion_patterns=skip) if skip else onnxslim.slim(model)
    return out, skip


def shared_initializers(model) -> list[str]:
    """Initializer names defined in more than one graph (two If branches each holding one).
    Valid ONNX, but onnxruntime's float16 converter asserts every name is unique model-wide."""
    seen: dict[str, int] = {}
    for g in graphs(model):
        for init in g.initializer:
            seen[init.name] = seen.get(init.name, 0) + 1
    return sorted(name for name, n in seen.items() if n > 1)


def opset(model) -> int:
    from ..formats.onnx.io import opset_of

    return opset_of(model) or 0


def feeds(path: Path, example: dict) -> dict:
    """The example's arrays for the graph's inputs, in the dtype each input declares."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in init or vi.name not in example:
            continue
        dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        out[vi.name] = np.asarray(example[vi.name]).astype(dtype, copy=False)
    return out


def run_ort(path: Path, example: dict) -> list:
    """The graph's outputs on the example (cached per file: a build's pass files are never rewritten)."""
    key = str(path)
    if key in _OUTPUTS:
        return _OUTPUTS[key]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds(path, example))
    if len(_OUTPUTS) > 8:
        _OUTPUTS.clear()
    _OUTPUTS[key] = got
    return got


def compare(before: Path, after: Path, example: dict, atol: float, rtol: float) -> tuple[bool, dict]:
    """Do both graphs give the same outputs on the example (|a - b| <= atol + rtol * |b|)?
    Returns (same, what was measured); a graph onnxruntime cannot run counts as different."""
    try:
        ref = run_ort(before, example)
    except Exception as exc:  # nothing to check against: say so, the caller decides
        return False, {"checked": False, "why": f"onnxruntime cannot run the graph before the pass: {short(exc, 200)}"}
    try:
        got = run_ort(after, example)
    except Exception as exc:
        return False, {"checked": True, "why": f"does not run in onnxruntime: {short(exc, 200)}"}
    if len(ref) != len(got):
        return False, {"checked": True, "why": f"gives {len(got)} outputs instead of {len(ref)}"}
    worst = 0.0
    for r, g in zip(ref, got):
        r, g = np.asarray(r), np.asarray(g)
        if r.shape != g.shape:
            return False, {"checked": True, "why": f"changes an output's shape {list(r.shape)} -> {list(g.shape)}"}
        if r.dtype.kind not in "fc":
            if not np.array_equal(r, g):
                return False, {"checked": True, "why": "changes an integer output"}
            continue
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        diff = np.abs(g64 - r64)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        if not np.all((diff <= atol + rtol * np.abs(r64)) | (np.isnan(r64) & np.isnan(g64))):
            return False, {"checked": True, "max_abs": worst,
                           "why": f"gives outputs that differ by up to {worst:.3g} (atol {atol:g}, rtol {rtol:g})"}
    return True, {"checked": True, "max_abs": worst}


def kept(art: Artifact, pass_name: str, why: str, refused: bool = False, **extra) -> tuple[Artifact, dict]:
    """The pass's result when it leaves the graph as it was: the same artifact, with a warning."""
    label = f"{pass_name} pass refused" if refused else f"{pass_name} pass"
    return art.warn(f"{label}: {why}; the graph is used as it was"), {"kept": why, **extra}


def checked(ctx, art: Artifact, out: Path, opts, pass_name: str, what: str) -> tuple[tuple | None, dict]:
    """Compare the rewritten graph `out` with `art` on the example: (None, check) when they agree,
    else (the pass's 'kept' result, check)."""
    same, check = compare(art.path, out, ctx.example, opts.atol, opts.rtol)
    if same:
        return None, check
    why = f"the {what} graph {check['why']}" if check.get("checked") else check["why"]
    return kept(art, pass_name, why, refused=True, check=check), check
