"""`path/to/file.py:factory` / `package.module:factory` -> SourceModel (a torch.nn.Module).

The factory returns a Module, or (module, example_inputs) where example_inputs is a tensor, a tuple
of tensors (named after forward()'s parameters) or a dict name -> tensor.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path

import numpy as np

from ..errors import SourceError, short
from ..formats import SourceKind
from ..specs import TensorSpec, guess_layout
from .model import SourceModel
from .common import clean_name, require_torch, torch_runner

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- Python factories

def _import_factory(ref: str):
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise SourceError(f"bad factory reference '{ref}'", "write path/to/file.py:factory or package.module:factory")
    if target.endswith(".py") or "/" in target:
        file = Path(target)
        if not file.is_file():
            raise SourceError(f"factory file '{target}' does not exist", "check the path before the ':'")
        modname = f"_edgepack_src_{hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(modname, file)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(file.resolve().parent))
        try:
            sys.modules[modname] = module
            spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(modname, None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise SourceError(f"importing '{target}' failed: {type(exc).__name__}: {short(exc)}",
                              "fix the error in that file (run with --debug for the traceback)") from exc
        finally:
            sys.path.remove(str(file.resolve().parent))
        code_file = file
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise SourceError(f"cannot import module '{target}': {short(exc)}",
                              "check the module name, or give a file path: path/to/file.py:factory") from exc
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise SourceError(f"importing '{target}' failed: {type(exc).__name__}: {short(exc)}",
                              "fix the error in that module (run with --debug for the traceback)") from exc
        finally:
            sys.path.remove(str(Path.cwd()))
        code_file = Path(getattr(module, "__file__", "") or "")
    factory = getattr(module, attr, None)
    if factory is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise SourceError(f"'{target}' has no '{attr}'", "callables there: " + (", ".join(sorted(names)[:12]) or "none"))
    if not callable(factory):
        raise SourceError(f"'{ref}' is a {type(factory).__name__}, not a callable", "point at a function returning the model")
    return factory, code_file, attr


def load_factory(ref: str, input_shapes: dict[str, list[int]]) -> SourceModel:
    factory, code_file, attr = _import_factory(ref)
    torch = require_torch()
    try:
        produced = factory()
    except Exception as exc:
        raise SourceError(f"factory '{ref}' raised {type(exc).__name__}: {short(exc)}",
                          "fix the factory (run with --debug for the traceback)") from exc
    example = None
    if isinstance(produced, tuple) and len(produced) == 2 and isinstance(produced[0], torch.nn.Module):
        module, example = produced
    else:
        module = produced
    if not isinstance(module, torch.nn.Module):
        raise SourceError(f"factory '{ref}' returned {type(module).__name__}, not a torch.nn.Module",
                          "return an nn.Module, or (module, example_inputs)")
    module.eval()
    params = _forward_params(module)
    if example is not None:
        example = _example_to_dict(example, params, ref)
    inputs = _torch_input_specs(module, params, example, input_shapes, ref)
    names = [s.name for s in inputs]
    h = hashlib.sha256()
    if code_file and code_file.is_file():
        h.update(code_file.read_bytes())
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    name = clean_name(attr if attr not in ("make", "factory", "build", "model") else code_file.stem)
    return SourceModel(kind=SourceKind.TORCH, name=name, ref=ref, sha256=h.hexdigest(), inputs=tuple(inputs),
                       outputs=(), obj=module, runner=torch_runner(module, names), example=example,
                       notes=(f"torch {torch.__version__}",))


def _forward_params(module) -> list[str]:
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _example_to_dict(example, params: list[str], ref: str) -> dict[str, np.ndarray]:
    import torch

    if isinstance(example, torch.Tensor):
        example = (example,)
    if isinstance(example, dict):
        items = list(example.items())
    elif isinstance(example, (tuple, list)):
        names = params[:len(example)] if len(params) >= len(example) else [f"input_{i}" for i in range(len(example))]
        items = list(zip(names, example))
    else:
        raise SourceError(f"factory '{ref}' returned example inputs of type {type(example).__name__}",
                          "return a tensor, a tuple of tensors or a dict name -> tensor")
    out = {}
    for name, value in items:
        if not isinstance(value, torch.Tensor):
            raise SourceError(f"example input '{name}' of '{ref}' is {type(value).__name__}, not a tensor",
                              "return torch tensors as example inputs")
        out[name] = value.detach().cpu().numpy()
    return out


def _torch_input_specs(module, params, example, input_shapes, ref) -> list[TensorSpec]:
    if example is not None:
        specs = []
        for name, arr in example.items():
            shape = input_shapes.get(name, list(arr.shape))
            specs.append(TensorSpec(name, arr.dtype.name, list(shape), guess_layout(list(shape))))
        extra = set(input_shapes) - set(example)
        if extra:
            raise SourceError(f"--input-shape names {sorted(extra)}, but the factory's example inputs are "
                              f"{list(example)}", "use the example's input names")
        return specs
    if not input_shapes:
        wanted = " ".join(f"--input-shape {p}=..." for p in params) or "--input-shape x=1x3x224x224"
        raise SourceError(f"'{ref}' gives no input shapes (forward takes {params or 'unknown arguments'})",
                          f"pass {wanted}, or return (model, example_inputs) from the factory")
    names = list(input_shapes)
    if params and set(names) <= set(params):
        names = [p for p in params if p in input_shapes]  # order of forward()
    elif params and len(names) > len(params):
        raise SourceError(f"{len(names)} --input-shape given, forward() takes {len(params)} ({params})",
                          "give one --input-shape per forward() argument")
    return [TensorSpec(n, "float32", list(input_shapes[n]), guess_layout(input_shapes[n])) for n in names]
