"""`file.onnx` -> SourceModel: checked, loaded in onnxruntime (CPU), inputs and outputs from the graph."""
from __future__ import annotations

import os
from pathlib import Path

from agent.manifest import sha256_file  # one hashing routine for host and device

from ..errors import SourceError, short
from ..formats import SourceKind
from ..formats.onnx.io import graph_io, opset_of
from .model import SourceModel
from .common import apply_shapes, clean_name


def load_onnx(path: Path, input_shapes: dict[str, list[int]]) -> SourceModel:
    import onnx

    if not path.is_file():
        raise SourceError(f"ONNX file '{path}' does not exist", "check the path")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # DecodeError, missing external data, ...
        raise SourceError(f"'{path}' is not a readable ONNX model ({type(exc).__name__}: {short(exc)})",
                          "the file may be truncated or corrupt: export it again") from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise SourceError(f"'{path}' fails the ONNX checker: {short(exc)}",
                          "export the model again with a supported opset") from exc
    inputs, outputs = graph_io(model)
    inputs = apply_shapes(inputs, input_shapes, str(path))

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # we report failures ourselves, in one line
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise SourceError(f"onnxruntime cannot load '{path}': {short(exc)}",
                          "check that the model uses standard ONNX ops and a supported opset") from exc
    out_names = [o.name for o in sess.get_outputs()]

    def runner(feeds):
        return dict(zip(out_names, sess.run(out_names, feeds)))

    return SourceModel(kind=SourceKind.ONNX, name=clean_name(path.stem), ref=str(path),
                       sha256=sha256_file(path), inputs=tuple(inputs), outputs=tuple(outputs), obj=Path(os.path.abspath(path)),
                       runner=runner, notes=(f"opset {opset_of(model)}",))
