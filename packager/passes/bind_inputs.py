"""bind-inputs: give a scalar input that only steers control flow its reference value, so the `If`
it decides folds away (onnxslim's constant folding flattens an If with a constant condition).

Silero VAD's ONNX graph takes `sr` (an int64 scalar) and branches on `Equal(sr, 16000)` into a
16 kHz and an 8 kHz subgraph; onnx2tf fails at that `If` (bench/zoo_prep.md). For a target without
control flow (TF-Lite) the pass turns such an input into a constant with the value the reference
inputs hold, folds, and keeps the result only when the If is gone and onnxruntime gives the same
outputs as the original (fed the scalar) on the reference input. Honest about it: the bound value
is recorded (manifest conversion.passes and conversion.bound_inputs), the bundle's inputs and
vectors no longer hold it, and a build whose reference inputs disagree with the bound value fails
(pipeline: the samples are checked against it).

For an int8 ONNX bundle too: onnxruntime's quantizer does not enter If bodies, so silero's graph
(everything inside the If) stayed float, with a warning, and was bundled as "int8".

Which inputs: `inputs` when the profile names them, else (auto) every 0-d graph input from which an
If condition is computed using constants only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np

from ..errors import DataError, short
from ..formats import Format
from . import Pass, graph, quantized_here


@dataclass(frozen=True)
class BindInputsOptions(graph.Tolerance):
    enabled: Union[Literal["auto"], bool] = "auto"
    inputs: tuple[str, ...] = field(default_factory=tuple)    # empty: the scalars that steer an If


def steering_scalars(model) -> list[str]:
    """0-d graph inputs from which an If condition is computed using only constants."""
    return sorted({name for names in steered_ifs(model).values() for name in names})


def steered_ifs(model) -> dict[str, set]:
    """{If node name: the 0-d graph inputs its condition is computed from, with constants only}."""
    init = {i.name for i in model.graph.initializer}
    scalars = {vi.name for vi in model.graph.input if vi.name not in init
               and vi.type.tensor_type.HasField("shape") and len(vi.type.tensor_type.shape.dim) == 0}
    producer = {o: n for n in model.graph.node for o in n.output}
    found = {}
    for n in model.graph.node:
        if n.op_type != "If":
            continue
        stack, seen, leaves = [n.input[0]], set(), set()
        while stack:
            t = stack.pop()
            if t in seen or t in init or not t:
                continue
            seen.add(t)
            if t in producer:
                p = producer[t]
                stack.extend(p.input if p.op_type != "Constant" else [])
            else:
                leaves.add(t)
        if leaves and leaves <= scalars:
            found[n.name] = leaves
    return found


def drop_bound(samples: list[dict], bound: dict, what: str) -> list[dict]:
    """The samples without the bound inputs; every sample must hold the bound value."""
    if not bound:
        return samples
    for i, s in enumerate(samples):
        for name, value in bound.items():
            if name in s and not np.array_equal(np.asarray(s[name]), np.asarray(value)):
                raise DataError(f"{what} sample {i} has {name}={np.asarray(s[name]).tolist()}, but the converted "
                                f"graph was made with {name} bound to {value} (its If folded for that value: "
                                "TF-Lite and OpenVINO take no If, onnxruntime's int8 does not enter one)",
                                f"build one bundle per {name} value (--inputs holding only {name}={value}), "
                                "or use --format onnx at a float precision, which keeps the branch")
    return [{k: v for k, v in s.items() if k not in bound} for s in samples]


class BindInputs(Pass):
    name = "bind-inputs"
    formats = (Format.ONNX,)
    Options = BindInputsOptions
    summary = "bind a scalar input that steers an If to its reference value, so the If folds (TF-Lite, int8)"

    def candidates(self, art, opts) -> list[str]:
        if opts.inputs:
            return [n for n in opts.inputs if n in {s.name for s in art.inputs}]
        return steering_scalars(graph.load(art.path))

    def wanted(self, ctx, art, opts, next_backend):
        int8 = quantized_here(ctx, art, next_backend)   # onnxruntime's quantizer leaves If bodies alone
        if not int8 and (next_backend is None or next_backend.format not in (Format.TFLITE, Format.OPENVINO)):
            return None
        names = self.candidates(art, opts)
        if not names:
            return None
        if int8:   # a graph that is all If would stay float
            return (f"int8: onnxruntime's quantizer does not enter the If that {', '.join(names)} steer; "
                    "bound to the reference value so it folds")
        tool = "onnx2tf" if next_backend.format == Format.TFLITE else "openvino.convert_model"
        return (f"{next_backend.label} ({tool}) cannot take the If that {', '.join(names)} steer; "
                "bound to the reference value so it folds")

    def run(self, ctx, art, opts, next_backend=None):
        from onnx import helper, numpy_helper

        names = [n for n in self.candidates(art, opts) if n in ctx.example]
        if not names:
            return art, {"kept": "no scalar input to bind"}
        model = graph.load(art.path)
        steered = sorted(n for n, leaves in steered_ifs(model).items() if leaves & set(names))
        bound = {}
        for name in names:
            vi = next(v for v in model.graph.input if v.name == name)
            value = np.asarray(ctx.example[name]).astype(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
            model.graph.input.remove(vi)
            model.graph.initializer.append(numpy_helper.from_array(value, name))
            bound[name] = value.item() if value.ndim == 0 else value.tolist()
        try:
            folded, _ = graph.slim(model, next_backend)
        except Exception as exc:
            return graph.kept(art, "bind-inputs", f"onnxslim could not fold the bound graph: "
                              f"{type(exc).__name__}: {short(exc, 160)}")
        left = sorted({n.name for n in folded.graph.node} & set(steered))
        if left or not steered:
            return graph.kept(art, "bind-inputs", f"binding {bound} did not fold the If "
                              f"{', '.join(left or steered) or '(none steered)'}")
        out = graph.save(folded, ctx, art, "bound")
        refused, check = graph.checked(ctx, art, out, opts, "bind-inputs", "bound")
        if refused:
            return refused
        new = graph.reread(out, art)
        new = new.replace(info={**new.info, "bound_inputs": {**art.info.get("bound_inputs", {}), **bound}})
        return new, {"bound": bound, "folded": steered, "nodes": graph.counts(folded), "check": check}
