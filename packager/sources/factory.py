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
from .common import clean_name, require_torch, shapes_note, specs_from_data, torch_runner

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


def load_factory(ref: str, input_shapes: dict[str, list[int]], data: dict | None = None) -> SourceModel:
    """data: {name: (shape, dtype)} of the --inputs file (packager.data.describe), if one was given."""
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
        example = _example_to_dict(example, [p.name for p in params], ref)
    inputs = _torch_input_specs(params, example, input_shapes, data, ref)
    names = [s.name for s in inputs]
    _refuse_non_tensor(params, names, ref)
    h = hashlib.sha256()
    if code_file and code_file.is_file():
        h.update(code_file.read_bytes())
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    name = clean_name(attr if attr not in ("make", "factory", "build", "model") else code_file.stem)
    note = shapes_note(names, input_shapes, data) if example is None else ""
    # A factory may hand back a ScriptModule (a scripted wrapper, a loaded .jit): it takes the
    # TorchScript routes (torch.export, and so litert-torch, cannot read TorchScript).
    kind = SourceKind.TORCHSCRIPT if isinstance(module, torch.jit.ScriptModule) else SourceKind.TORCH
    return SourceModel(kind=kind, name=name, ref=ref, sha256=h.hexdigest(), inputs=tuple(inputs),
                       outputs=(), obj=module, runner=torch_runner(module, names), example=example,
                       notes=(f"torch {torch.__version__}",) + ((note,) if note else ()))


# Annotations that are not tensors: exporters and tracers freeze such a value into the graph.
NON_TENSOR = {int: "int", float: "float", bool: "bool", str: "str", complex: "complex"}


def _forward_params(module) -> list[inspect.Parameter]:
    """forward()'s positional parameters (annotations resolved where they are strings); for a
    ScriptModule, from its TorchScript schema (types as strings: 'Tensor', 'int', ...)."""
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:
        return [inspect.Parameter(a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str(a.type),
                                  default=None if a.has_default_value() else inspect.Parameter.empty)
                for a in schema.arguments[1:]]
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return []
    try:
        import typing
        hints = typing.get_type_hints(module.forward)
    except Exception:
        hints = {}
    return [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _non_tensor_type(param: inspect.Parameter) -> str | None:
    """'int' for `n: int` (also Optional[int], 'int' as a string); None for tensors / no annotation."""
    import typing

    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return None
    if isinstance(ann, str):
        base = ann.replace("typing.", "").replace("Optional[", "").rstrip("]").strip()
        return base if base in NON_TENSOR.values() else None
    args = [a for a in typing.get_args(ann) if a is not type(None)] if typing.get_origin(ann) is typing.Union else [ann]
    for a in args:
        if a in NON_TENSOR:
            return NON_TENSOR[a]
    return None


def _refuse_non_tensor(params: list[inspect.Parameter], names: list[str], ref: str) -> None:
    """A forward() parameter the model is fed, or one it cannot do without, that is not a tensor."""
    for p in params:
        kind = _non_tensor_type(p)
        needed = p.name in names or (p.default is inspect.Parameter.empty and p.name not in names)
        if kind and needed:
            raise SourceError(
                f"'{ref}': forward() parameter '{p.name}' is {kind}, not a tensor: exported and traced "
                f"models take tensors only, and a Python {kind} would be frozen into the graph at one value",
                f"wrap the model in a factory whose forward takes only tensors and passes {p.name} itself "
                "(docs/DATA.md, 'Non-tensor arguments'; examples/wrapper_factory.py)")


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


def _torch_input_specs(params, example, input_shapes, data, ref) -> list[TensorSpec]:
    pnames = [p.name for p in params]
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
    given = list(input_shapes) + [n for n in (data or {}) if n not in input_shapes and (not pnames or n in pnames)]
    if not given:
        wanted = " ".join(f"--input-shape {p}=..." for p in pnames) or "--input-shape x=1x3x224x224"
        raise SourceError(f"'{ref}' gives no input shapes (forward takes {pnames or 'unknown arguments'})",
                          f"pass --inputs FILE.npz with one array per forward() argument, or {wanted}, "
                          "or return (model, example_inputs) from the factory")
    if pnames:
        unknown = [n for n in input_shapes if n not in pnames]
        if unknown and len(input_shapes) > len(pnames):
            raise SourceError(f"{len(input_shapes)} --input-shape given, forward() takes {len(pnames)} ({pnames})",
                              "give one --input-shape per forward() argument")
        if not unknown:
            names = [p for p in pnames if p in given]   # the order of forward()
            skipped = [p for p in pnames[:pnames.index(names[-1])] if p not in names]
            if skipped:
                raise SourceError(f"'{ref}': inputs {names} leave out forward() parameter(s) {skipped} "
                                  f"before '{names[-1]}' (forward takes {pnames}); the exporters pass "
                                  "inputs by position", f"give {', '.join(skipped)} too (in --inputs or "
                                  "--input-shape), or wrap the model so forward takes only what you pass")
            given = names
    return specs_from_data(given, input_shapes, data, f"'{ref}'")
