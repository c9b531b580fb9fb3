"""TorchScript archives and ExportedProgram `.pt2` files -> SourceModel.

Loading is safe by construction: `torch.jit.load` reads TorchScript archives (code + tensors, no
arbitrary pickles) and `torch.export.load` reads the ExportedProgram format (weights through
`torch.load(weights_only=True)`). A plain pickled `nn.Module` is refused: we never call
`torch.load` without `weights_only=True`.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from agent.manifest import sha256_file

from ..errors import SourceError, short
from ..formats import SourceKind
from ..specs import TensorSpec, guess_layout
from .model import SourceModel
from .common import apply_shapes, clean_name, require_torch, shapes_note, specs_from_data, torch_runner

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".jit", ".torchscript", ".ts")
SCALAR_TYPES = {"int": "int64", "float": "float64", "bool": "bool"}   # TorchScript type -> 0-d dtype


def archive_kind(path: Path) -> str | None:
    """What a torch zip archive holds, read from its layout (never by unpickling):
    'torchscript' (<root>/code/ and <root>/data.pkl or constants.pkl, torch.jit.save),
    'exported' (<root>/models/*.json, torch.export.save), 'pickle' (<root>/data.pkl only,
    torch.save of a state_dict or module), or None (not a zip)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if any(t.startswith("code/") for t in tails) and ({"data.pkl", "constants.pkl"} & tails):
        return "torchscript"
    if any(t.startswith("models/") and t.endswith(".json") for t in tails):
        return "exported"
    if "data.pkl" in tails:
        return "pickle"
    return None


def handles(path: Path) -> bool:
    """By suffix, or by content: a TorchScript or ExportedProgram archive under any name."""
    if path.suffix.lower() in TORCHSCRIPT_SUFFIXES + (".pt2",):
        return True
    return path.is_file() and archive_kind(path) in ("torchscript", "exported")


def load(path: Path, input_shapes, data: dict | None = None) -> SourceModel:
    if not path.is_file():
        raise SourceError(f"source '{path}' does not exist", "check the path")
    kind = archive_kind(path)
    if kind == "exported" or (kind is None and path.suffix.lower() == ".pt2"):
        return load_exported(path, input_shapes)
    return load_torchscript(path, input_shapes, data, kind)


def _schema_params(module) -> list | None:
    """forward()'s arguments after self, from the TorchScript schema (None when it has none)."""
    try:
        return list(module.forward.schema.arguments[1:])
    except Exception:
        return None


def load_torchscript(path: Path, input_shapes, data: dict | None = None, kind: str | None = None) -> SourceModel:
    torch = require_torch()
    kind = kind or archive_kind(path)
    if kind != "torchscript":
        what = {"pickle": "a torch.save pickle (a state_dict or a pickled nn.Module), not TorchScript",
                "exported": "an ExportedProgram"}.get(kind, "not a zip file (truncated, or a plain pickle)")
        raise SourceError(f"'{path}' is not a TorchScript archive: {what}",
                          "save the model with torch.jit.save(torch.jit.script(model), 'model.pt'), or "
                          "torch.export.save(...) as .pt2, or pass the Python factory (file.py:factory); "
                          "plain pickles are refused for safety")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise SourceError(f"'{path}' will not load as TorchScript ({type(exc).__name__}: {short(exc)})",
                          "a state_dict or pickled nn.Module is not TorchScript: save it with torch.jit.save, "
                          "or pass the Python factory (file.py:factory)") from exc
    module.eval()
    params = _schema_params(module)
    given = set(input_shapes) | set(data or {})
    scalars: dict[str, str] = {}
    if params is None:
        names = list(input_shapes) or list(data or {}) or ["x"]
    else:
        names = []
        for a in params:
            if a.name not in given and a.has_default_value():
                continue  # an optional argument nobody passes
            t = str(a.type)
            if t in SCALAR_TYPES:
                scalars[a.name] = t
            elif t != "Tensor":
                raise SourceError(f"'{path}': forward() parameter '{a.name}' is {t}, not a tensor or a number",
                                  "wrap the model in a factory whose forward takes tensors "
                                  "(docs/DATA.md, 'Non-tensor arguments'; examples/wrapper_factory.py)")
            names.append(a.name)
    unknown = [n for n in input_shapes if n not in names]
    if unknown:
        raise SourceError(f"--input-shape names {unknown}, but '{path}' takes {names}", "use the model's input names")
    inputs = []
    for n in names:
        if n in scalars:
            if n in input_shapes and input_shapes[n]:
                raise SourceError(f"--input-shape {n}={'x'.join(map(str, input_shapes[n]))}: forward() takes "
                                  f"'{n}' as a Python {scalars[n]} (a 0-d value)", f"drop --input-shape {n}")
            inputs.append(TensorSpec(n, SCALAR_TYPES[scalars[n]], [], None, example_shape=[]))
        else:
            inputs.extend(specs_from_data([n], input_shapes, data, f"'{path}'"))
    notes = [f"torch {torch.__version__}", "TorchScript archive"]
    if scalars:
        notes.append("Python-number arguments (fed as 0-d arrays): "
                     + ", ".join(f"{n}: {t}" for n, t in scalars.items()))
    state = mutated_attributes(module)
    if state:
        notes.append("keeps state between calls in attributes: " + ", ".join(state))
    note = shapes_note([n for n in names if n not in scalars], input_shapes, data)
    if note:
        notes.append(note)
    return SourceModel(kind=SourceKind.TORCHSCRIPT, name=clean_name(path.stem), ref=str(path),
                       sha256=sha256_file(path), inputs=tuple(inputs), outputs=(), obj=module,
                       path=Path(os.path.abspath(path)),
                       runner=torch_runner(module, names, scalars), notes=tuple(notes), scalars=scalars,
                       state=tuple(state))


def mutated_attributes(module) -> list[str]:
    """Attributes forward() assigns (prim::SetAttr in its graph): state kept between calls."""
    try:
        nodes = module.forward.graph.findAllNodes("prim::SetAttr", True)
        return sorted({n.s("name") for n in nodes})
    except Exception:
        return []


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


