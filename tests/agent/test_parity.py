"""The comparison core (agent/parity.py), shared by the host and the device."""
from __future__ import annotations

import numpy as np


def test_parity_core_catches_nan_shape_and_dtype():
    from agent import parity

    th = {"atol": 1e-3, "rtol": 0, "cosine_min": 0.99, "top1_min": 1.0}
    ref = {"y": [np.ones((1, 4), np.float32)]}
    assert parity.compare(ref, {"y": [np.ones((1, 4), np.float32)]}, th)["passed"]
    nan = np.ones((1, 4), np.float32)
    nan[0, 1] = np.nan
    r = parity.compare(ref, {"y": [nan]}, th)
    assert not r["passed"] and "1 NaN/Inf values" in r["outputs"][0]["failures"][0]
    r = parity.compare(ref, {"y": [np.ones((1, 5), np.float32)]}, th)
    assert "shape [1, 5], expected [1, 4]" in r["outputs"][0]["failures"][0]
    r = parity.compare(ref, {"y": [np.ones((1, 4), np.int64)]}, th)
    assert "dtype int64" in r["outputs"][0]["failures"][0]
    r = parity.compare(ref, {}, th)
    assert "missing" in r["outputs"][0]["failures"][0]
    # top-1 flips are caught for classifier-like outputs
    a = np.array([[0.0, 1.0, 0.9]], np.float32)
    b = np.array([[0.0, 0.9, 1.0]], np.float32)
    r = parity.compare({"y": [a]}, {"y": [b]}, {"top1_min": 1.0})
    assert r["outputs"][0]["top1_agreement"] == 0.0 and not r["passed"]
