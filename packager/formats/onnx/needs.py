"""Which onnxruntime loads a model: from its opsets and IR version (manifest `needs`).

ONNX_RUNTIME_TABLE is onnxruntime's published compatibility table, "ONNX opset support" in
https://onnxruntime.ai/docs/reference/compatibility.html (docs/reference/compatibility.md of
microsoft/onnxruntime): per release, the newest ai.onnx opset, ai.onnx.ml opset and IR version
it implements. A release runs every opset from 7 up to its own. Measured here with
onnxruntime 1.16.3: opset 19 / IR 9 load; opset 20 ("ValidateOpsetForDomain") and IR 10
("Unsupported model IR version") are refused, as the table says.
"""
from __future__ import annotations

from pathlib import Path

REFERENCE = "https://onnxruntime.ai/docs/reference/compatibility.html"

# (onnxruntime release, ai.onnx opset, ai.onnx.ml opset, IR version), oldest first.
ONNX_RUNTIME_TABLE = (
    ("1.0", 11, 2, 6), ("1.1", 11, 2, 6), ("1.2", 11, 2, 6), ("1.3", 12, 2, 7), ("1.4", 12, 2, 7),
    ("1.5", 12, 2, 7), ("1.6", 13, 2, 7), ("1.7", 13, 2, 7), ("1.8", 14, 2, 7), ("1.9", 15, 2, 8),
    ("1.10", 15, 2, 8), ("1.11", 16, 2, 8), ("1.12", 17, 3, 8), ("1.13", 17, 3, 8),
    ("1.14", 18, 3, 8), ("1.15", 19, 3, 8), ("1.16", 19, 3, 9), ("1.17", 20, 4, 9),
    ("1.18", 21, 4, 10), ("1.19", 21, 4, 10), ("1.20", 21, 4, 10),
)
DOMAINS = {"": 1, "ai.onnx": 1, "ai.onnx.ml": 2}  # domain -> column of the table


def model_versions(path: Path) -> tuple[dict, int]:
    """({domain: opset}, IR version) of an ONNX file (external data is not read)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    return opsets, int(model.ir_version)


def oldest_onnxruntime(opsets: dict, ir_version: int) -> tuple[str, str]:
    """(the oldest onnxruntime release that loads it, why) from the published table.
    Beyond the table's newest row: the release after it (the table is not yet updated)."""
    onnx_opset = max(opsets.get("ai.onnx", 0), opsets.get("", 0))
    ml_opset = opsets.get("ai.onnx.ml", 0)
    parts = [f"opset {onnx_opset}"] if onnx_opset else []
    if ml_opset:
        parts.append(f"ai.onnx.ml opset {ml_opset}")
    parts.append(f"IR {ir_version}")
    because = " (".join([parts[0], ", ".join(parts[1:]) + ")"]) if len(parts) > 1 else parts[0]
    for release, op, ml, ir in ONNX_RUNTIME_TABLE:
        if onnx_opset <= op and ml_opset <= ml and ir_version <= ir:
            return release, because
    last = ONNX_RUNTIME_TABLE[-1][0]
    major, minor = last.split(".")
    return f"{major}.{int(minor) + 1}", because + f", newer than the table's {last} row"


def requirements(path: Path) -> dict:
    opsets, ir = model_versions(path)
    release, because = oldest_onnxruntime(opsets, ir)
    return {"min_version": release, "because": because, "opsets": opsets, "ir_version": ir,
            "reference": REFERENCE,
            "older": "an older runtime needs a lower opset: set onnx.opset in the profile"}
