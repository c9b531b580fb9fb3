"""More sources: TorchScript `.pt`, ExportedProgram `.pt2`, Keras `.keras`, TF SavedModel folders.

Loading is safe by construction: `torch.jit.load` reads TorchScript archives (code + tensors, no
arbitrary pickles), `torch.export.load` reads the ExportedProgram format (weights through
`torch.load(weights_only=True)`), Keras files load with `safe_mode=True` (no lambda code), and a
SavedModel is a graph. A plain pickled `nn.Module` is refused: we never call `torch.load` without
`weights_only=True`.
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from .errors import SourceError, short as _short
from .sources import SourceModel, _apply_shapes, _clean_name, _outputs_to_dict, sha256_file
from .specs import TensorSpec, guess_layout

log = logging.getLogger(__name__)

TORCH_KINDS = ("torch", "exported")          # an eager nn.Module or GraphModule in SourceModel.obj
TF_KINDS = ("keras", "savedmodel")


def handles(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in (".pt", ".pth", ".pt2", ".keras", ".h5") or (
        path.is_dir() and (path / "saved_model.pb").is_file())


def load(path: Path, input_shapes: dict[str, list[int]]) -> SourceModel:
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return load_savedmodel(path, input_shapes)
        raise SourceError(f"'{path}' is a folder without saved_model.pb: not a TF SavedModel",
                          "pass the SavedModel folder itself (the one holding saved_model.pb)")
    if not path.is_file():
        raise SourceError(f"source '{path}' does not exist", "check the path")
    if suffix in (".pt", ".pth"):
        return load_torchscript(path, input_shapes)
    if suffix == ".pt2":
        return load_exported(path, input_shapes)
    if suffix == ".keras":
        return load_keras(path, input_shapes)
    if suffix == ".h5":
        raise SourceError(f"'{path}' is a legacy HDF5 Keras file", "re-save it as .keras (model.save('m.keras'))")
    raise SourceError(f"source '{path}' is not a format edgepack reads", "pass .onnx, .pt, .pt2, .keras or a SavedModel folder")


# --------------------------------------------------------------------------- torch

def _torch():
    try:
        import torch
    except ImportError as exc:
        raise SourceError("this source needs PyTorch, which is not installed",
                          "install it: pip install torch==2.13.0") from exc
    return torch


def _torch_runner(module, names):
    torch = _torch()

    def runner(feeds):
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]
        with torch.no_grad():
            out = module(*args)
        return _outputs_to_dict(out)
    return runner


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
    torch = _torch()
    if not zipfile.is_zipfile(path):
        raise SourceError(f"'{path}' is not a TorchScript archive (not a zip file; truncated, or a pickle)",
                          "save the model with torch.jit.save(torch.jit.script(model), 'model.pt'), or "
                          "torch.export.save(...) as .pt2; plain pickles are refused for safety")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise SourceError(f"'{path}' will not load as TorchScript ({type(exc).__name__}: {_short(exc)})",
                          "a state_dict or pickled nn.Module is not TorchScript: save it with torch.jit.save, "
                          "or pass the Python factory (file.py:factory)") from exc
    module.eval()
    try:
        names = [a.name for a in module.forward.schema.arguments[1:]]
    except Exception:
        names = list(input_shapes) or ["x"]
    inputs = _specs_from_shapes(names, input_shapes, str(path))
    for s in inputs:
        s.example_shape = list(s.shape)
    return SourceModel(kind="torchscript", name=_clean_name(path.stem), ref=str(path), sha256=sha256_file(path),
                       inputs=inputs, outputs=[], obj=module, runner=_torch_runner(module, names),
                       notes=[f"torch {torch.__version__}", "TorchScript archive"])


def load_exported(path: Path, input_shapes) -> SourceModel:
    torch = _torch()
    if not zipfile.is_zipfile(path):
        raise SourceError(f"'{path}' is not an ExportedProgram archive (not a zip file)",
                          "save it with torch.export.save(torch.export.export(model, args), 'model.pt2')")
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise SourceError(f"'{path}' will not load as an ExportedProgram ({type(exc).__name__}: {_short(exc)})",
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
    _apply_shapes(specs, input_shapes, str(path))
    for s in specs:
        if s.example_shape is None and all(isinstance(d, int) for d in s.shape):
            s.example_shape = list(s.shape)
    module = _ep_module(ep.module())
    names = [s.name for s in specs]
    return SourceModel(kind="exported", name=_clean_name(path.stem), ref=str(path), sha256=sha256_file(path),
                       inputs=specs, outputs=[], obj=module, runner=_torch_runner(module, names),
                       notes=[f"torch {torch.__version__}", "ExportedProgram"])


def _ep_module(graph_module):
    """ExportedProgram.module() refuses train()/eval(), which exporters call: hold it in a module
    whose train() only sets the flag (the exported graph is inference-only already)."""
    torch = _torch()

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


# --------------------------------------------------------------------------- TensorFlow / Keras

def _tf():
    try:
        import os
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
    except ImportError as exc:
        raise SourceError("Keras / SavedModel sources need TensorFlow, which is not installed",
                          "pip install -r requirements-tf.txt") from exc
    return tf


def load_keras(path: Path, input_shapes) -> SourceModel:
    tf = _tf()
    import tempfile

    if not zipfile.is_zipfile(path):
        raise SourceError(f"'{path}' is not a Keras file (a .keras file is a zip archive; this one is not)",
                          "save the model with model.save('model.keras')")
    try:
        model = tf.keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        raise SourceError(f"'{path}' will not load as a Keras model ({type(exc).__name__}: {_short(exc)})",
                          "check it was saved with model.save('model.keras') by Keras 3; custom layers must be "
                          "importable, and lambda layers are refused (safe_mode)") from exc
    import atexit
    import shutil

    export_dir = Path(tempfile.mkdtemp(prefix="edgepack-keras-"))
    atexit.register(shutil.rmtree, str(export_dir), True)
    try:
        model.export(str(export_dir / "saved_model"), format="tf_saved_model", verbose=False)
    except Exception as exc:
        raise SourceError(f"the Keras model in '{path}' cannot be exported as a SavedModel: {_short(exc)}",
                          "check that the model builds and runs on its inputs") from exc
    src = load_savedmodel(export_dir / "saved_model", input_shapes, ref=str(path), kind="keras")
    src.sha256 = sha256_file(path)
    src.name = _clean_name(path.stem)
    src.notes.insert(0, f"keras {getattr(tf.keras, '__version__', '')}".strip())
    return src


def load_savedmodel(path: Path, input_shapes, ref: str | None = None, kind: str = "savedmodel") -> SourceModel:
    tf = _tf()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise SourceError(f"'{path}' will not load as a TF SavedModel ({type(exc).__name__}: {_short(exc)})",
                          "save it again with tf.saved_model.save or model.export") from exc
    sigs = getattr(loaded, "signatures", {}) or {}
    if "serving_default" not in sigs:
        raise SourceError(f"SavedModel '{path}' has no 'serving_default' signature (has: {sorted(sigs) or 'none'})",
                          "save it with a signature: tf.saved_model.save(m, dir, signatures={'serving_default': f}) "
                          "or model.export(dir)")
    fn = sigs["serving_default"]
    _, kw = fn.structured_input_signature
    specs = []
    for name, spec in kw.items():
        shape = [int(d) if d is not None else ("batch" if i == 0 else f"dim{i}") for i, d in enumerate(spec.shape)]
        specs.append(TensorSpec(name, np.dtype(spec.dtype.as_numpy_dtype).name, shape, guess_layout(shape)))
    _apply_shapes(specs, input_shapes, str(path))
    names = [s.name for s in specs]
    out_names = sorted(fn.structured_outputs)

    def runner(feeds):
        result = fn(**{n: tf.constant(feeds[n]) for n in names})
        return {k: result[k].numpy() for k in out_names}

    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return SourceModel(kind=kind, name=_clean_name(Path(ref or path).stem if ref else path.name), ref=ref or str(path),
                       sha256=_tree_hash(path), inputs=specs,
                       outputs=[], obj=path, runner=runner,
                       notes=[f"tensorflow {tf.__version__}", f"SavedModel {size} bytes", "signature serving_default"])


def _tree_hash(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(path).as_posix().encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()
