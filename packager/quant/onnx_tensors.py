"""Capture the intermediate tensors of two ONNX models with the same tensor names (a float model and
its int8 QDQ / dynamic int8 / fp16 version) and compare them, tensor by tensor.

Every float tensor of the top graph is made a graph output (what onnxruntime's
qdq_loss_debug.modify_model_output_intermediate_tensors does, without its Reshape to 1-D, so that
slices along axis 1 stay comparable); both models run with graph optimizations off, one sample at a
time, and the sums go to packager/quant/tensors.Accumulator. For QDQ models onnxruntime's own
qdq_loss_debug.create_activation_matching pairs each tensor with its quantize -> dequantize copy:
the dequantized value is what the next node reads, so that is what is compared with the float model.

Not covered: tensors inside If/Loop bodies (ORT's quantizer does not enter them either), and models
whose tensors are named differently (a TF-Lite or OpenVINO conversion of an ONNX graph).
"""
from __future__ import annotations

import logging
from pathlib import Path

from .scratch import sandbox
from .tensors import Accumulator, Node

log = logging.getLogger(__name__)

FLOAT_TYPES = (1, 10, 11, 16)   # float, float16, double, bfloat16
_FLOAT_CACHE: dict = {}         # reference file -> (key, captured float tensors per sample)
CACHE_BYTES = 256 * 2 ** 20     # keep the float model's tensors between rounds when they fit


def node_name(node, index: int) -> str:
    """A node's name; unnamed nodes (exporters leave Constants unnamed) are called OpType_index, the
    name the fp16 converter is given for them too (formats/onnx/quantize.py names them so)."""
    return node.name or f"{node.op_type}_{index}"


def nodes_of(model) -> list[Node]:
    return [Node(node_name(n, i), n.op_type, tuple(x for x in n.input if x), tuple(n.output))
            for i, n in enumerate(model.graph.node)]


def float_tensors(model) -> dict[str, int]:
    """Name -> element type of every float tensor the top graph's nodes produce."""
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - the value_info already there is used instead
        log.debug("onnx shape inference failed (%s); using the value_info the model has", exc)
    types = {}
    for vi in list(model.graph.value_info) + list(model.graph.output):
        t = vi.type.tensor_type
        if t.elem_type in FLOAT_TYPES:
            types[vi.name] = t.elem_type
    produced = {o for n in model.graph.node for o in n.output}
    return {k: v for k, v in types.items() if k in produced}


def expose(model, types: dict[str, int]):
    """A copy of the model whose outputs include every tensor in `types`."""
    import onnx
    from onnx import helper

    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    have = {o.name for o in aug.graph.output}
    for name, elem in types.items():
        if name not in have:
            aug.graph.output.append(helper.make_tensor_value_info(name, elem, None))
    return aug


def _session(model, workdir: Path, tag: str):
    import onnx
    import onnxruntime as ort

    path = workdir / f"capture-{tag}.onnx"
    onnx.save_model(model, str(path))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    path.unlink()
    return sess


def _feeds(sess, sample: dict) -> dict:
    import numpy as np

    names = {i.name for i in sess.get_inputs()}
    return {k: np.asarray(v) for k, v in sample.items() if k in names}


def _run(sess, sample: dict) -> dict:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, _feeds(sess, sample))))


def _float_runs(reference: Path, model, types, samples, workdir):
    """The reference's captured tensors per sample (reused between rounds while they fit in memory)."""
    key = (str(reference), reference.stat().st_mtime_ns, len(samples), tuple(sorted(types)))
    hit = _FLOAT_CACHE.get(str(reference))
    if hit and hit[0] == key:
        return hit[1]
    sess = _session(expose(model, types), workdir, "float")
    runs, size = [], 0
    for s in samples:
        out = _run(sess, s)
        size += sum(a.nbytes for a in out.values())
        runs.append(out)
    _FLOAT_CACHE.clear()
    if size <= CACHE_BYTES:
        _FLOAT_CACHE[str(reference)] = (key, runs)
    return runs


def compare(reference: Path, candidate: Path, samples: list[dict], workdir: Path, op_types=None) -> dict:
    """{'rows' source: Accumulator, 'nodes', 'candidates' (nodes the candidate quantized/converted),
    'kind' (qdq | int8-dynamic | fp16 | float), 'samples'}."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import create_activation_matching

    reference, candidate, workdir = Path(reference).resolve(), Path(candidate).resolve(), Path(workdir).resolve()
    ref_model = onnx.load(str(reference))
    cand_model = onnx.load(str(candidate))
    types = float_tensors(ref_model)
    cand_types = float_tensors(cand_model)
    ops = {n.op_type for n in cand_model.graph.node}
    kind = ("qdq" if "DequantizeLinear" in ops and "QuantizeLinear" in ops else
            "int8-dynamic" if ops & {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulInteger",
                                     "ConvInteger"} else
            "fp16" if any(t == 10 for t in cand_types.values()) else "float")
    acc = Accumulator(channel_axis=1 if kind == "qdq" else None)   # NCHW; per-tensor int8 activations
    with sandbox(workdir):
        float_runs = _float_runs(Path(reference), ref_model, types, samples, workdir)
        sess = _session(expose(cand_model, cand_types), workdir, "candidate")
        for s, fr in zip(samples, float_runs):
            cr = _run(sess, s)
            if kind == "qdq":
                match = create_activation_matching({k: [v] for k, v in cr.items()}, {k: [v] for k, v in fr.items()})
            else:
                match = {}
            for name in types:
                if name not in fr:
                    continue
                m = match.get(name)
                if m is not None and "float" in m:
                    acc.add(name, fr[name], m["post_qdq"][0], pre=m["pre_qdq"][0])
                elif name in cr:
                    acc.add(name, fr[name], cr[name])
            del cr, match
    nodes = nodes_of(ref_model)
    return {"accumulator": acc, "nodes": nodes, "candidates": _touched(ref_model, cand_model, kind, op_types),
            "kind": kind, "samples": len(samples)}


# Ops that only move or reinterpret values: leaving one in float changes nothing worth a round.
MOVES = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Split", "Slice", "Gather", "Concat",
         "Identity", "Shape", "Size", "Cast", "Constant", "Expand", "Tile", "Pad", "DepthToSpace", "SpaceToDepth"}


def _touched(ref_model, cand_model, kind: str, op_types=None) -> set[str]:
    """Float-model nodes the candidate quantized or converted (those a fallback can give back).
    op_types: what the quantizer was told to quantize (None / "all": every op it knows)."""
    ref_nodes = {node_name(n, i): n.op_type for i, n in enumerate(ref_model.graph.node)}
    if kind in ("qdq", "int8-dynamic"):
        allowed = set(op_types) if op_types and op_types != "all" else _quantizable()
        allowed -= MOVES - {"Concat"}        # a Concat shares one scale across its inputs: it matters
    if kind == "qdq":
        dq_out = {o for n in cand_model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        return {n.name for n in cand_model.graph.node
                if n.name in ref_nodes and n.op_type in allowed and any(i in dq_out for i in n.input)}
    if kind == "int8-dynamic":
        same = {n.name for n in cand_model.graph.node if ref_nodes.get(n.name) == n.op_type}
        return {name for name, op in ref_nodes.items() if name not in same and op in allowed}
    if kind == "fp16":
        # not a Constant node: blocked, onnxruntime's fp16 converter breaks the graph (measured on
        # PP-OCRv4 det: every output 0). An initializer read only by blocked nodes stays float32.
        return {name for name, op in ref_nodes.items() if op not in MOVES}
    return set()


def _quantizable() -> set[str]:
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry) | set(IntegerOpsRegistry)

PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Transpose")


def softmax_outputs(path: Path) -> set[str]:
    """Graph outputs a Softmax/LogSoftmax produces (through shape-only ops): classifier scores."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    producer = {o: n for n in model.graph.node for o in n.output}
    found = set()
    for out in model.graph.output:
        node = producer.get(out.name)
        while node is not None and node.op_type in PASS_THROUGH and node.input:
            node = producer.get(node.input[0])
        if node is not None and node.op_type in ("Softmax", "LogSoftmax"):
            found.add(out.name)
    return found
