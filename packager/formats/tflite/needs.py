"""The oldest TensorFlow Lite runtime a .tflite file needs (manifest `needs`).

The TF-Lite converter writes it into the model: a metadata entry `min_runtime_version` whose
buffer holds a version string ("1.14.0", "2.3.0" ...), computed from the version of every op the
model uses (tensorflow/lite/tools/versioning/runtime_version.cc). It is read here with the
flatbuffer schema LiteRT itself ships (ai_edge_litert, else TensorFlow's copy).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

SCHEMAS = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated",
           "litert_converter.schema_py_generated")


def _schema():
    for name in SCHEMAS:
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - absent or broken: try the next copy
            continue
    return None


def min_runtime_version(path: Path) -> Optional[str]:
    """The model's `min_runtime_version`, or None when it has none (or no schema is installed)."""
    schema = _schema()
    if schema is None:
        return None
    data = bytearray(Path(path).read_bytes())
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if (meta.Name() or b"").decode("utf-8", "replace") != "min_runtime_version":
            continue
        buf = model.Buffers(meta.Buffer())
        raw = bytes(buf.DataAsNumpy().tobytes()) if buf is not None and buf.DataLength() else b""
        text = raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
        return text or None
    return None


def op_versions(path: Path) -> dict[str, list[int]]:
    """Each builtin op of the model's opcode table with its versions ({"CONV_2D": [6], ...}); one
    opcode entry stands for every op of that kind and version in the model. Empty without a schema."""
    schema = _schema()
    if schema is None:
        return {}
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(bytearray(Path(path).read_bytes()), 0)
    found: dict[str, list[int]] = {}
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        op = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        found.setdefault(op, []).append(code.Version())
    return {op: sorted(v) for op, v in found.items()}
