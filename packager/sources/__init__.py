"""SOURCE -> SourceModel: load the original model and learn its inputs and outputs.

One module a kind of source: onnx.py (`file.onnx`), factory.py (`file.py:factory`,
`package.module:factory` returning an nn.Module or (module, example_inputs)), torchfiles.py
(TorchScript archives, ExportedProgram `.pt2`), tensorflow.py (`.keras`, SavedModel folders).
The original model also runs the reference inputs, so its outputs become the truth every
converted model is compared with. A SourceModel is immutable: the pipeline makes a new one
(`with_outputs`) once the reference run has named the outputs.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from .model import SourceModel


__all__ = ["SourceModel", "load"]


def load(ref: str, input_shapes: dict[str, list[int]]) -> SourceModel:
    from . import tensorflow, torchfiles

    path = Path(ref)
    if path.suffix.lower() == ".onnx":
        from .onnx import load_onnx
        return load_onnx(path, input_shapes)
    if tensorflow.handles(path):
        return tensorflow.load(path, input_shapes)
    if torchfiles.handles(path):
        return torchfiles.load(path, input_shapes)
    if ":" in ref and not path.exists():
        from .factory import load_factory
        return load_factory(ref, input_shapes)
    if not path.exists():
        raise SourceError(f"source '{ref}' does not exist",
                          "pass a model.onnx file or path/to/file.py:factory / package.module:factory")
    raise SourceError(f"source '{ref}' is not a format edgepack reads here (suffix '{path.suffix}')",
                      "pass .onnx, .pt/.jit (TorchScript), .pt2, .keras, a SavedModel folder, or a python "
                      "factory as file.py:function returning an nn.Module")
