"""SOURCE -> SourceModel: load the original model and learn its inputs and outputs.

Supported here: `file.onnx`, and `path/to/file.py:factory` / `package.module:factory` returning
a torch.nn.Module or (module, example_inputs). The original model also runs the reference
inputs, so its outputs become the truth that every converted model is compared with.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from agent.manifest import sha256_file  # one hashing routine for host and device

from .errors import SourceError, short
from .specs import TensorSpec, guess_layout

log = logging.getLogger(__name__)


@dataclass
class SourceModel:
    kind: str                         # "torch" | "onnx"
    name: str                         # short name for the bundle
    ref: str                          # what the user passed
    sha256: str                       # hash of the source (file bytes, or code + weights)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    obj: Any                          # nn.Module, or path of the .onnx file
    runner: Callable[[dict], dict] = field(repr=False, default=None)
    example: dict | None = None       # example inputs the factory returned, if any
    notes: list[str] = field(default_factory=list)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner(feeds)


def load(ref: str, input_shapes: dict[str, list[int]]) -> SourceModel:
    path = Path(ref)
    if path.suffix.lower() == ".onnx":
        return load_onnx(path, input_shapes)
    from . import sources_ext  # .pt, .pt2, .keras, SavedModel folders

    if sources_ext.handles(path):
        return sources_ext.load(path, input_shapes)
    if ":" in ref and not path.exists():
        return load_factory(ref, input_shapes)
    if not path.exists():
        raise SourceError(f"source '{ref}' does not exist",
                          "pass a model.onnx file or path/to/file.py:factory / package.module:factory")
    raise SourceError(f"source '{ref}' is not a format edgepack reads here (suffix '{path.suffix}')",
                      "pass a .onnx file, or a python factory as file.py:function returning an nn.Module")


# --------------------------------------------------------------------------- ONNX files

def load_onnx(path: Path, input_shapes: dict[str, list[int]]) -> SourceModel:
    import onnx
    from onnx import helper

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
    init_names = {i.name for i in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        inputs.append(_spec_from_value_info(vi, helper))
    outputs = [_spec_from_value_info(vi, helper) for vi in model.graph.output]
    _apply_shapes(inputs, input_shapes, str(path))

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

    return SourceModel(kind="onnx", name=_clean_name(path.stem), ref=str(path),
                       sha256=sha256_file(path), inputs=inputs, outputs=outputs, obj=path,
                       runner=runner, notes=[f"opset {_opset(model)}"])


def _opset(model) -> int | None:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return None


def _spec_from_value_info(vi, helper) -> TensorSpec:
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


def _apply_shapes(inputs: list[TensorSpec], shapes: dict[str, list[int]], where: str) -> None:
    known = [s.name for s in inputs]
    for name in shapes:
        if name not in known:
            raise SourceError(f"--input-shape names '{name}', but {where} has inputs {known}",
                              "use the model's input names")
    for spec in inputs:
        if spec.name in shapes:
            given = shapes[spec.name]
            if spec.shape and len(given) != len(spec.shape):
                raise SourceError(f"--input-shape {spec.name} has {len(given)} dims, the model's input has "
                                  f"{len(spec.shape)} ({spec.shape})", "give one size per dimension")
            for i, (g, d) in enumerate(zip(given, spec.shape)):
                if isinstance(d, int) and d != g:
                    raise SourceError(f"--input-shape {spec.name} sets axis {i} to {g}, the model fixes it "
                                      f"at {d} (shape {spec.shape})", "match the model's fixed sizes")
            # Symbolic dims stay symbolic in the spec; the given sizes shape the reference inputs.
            if not spec.shape:
                spec.shape = list(given)
            spec.layout = spec.layout or guess_layout(given)
            spec.example_shape = list(given)


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
    try:
        import torch
    except ImportError as exc:
        raise SourceError("a Python factory needs PyTorch, which is not installed",
                          "install it: pip install torch==2.13.0") from exc
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

    def runner(feeds):
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]
        with torch.inference_mode():
            out = module(*args)
        return _outputs_to_dict(out)

    h = hashlib.sha256()
    if code_file and code_file.is_file():
        h.update(code_file.read_bytes())
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    name = _clean_name(attr if attr not in ("make", "factory", "build", "model") else code_file.stem)
    return SourceModel(kind="torch", name=name, ref=ref, sha256=h.hexdigest(), inputs=inputs,
                       outputs=[], obj=module, runner=runner, example=example,
                       notes=[f"torch {torch.__version__}"])


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


def _outputs_to_dict(out) -> dict[str, np.ndarray]:
    import torch

    if isinstance(out, torch.Tensor):
        return {"output": out.detach().cpu().numpy()}
    if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
        if len(out) == 1:
            return {"output": out[0].detach().cpu().numpy()}
        return {f"output_{i}": o.detach().cpu().numpy() for i, o in enumerate(out)}
    if isinstance(out, dict) and all(isinstance(o, torch.Tensor) for o in out.values()):
        return {str(k): v.detach().cpu().numpy() for k, v in out.items()}
    raise SourceError(f"the model returned {type(out).__name__}; edgepack handles a tensor, a tuple "
                      "of tensors or a dict of tensors", "return tensors from forward()")


def _clean_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_." else "_" for c in text).strip("._")
    return cleaned or "model"


