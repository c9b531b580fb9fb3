"""Read an ONNX file's inputs and outputs (one routine for sources, steps and passes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...specs import TensorSpec, guess_layout
from .. import Artifact, Format


def opset_of(model) -> int | None:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return None


def spec_of(vi) -> TensorSpec:
    """ONNX ValueInfo -> TensorSpec (unknown dims get a symbolic name: batch on axis 0, dimN)."""
    from onnx import helper

    t = vi.type.tensor_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
    except Exception:
        dtype = "float32"
    shape: list = []
    if t.HasField("shape"):
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            else:
                shape.append(d.dim_param or ("batch" if i == 0 else f"dim{i}"))
    return TensorSpec(vi.name, dtype, shape, guess_layout(shape))


def graph_io(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    init = {i.name for i in model.graph.initializer}
    return ([spec_of(v) for v in model.graph.input if v.name not in init],
            [spec_of(v) for v in model.graph.output])


def read(path: Path, precision: str = "fp32") -> Artifact:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inputs, outputs = graph_io(model)
    return Artifact(format=Format.ONNX, path=Path(path), inputs=tuple(inputs), outputs=tuple(outputs),
                    precision=precision, info={"opset": opset_of(model)})


def op_types(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
