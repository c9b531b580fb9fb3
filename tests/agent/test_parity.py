"""The comparison core (agent/parity.py), shared by the host and the device."""
from __future__ import annotations

import numpy as np
import pytest


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


INT8 = {"cosine_min": 0.98, "sample_cosine_min": 0.97, "slice_cosine_min": 0.95, "slice_atol": 0.05,
        "top1_min": 0.9, "classifier_outputs": []}


def _detections(rng, scores_scale=1.0):
    """(1, 4 + 2, 100): box rows in pixels, two score rows in [0, 1] (class 1 ~absent)."""
    y = np.empty((1, 6, 100), np.float32)
    y[0, :4] = rng.uniform(0, 320, (4, 100))
    y[0, 4] = rng.uniform(0, 0.8, 100) * scores_scale
    y[0, 5] = rng.uniform(0, 0.01, 100)
    return y


def test_collapsed_score_rows_fail_while_the_whole_tensor_cosine_holds():
    from agent import parity

    rng = np.random.default_rng(0)
    refs = [_detections(rng) for _ in range(4)]
    gots = [r.copy() for r in refs]
    for g in gots:
        g[0, 4:] = 0.0                       # the scores are gone, the boxes are exact
    out = parity.compare({"output0": refs}, {"output0": gots}, INT8)["outputs"][0]
    assert out["cosine"] > 0.9999            # what a whole-tensor check alone would accept
    assert not out["passed"]
    assert out["worst_slice"]["index"] == 4 and out["worst_slice"]["cosine"] == 0.0
    assert out["slices"] == 6 and out["slices_failed"] == 1   # row 5 is ~0 in the reference: within slice_atol
    assert any("slices along axis 1" in f for f in out["failures"])


def test_a_row_near_zero_in_the_reference_is_judged_by_slice_atol_not_cosine():
    from agent import parity

    rng = np.random.default_rng(1)
    refs = [_detections(rng) for _ in range(4)]
    gots = [r.copy() for r in refs]
    for g in gots:
        g[0, 5] = rng.uniform(0, 0.01, 100)  # noise on a class that is absent: cosine ~0.75, |diff| < 0.01
    out = parity.compare({"output0": refs}, {"output0": gots}, INT8)["outputs"][0]
    assert out["passed"], out["failures"]
    row5 = parity.worst_slice(refs, gots, 1, {"slice_cosine_min": 0.95, "slice_atol": None})[0]
    assert row5["index"] == 5 and row5["cosine"] < 0.95   # without slice_atol it would fail


def test_top1_only_for_classifier_outputs():
    from agent import parity

    rng = np.random.default_rng(2)
    emb = [rng.normal(0, 1, (1, 384)).astype(np.float32) for _ in range(4)]
    noisy = [e + rng.normal(0, 0.05, e.shape).astype(np.float32) for e in emb]
    th = dict(INT8, top1_min=1.0)
    # a (batch, 384) sentence embedding is not a classifier: no top-1, whatever its arg-max does
    out = parity.compare({"sentence_embedding": emb}, {"sentence_embedding": noisy}, th)["outputs"][0]
    assert "top1_agreement" not in out and out["passed"]
    # a declared classifier output gets it
    logits = [np.array([[0.0, 1.0, 0.9]], np.float32)]
    flipped = [np.array([[0.0, 0.9, 1.0]], np.float32)]
    th = dict(th, classifier_outputs=["probs"], cosine_min=None, sample_cosine_min=None)
    out = parity.compare({"probs": logits}, {"probs": flipped}, th)["outputs"][0]
    assert out["top1_agreement"] == 0.0 and not out["passed"]
    # per position of a (batch, steps, classes) CTC output
    seq = [rng.normal(0, 1, (1, 10, 5)).astype(np.float32)]
    out = parity.compare({"probs": seq}, {"probs": [seq[0].copy()]}, th)["outputs"][0]
    assert out["top1_agreement"] == 1.0


def test_bundles_without_classifier_outputs_keep_the_old_rule():
    from agent import parity

    a = [np.array([[0.0, 1.0, 0.9]], np.float32)]
    b = [np.array([[0.0, 0.9, 1.0]], np.float32)]
    out = parity.compare({"y": a}, {"y": b}, {"top1_min": 1.0})["outputs"][0]
    assert out["top1_agreement"] == 0.0          # (batch, classes) without the key: judged as before


def test_worst_sample_and_score():
    from agent import parity

    rng = np.random.default_rng(3)
    refs = [rng.normal(0, 1, (1, 64)).astype(np.float32) for _ in range(5)]
    gots = [r.copy() for r in refs]
    gots[3] = gots[3] + rng.normal(0, 0.5, (1, 64)).astype(np.float32)   # one bad sentence
    res = parity.compare({"e": refs}, {"e": gots}, INT8)
    out = res["outputs"][0]
    assert out["worst_sample"]["index"] == 3 and out["worst_sample"]["cosine"] < 0.97
    assert out["cosine"] > out["worst_sample"]["cosine"]
    assert any(f.startswith("sample 3 cosine") for f in out["failures"])
    assert parity.score(res) == out["worst_sample"]["cosine"]
    assert parity.score({"outputs": [{"name": "e", "passed": False, "failures": ["missing"]}]}) == -1.0


def test_a_small_share_of_elements_outside_tolerance_passes_only_where_the_profile_allows():
    from agent import parity

    rng = np.random.default_rng(0)
    ref = rng.random((1, 1, 100, 100)).astype(np.float32)
    got = ref.copy()
    got.flat[:15] += 0.05                      # 0.15% of the elements 0.05 off, the rest exact
    strict = {"atol": 1e-2, "rtol": 1e-2}
    r = parity.compare({"map": [ref]}, {"map": [got]}, strict)
    assert not r["passed"] and "15 of 10000 elements outside" in r["outputs"][0]["failures"][0]
    r = parity.compare({"map": [ref]}, {"map": [got]}, dict(strict, outside_share_max=0.002))
    assert r["passed"] and r["outputs"][0]["elements_over_tolerance"] == 15
    got.flat[:30] += 0.05                      # 0.3%: more than the profile allows
    r = parity.compare({"map": [ref]}, {"map": [got]}, dict(strict, outside_share_max=0.002))
    assert not r["passed"]


def test_one_number_per_sample_is_judged_by_its_difference_not_its_sign():
    from agent import parity

    refs = [np.array([[p]], np.float32) for p in (0.0, 0.015, 1.0, 0.013, 1.0, 1.0)]
    near = [np.array([[p]], np.float32) for p in (0.0, 0.0, 0.996, 0.0, 0.996, 0.99)]
    res = parity.compare({"output": refs}, {"output": near}, INT8)
    out = res["outputs"][0]
    assert out["passed"], out["failures"]        # 0.015 against 0: a cosine of 0, a difference of 0.015
    assert out["worst_sample"] == {"index": 1, "max_abs": pytest.approx(0.015), "one_element": True}
    far = [a.copy() for a in near]
    far[5] = np.array([[0.73]], np.float32)      # a speech chunk at 0.73 instead of 1.0: a cosine of 1
    out = parity.compare({"output": refs}, {"output": far}, INT8)["outputs"][0]
    assert not out["passed"]
    assert out["failures"] == ["sample 5 |diff| 0.27 > slice_atol 0.05 (one number per sample: judged by its "
                               "difference, a cosine would be only its sign)"]
    assert parity.score({"outputs": [out]}) == pytest.approx(out["cosine"])


def test_a_state_whose_batch_is_axis_1_is_sliced_on_axis_0():
    from agent import parity

    rng = np.random.default_rng(5)
    h = np.tanh(rng.normal(0, 1, (1, 1, 128)))            # in [-1, 1]
    c = rng.normal(0, 10, (1, 1, 128))                    # up to +-30: dominates the whole-tensor cosine
    ref = np.concatenate([h, c]).astype(np.float32)       # [2, batch, 128]
    got = ref.copy()
    got[0] += rng.normal(0, 0.3, (1, 128)).astype(np.float32)   # h as coral's int8 leaves it (cosine ~0.87)
    plain = parity.compare({"stateN": [ref]}, {"stateN": [got]}, INT8)["outputs"][0]
    assert plain["passed"] and "worst_slice" not in plain     # axis 1 is the batch: nothing to slice
    sliced = parity.compare({"stateN": [ref]}, {"stateN": [got]}, dict(INT8, slice_axes={"stateN": 0}))
    out = sliced["outputs"][0]
    assert out["worst_slice"]["axis"] == 0 and out["worst_slice"]["index"] == 0
    assert not out["passed"] and out["worst_slice"]["cosine"] < 0.95 and out["worst_slice"]["max_abs"] > 0.05


def test_the_build_finds_the_state_axis_from_a_reference_sample(tmp_path):
    from packager import parity as host_parity, profiles
    from packager.formats import Artifact, Format
    from packager.specs import TensorSpec

    art = Artifact(format=Format.ONNX, path=None, inputs=(),
                   outputs=(TensorSpec("stateN", "float32", ["batch", "dim1", "dim2"]),
                            TensorSpec("rows", "float32", ["batch", "dim1", "dim2"])))
    ref = [{"stateN": np.zeros((2, 1, 128), np.float32), "rows": np.zeros((1, 6, 2100), np.float32)}]
    prof = tmp_path / "p.yaml"     # classifier outputs named: no model file to read for them
    prof.write_text("name: p\nextends: coral\nparity: {classifier_outputs: []}\n")
    th = host_parity.thresholds_for(profiles.load(str(prof)), art, ref)
    assert th["slice_axes"] == {"stateN": 0}
    assert "slice_axes" not in host_parity.thresholds_for(profiles.load(str(prof)), art)
