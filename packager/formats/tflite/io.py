"""Read a TF-Lite flatbuffer's signature (inputs, outputs) with the agent's own LiteRT loader."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConversionError
from ...specs import TensorSpec
from .. import Artifact, Format


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


def _spec(name: str, d: dict, is_input: bool) -> TensorSpec:
    shape = [int(x) for x in d["shape"]]
    sig = [int(x) for x in d.get("shape_signature", d["shape"])]
    dims = [("batch" if i == 0 else f"dim{i}") if s < 0 else v for i, (v, s) in enumerate(zip(shape, sig))]
    return TensorSpec(name, np.dtype(d["dtype"]).name, dims, None, shape if is_input else None)


def read(path: Path, precision: str = "fp32", order: list[str] | None = None) -> Artifact:
    """The artifact of a .tflite file; `order`: input names in the order the source takes them."""
    _, _, ins, outs = signature_details(path)
    inputs = [_spec(n, d, True) for n, d in ins.items()]
    if order:
        pos = {n: i for i, n in enumerate(order)}
        inputs.sort(key=lambda s: pos.get(s.name, len(pos)))
    outputs = [_spec(n, d, False) for n, d in outs.items()]
    return Artifact(format=Format.TFLITE, path=Path(path), inputs=tuple(inputs), outputs=tuple(outputs),
                    precision=precision)


def with_source_layouts(art: Artifact, ctx, changes: dict) -> Artifact:
    """The source's input layouts, NHWC where the route changed the layout (`changes`)."""
    by_name = {s.name: s for s in ctx.source.inputs}
    inputs = tuple(s.replace(layout="NHWC" if s.name in changes else
                             (by_name[s.name].layout if s.name in by_name else s.layout)) for s in art.inputs)
    return art.replace(inputs=inputs)
