"""TorchScript archives and ExportedProgram `.pt2` files -> SourceModel.

Loading is safe by construction: `torch.jit.load` reads TorchScript archives (code + tensors, no
arbitrary pickles) and `torch.export.load` reads the ExportedProgram format (weights through
`torch.load(weights_only=True)`). A plain pickled `nn.Module` is refused: we never call
`torch.load` without `weights_only=True`.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from agent.manifest import sha256_file

from ..errors import SourceError, short
from ..formats import SourceKind
from ..specs import TensorSpec, guess_layout
from .model import SourceModel
from .common import apply_shapes, clean_name, require_torch, torch_runner

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".jit", ".torchscript", ".ts")


def handles(path: Path) -> bool:
    return path.suffix.lower() in TORCHSCRIPT_SUFFIXES + (".pt2",)


def load(path: Path, input_shapes) -> SourceModel:
    if not path.is_file():
        raise SourceError(f"source '{path}' does not exist", "check the path")
    if path.suffix.lower() == ".pt2":
        return load_exported(path, input_shapes)
    return load_torchscript(path, input_shapes)


def _specs_from_shapes(names, input_shapes, ref, sample_dtypes=None) -> list[TensorSpec]:
    missing = [n for n in names if n not in input_shapes]
    unknown = [n for n in input_shapes if n not in names]
    if unknown:
        raise SourceError(f"--input-shape names {unknown}, but '{ref}' takes {names}", "use the model's input names")
    if missing:
        raise SourceError(f"'{ref}' does not record its input shapes (inputs {names})",
                          "pass " + " ".join(f"--input-shape {n}=..." for n in missing))
    return [TensorSpec(n, (sample_dtypes or {}).get(n, "float32"), list(input_shapes[n]),
                       guess_layout(input_shapes[n])) for n in names]


def load_torchscript(path: Path, input_shapes) -> SourceModel:
    torch = require_torch()
    if not zipfile.is_zipfile(path):
        raise SourceError(f"'{path}' is not a TorchScript archive (not a zip file; truncated, or a pickle)",
                          "save the model with torch.jit.save(torch.jit.script(model), 'model.pt'), or "
                          "torch.export.save(...) as .pt2; plain pickles are refused for safety")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise SourceError(f"'{path}' will not load as TorchScript ({type(exc).__name__}: {short(exc)})",
                          "a state_dict or pickled nn.Module is not TorchScript: save it with torch.jit.save, "
                          "or pass the Python factory (file.py:factory)") from exc
    module.eval()
    try:
        names = [a.name for a in module.forward.schema.arguments[1:]]
    except Exception:
        names = list(input_shapes) or ["x"]
    inputs = [s.replace(example_shape=list(s.shape)) for s in _specs_from_shapes(names, input_shapes, str(path))]
    return SourceModel(kind=SourceKind.TORCHSCRIPT, name=clean_name(path.stem), ref=str(path),
                       sha256=sha256_file(path), inputs=tuple(inputs), outputs=(), obj=module,
                       runner=torch_runner(module, names), notes=(f"torch {torch.__version__}", "TorchScript archive"))


def load_exported(path: Path, input_shapes) -> SourceModel:
    torch = require_torch()
    if not zipfile.is_zipfile(path):
        raise SourceError(f"'{path}' is not an ExportedProgram archive (not a zip file)",
                          "save it with torch.export.save(torch.export.export(model, args), 'model.pt2')")
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise SourceError(f"'{path}' will not load as an ExportedProgram ({type(exc).__name__}: {short(exc)})",
                          "re-export it with this torch version (torch.export.save)") from exc
    user = list(ep.graph_signature.user_inputs)
    specs = []
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            shape = []
            for i, d in enumerate(getattr(val, "shape", [])):
                shape.append(int(d) if isinstance(d, int) or str(d).isdigit() else ("batch" if i == 0 else f"dim{i}"))
            dtype = str(getattr(val, "dtype", "torch.float32")).replace("torch.", "")
            specs.append(TensorSpec(node.name, np.dtype(dtype).name, shape, guess_layout(shape)))
    specs = [s if s.example_shape is not None or not s.is_static else s.replace(example_shape=list(s.shape))
             for s in apply_shapes(specs, input_shapes, str(path))]
    module = _ep_module(ep.module())
    names = [s.name for s in specs]
    return SourceModel(kind=SourceKind.EXPORTED, name=clean_name(path.stem), ref=str(path),
                       sha256=sha256_file(path), inputs=tuple(specs), outputs=(), obj=module,
                       runner=torch_runner(module, names), notes=(f"torch {torch.__version__}", "ExportedProgram"))


def _ep_module(graph_module):
    """ExportedProgram.module() refuses train()/eval(), which exporters call: hold it in a module
    whose train() only sets the flag (the exported graph is inference-only already)."""
    torch = require_torch()

    class ExportedModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gm = graph_module

        def train(self, mode: bool = True):
            self.training = mode
            return self

        def forward(self, *args):
            return self.gm(*args)

    return ExportedModule()


