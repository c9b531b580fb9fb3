"""Keras `.keras` files and TF SavedModel folders -> SourceModel (the serving_default signature).

Keras files load with `safe_mode=True` (no lambda code); a SavedModel is a graph.

A SavedModel that Keras 2 wrote with its optimizer (model.save(dir) after training, as most
SavedModels from the TF 2.x years are: Spotify's Basic Pitch ships one) records the optimizer's
slot variables in its object graph. TF >= 2.6 without Keras 2 revives that optimizer as a plain
object and fails ("'_UserObject' object has no attribute 'add_slot'", tensorflow#52091, open since
2021). The slots are training state: a copy of the SavedModel without them in its object graph
loads, serves the same signature, and is what the converters read (recorded in the source notes).
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import numpy as np

from agent.manifest import sha256_file

from ..errors import SourceError, short
from ..formats import SourceKind
from ..specs import TensorSpec, guess_layout
from .model import SourceModel
from .common import apply_shapes, clean_name


LEGACY_H5 = (".h5", ".hdf5")   # what Keras 2's model.save('m.h5') wrote: Keras 3 still reads it


def handles(path: Path) -> bool:
    return path.suffix.lower() in (".keras",) + LEGACY_H5 or (path.is_dir() and (path / "saved_model.pb").is_file())


def load(path: Path, input_shapes) -> SourceModel:
    if path.is_dir():
        return load_savedmodel(path, input_shapes)
    if not path.is_file():
        raise SourceError(f"source '{path}' does not exist", "check the path")
    return load_keras(path, input_shapes)


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

    legacy = path.suffix.lower() in LEGACY_H5
    if legacy and path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n":
        raise SourceError(f"'{path}' is not an HDF5 Keras file (no HDF5 signature)",
                          "the file may be truncated or corrupt: save the model again")
    if not legacy and not zipfile.is_zipfile(path):
        raise SourceError(f"'{path}' is not a Keras file (a .keras file is a zip archive; this one is not)",
                          "save the model with model.save('model.keras')")
    try:
        # safe_mode: a Lambda layer's marshalled code is refused, in .keras and legacy HDF5 alike
        model = tf.keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        raise SourceError(f"'{path}' will not load as a Keras model ({type(exc).__name__}: {short(exc)})",
                          "check it was saved by Keras (model.save('model.keras'), or Keras 2's HDF5); custom "
                          "layers must be importable, and lambda layers are refused (safe_mode)") from exc
    import atexit
    import shutil

    export_dir = Path(tempfile.mkdtemp(prefix="edgepack-keras-"))
    atexit.register(shutil.rmtree, str(export_dir), True)
    try:
        model.export(str(export_dir / "saved_model"), format="tf_saved_model", verbose=False)
    except Exception as exc:
        raise SourceError(f"the Keras model in '{path}' cannot be exported as a SavedModel: {short(exc)}",
                          "check that the model builds and runs on its inputs") from exc
    src = load_savedmodel(export_dir / "saved_model", input_shapes, ref=str(path), kind=SourceKind.KERAS)
    notes = (f"keras {getattr(tf.keras, '__version__', '')}".strip(),)
    if legacy:
        notes += ("legacy HDF5 Keras file (Keras 2), read by Keras 3's legacy_h5_format",)
    return dataclasses.replace(src, sha256=sha256_file(path), name=clean_name(path.stem), notes=notes + src.notes)


def _is_slot_bug(exc: Exception) -> bool:
    return isinstance(exc, AttributeError) and ("add_slot" in str(exc) or "slot_variable" in str(exc))


def without_optimizer_slots(path: Path) -> tuple[Path, int]:
    """A temp copy of the SavedModel whose object graph lists no optimizer slot variables (the
    variables and assets folders are linked, not copied), and how many slots it dropped."""
    import atexit
    import shutil
    import tempfile

    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    dropped = 0
    for meta in sm.meta_graphs:
        for node in meta.object_graph_def.nodes:
            dropped += len(node.slot_variables)
            del node.slot_variables[:]
    out = Path(tempfile.mkdtemp(prefix="edgepack-savedmodel-")) / path.name
    atexit.register(shutil.rmtree, str(out.parent), True)
    out.mkdir()
    (out / "saved_model.pb").write_bytes(sm.SerializeToString())
    for sub in ("variables", "assets", "fingerprint.pb"):
        if (path / sub).exists():
            os.symlink(os.path.abspath(path / sub), out / sub)
    return out, dropped


def load_savedmodel(path: Path, input_shapes, ref: str | None = None,
                    kind: SourceKind = SourceKind.SAVEDMODEL) -> SourceModel:
    tf = _tf()
    original, repaired = path, ()
    try:
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            if not _is_slot_bug(exc):
                raise
            path, dropped = without_optimizer_slots(path)
            loaded = tf.saved_model.load(str(path))
            repaired = (f"{dropped} optimizer slot variables left out (training state of a Keras 2 SavedModel, "
                        "which TF >= 2.6 cannot revive without Keras 2; tensorflow#52091)",)
    except Exception as exc:
        raise SourceError(f"'{original}' will not load as a TF SavedModel ({type(exc).__name__}: {short(exc)})",
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
    specs = apply_shapes(specs, input_shapes, str(path))
    names = [s.name for s in specs]
    out_names = sorted(fn.structured_outputs)

    def runner(feeds):
        result = fn(**{n: tf.constant(feeds[n]) for n in names})
        return {k: result[k].numpy() for k in out_names}

    size = sum(f.stat().st_size for f in original.rglob("*") if f.is_file())
    return SourceModel(kind=kind, name=clean_name(Path(ref).stem if ref else original.name), ref=ref or str(original),
                       sha256=_tree_hash(original), inputs=tuple(specs), outputs=(), obj=Path(os.path.abspath(path)),
                       runner=runner, notes=(f"tensorflow {tf.__version__}", f"SavedModel {size} bytes",
                                             "signature serving_default") + repaired)


def _tree_hash(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(path).as_posix().encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()
