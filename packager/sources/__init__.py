"""SOURCE -> SourceModel: load the original model and learn its inputs and outputs.

One module a kind of source: onnx.py (`file.onnx`), factory.py (`file.py:factory`,
`package.module:factory` returning an nn.Module or (module, example_inputs)), torchfiles.py
(TorchScript archives, ExportedProgram `.pt2`), tensorflow.py (`.keras`, legacy `.h5`, SavedModel folders).
The original model also runs the reference inputs, so its outputs become the truth every
converted model is compared with. A SourceModel is immutable: the pipeline makes a new one
(`with_outputs`) once the reference run has named the outputs.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from .model import SourceModel


__all__ = ["SourceModel", "load", "check_route"]


def load(ref: str, input_shapes: dict[str, list[int]], data: dict | None = None) -> SourceModel:
    """data: {name: (shape, dtype)} of --inputs (packager.data.describe): the shapes and dtypes of a
    source that records none (a factory without an example, TorchScript)."""
    from . import tensorflow, torchfiles

    path = Path(ref)
    if path.suffix.lower() == ".onnx":
        from .onnx import load_onnx
        return load_onnx(path, input_shapes)
    if tensorflow.handles(path):
        return tensorflow.load(path, input_shapes)
    if torchfiles.handles(path):
        return torchfiles.load(path, input_shapes, data)
    if ":" in ref and not path.exists():
        from .factory import load_factory
        return load_factory(ref, input_shapes, data)
    if not path.exists():
        raise SourceError(f"source '{ref}' does not exist",
                          "pass a model.onnx file or path/to/file.py:factory / package.module:factory")
    kind = torchfiles.archive_kind(path) if path.is_file() else None
    what = " (a torch.save pickle: state_dict or pickled module)" if kind == "pickle" else ""
    raise SourceError(f"source '{ref}' is not a format edgepack reads here (suffix '{path.suffix}'{what})",
                      "pass .onnx, a TorchScript archive (torch.jit.save: .pt, .jit, .ts, any name), .pt2, "
                      ".keras (or a Keras 2 .h5), a SavedModel folder, or a python factory as file.py:function returning an nn.Module")


def check_route(src: SourceModel, route) -> None:
    """A TorchScript file with Python-number arguments (`forward(x, sr: int)`) or state kept in its
    attributes runs only as given: any export would freeze the number and drop the state."""
    if not (src.scalars or src.state):
        return
    if len(route.steps) == 1 and route.steps[0].source == route.steps[0].target.value:
        return  # TorchScript -> TorchScript, as given: the runtime passes the numbers, the module keeps its state
    why = []
    if src.scalars:
        why.append("forward() takes " + ", ".join(f"'{n}' as a Python {t}" for n, t in src.scalars.items())
                   + ", which an export would freeze at one value")
    if src.state:
        why.append("it keeps state between calls in its attributes (" + ", ".join(src.state)
                   + "), which an exported graph cannot hold")
    raise SourceError(f"'{src.ref}' cannot be exported for {route}: " + "; and ".join(why),
                      "build it for a TorchScript profile (--profile jetson-torchscript or --format torchscript) "
                      "as it is, or wrap the model in a factory whose forward takes and returns tensors, state "
                      "included (docs/DATA.md, 'Non-tensor arguments'; examples/wrapper_factory.py)")
