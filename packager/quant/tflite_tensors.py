"""Capture the tensors of a float TF-Lite model and its ai-edge-quantizer version (same tensor names)
and compare them tensor by tensor, with ai-edge-quantizer's own validation machinery: interpreters
that keep every tensor (`preserve_all_tensors`), the signature invoked with int8 inputs quantized
the way the model says, tensors dequantized before comparing (what `Quantizer.validate` does).

Ops have no names in a flatbuffer: an op is named by its first output tensor, which is also the
name ai-edge-quantizer's recipes match (`regex` on the op's output tensor name), so a node left in
float is the same string here and in the recipe.

Not covered: a TF-Lite model against the ONNX graph it came from (onnx2tf renames every tensor;
its own `-cotof` check compares them), and tensors of subgraphs other than the signature's.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..quiet import quiet_stdout
from .tensors import Accumulator, Node

log = logging.getLogger(__name__)

_MOVES = {"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "QUANTIZE", "DEQUANTIZE", "CONCATENATION",
          "GATHER", "SLICE", "STRIDED_SLICE", "PACK", "UNPACK", "SPLIT", "PAD", "SHAPE"}


def _interpreter(path: Path):
    from ai_edge_quantizer.utils import tfl_interpreter_utils as utils

    return utils.create_tfl_interpreter(tflite_model=str(path), use_xnnpack=False, num_threads=2,
                                        preserve_all_tensors=True)


def nodes_of(path: Path) -> list[Node]:
    from ..formats.tflite import io

    it = io.interpreter(path, plain_ops=True)
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        ins = tuple(names[i] for i in op["inputs"] if i >= 0 and i in names)
        outs = tuple(names[i] for i in op["outputs"] if i >= 0 and i in names)
        if outs:
            out.append(Node(outs[0], op["op_name"], ins, outs))
    return out


def _capture(path: Path, sample: dict, key: str | None) -> dict:
    from ai_edge_quantizer.utils import tfl_interpreter_utils as utils

    it = _interpreter(path)
    runner = it.get_signature_runner(key)
    feeds = {n: np.asarray(sample[n], dtype=np.float32) if np.asarray(sample[n]).dtype.kind == "f"
             else np.asarray(sample[n]) for n in runner.get_input_details()}
    utils.invoke_interpreter_signature(it, feeds, key)
    sub = utils.get_signature_main_subgraph_index(it, key)
    out = {}
    for name, detail in utils.get_tensor_name_to_details_map(it, sub).items():
        if detail["dtype"] == np.object_ or not np.all(detail["shape"]):
            continue
        try:
            out[name] = (np.array(utils.get_tensor_data(it, detail, sub)), np.dtype(detail["dtype"]).kind)
        except ValueError:   # a tensor the interpreter freed or never wrote
            continue
    return out


def compare(reference: Path, candidate: Path, samples: list[dict], workdir: Path) -> dict:
    """The same shape as onnx_tensors.compare: accumulator, nodes, candidates, kind, samples."""
    from ..formats.tflite import io
    from .scratch import sandbox

    with sandbox(workdir):     # LiteRT warns about preserve_all_tensors: --debug only
        _, key, _, _ = io.signature_details(reference)
        acc = Accumulator(channel_axis=-1)   # NHWC; dropped below unless the candidate is int8
        quantized: set[str] = set()
        for s in samples:
            ref = _capture(reference, s, key)
            got = _capture(candidate, s, key)
            for name, (value, kind) in ref.items():
                if kind != "f" or name not in got:
                    continue
                acc.add(name, value, got[name][0])
                if got[name][1] != "f":
                    quantized.add(name)
        nodes = nodes_of(reference)
    if not quantized:
        for sums in acc.sums.values():
            sums.channel_max = None
    weights = {t for n in nodes for t in n.inputs if t not in {o for m in nodes for o in m.outputs}}
    cands = {n.name for n in nodes if n.op not in _MOVES and
             (any(t in quantized for t in n.outputs) or any(t in quantized and t in weights for t in n.inputs))}
    kind = "int8" if quantized else "float"
    return {"accumulator": acc, "nodes": nodes, "candidates": cands, "kind": f"tflite-{kind}",
            "samples": len(samples)}


def softmax_outputs(path: Path) -> set[str]:
    """Signature outputs a SOFTMAX / LOG_SOFTMAX op writes (through RESHAPE/SQUEEZE): classifier scores."""
    from ..formats.tflite import io

    with quiet_stdout():
        _, _, _, outs = io.signature_details(path)
        nodes = nodes_of(path)
    producer = {t: n for n in nodes for t in n.outputs}
    index_name = {}
    it = io.interpreter(path, plain_ops=True)
    for t in it.get_tensor_details():
        index_name[t["index"]] = t["name"]
    found = set()
    for sig_name, detail in outs.items():
        node = producer.get(index_name.get(detail["index"], ""))
        while node is not None and node.op in ("RESHAPE", "SQUEEZE", "DEQUANTIZE", "QUANTIZE") and node.inputs:
            node = producer.get(node.inputs[0])
        if node is not None and node.op in ("SOFTMAX", "LOG_SOFTMAX"):
            found.add(sig_name)
    return found
