"""Read an OpenVINO IR's inputs and outputs (names as the ONNX graph had them)."""
from __future__ import annotations

from pathlib import Path

from ...specs import TensorSpec, guess_layout
from .. import Artifact, Format


def _spec(port) -> TensorSpec:
    names = sorted(port.get_names())
    shape = []
    for i, d in enumerate(port.get_partial_shape()):
        shape.append(d.get_length() if d.is_static else ("batch" if i == 0 else f"dim{i}"))
    dtype = port.get_element_type().to_dtype().name
    return TensorSpec(names[0] if names else port.get_any_name(), dtype, shape, guess_layout(shape))


def read(path: Path, precision: str = "fp32") -> Artifact:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    return Artifact(format=Format.OPENVINO, path=Path(path), inputs=tuple(_spec(p) for p in model.inputs),
                    outputs=tuple(_spec(p) for p in model.outputs), precision=precision,
                    sidecars=(Path(path).with_suffix(".bin"),))
