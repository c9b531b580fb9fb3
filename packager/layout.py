"""Input layout: which inputs a route turns channels-last. Decided once per build, honoured by the
exporters that can (litert-torch's wrapper, onnx2tf), recorded as conversion.layout_changes.

Not a graph pass on purpose: writing Transposes into a graph by hand is the graph surgery the
converters already do well (onnx2tf transposes natively; litert-torch traces a permute).
"""
from __future__ import annotations

NCHW_TO_NHWC = [0, 2, 3, 1]


def plan(inputs, profile, backend) -> dict:
    """input name -> {"from", "to", "perm"} for 4-D NCHW inputs when the profile asks for NHWC."""
    if not backend.changes_layout or profile.layout != "NHWC":
        return {}
    return {s.name: {"from": "NCHW", "to": "NHWC", "perm": NCHW_TO_NHWC}
            for s in inputs if s.layout == "NCHW" and len(s.shape) == 4}


def to_model_layout(feeds: dict, changes: dict) -> dict:
    """Transpose the inputs whose layout the conversion changed."""
    if not changes:
        return feeds
    import numpy as np

    return {k: (np.ascontiguousarray(v.transpose(changes[k]["perm"])) if k in changes else v)
            for k, v in feeds.items()}
