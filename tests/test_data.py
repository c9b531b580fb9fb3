"""How --inputs / --calibration arrays are read (docs/DATA.md): scalar inputs, batch axes that are
not the first, the two readings and the error that names the one tried; generated inputs."""
from __future__ import annotations

import numpy as np
import pytest

from packager import data
from packager.errors import DataError, UsageError
from packager.specs import TensorSpec, parse_input_shapes


def spec(shape, dtype="float32", name="x", example=None):
    return TensorSpec(name, dtype, list(shape), example_shape=example)


@pytest.mark.parametrize("shape, axis", [
    (["batch", 576], 0), ([2, "dim1", 128], 1), ([2, "batch_size", 128], 1), (["N", 3, 224, 224], 0),
    (["p2o.DynamicDimension.0", 3, "h", "w"], 0), ([2, 1, 128], 1), ([1, 32], 0), ([], None), ([4, 8], None),
])
def test_batch_axis(shape, axis):
    assert spec(shape).batch_axis == axis


def test_scalar_samples_stay_0d_arrays():
    """(N,) for a 0-d input: N samples, each a 0-d ndarray (a numpy scalar crashes onnxruntime)."""
    samples = data.split_samples(np.array([16000, 8000], dtype=np.int64), spec([], "int64", "sr"), "a")
    assert len(samples) == 2
    assert all(isinstance(s, np.ndarray) and s.ndim == 0 for s in samples)
    assert [int(s) for s in samples] == [16000, 8000]


def test_state_with_batch_on_axis_1_both_readings():
    state = spec([2, "dim1", 128], name="state")
    whole = data.split_samples(np.zeros((5, 2, 1, 128), np.float32), state, "a")
    rows = data.split_samples(np.arange(5 * 2 * 128, dtype=np.float32).reshape(5, 2, 128), state, "a")
    assert [s.shape for s in whole] == [(2, 1, 128)] * 5
    assert [s.shape for s in rows] == [(2, 1, 128)] * 5       # batch axis 1 put back with size 1
    assert rows[1][1, 0, 3] == (1 * 2 + 1) * 128 + 3           # sample 1, layer 1, unit 3


def test_batch_first_rows():
    samples = data.split_samples(np.ones((3, 576), np.float32), spec(["batch", 576]), "a")
    assert [s.shape for s in samples] == [(1, 576)] * 3


def test_wrong_layout_names_the_reading_it_tried():
    """(2, 8, 128) for [2, batch, 128]: read as 2 one-batch-element samples -> (8, 1, 128), axis 0 != 2."""
    with pytest.raises(DataError) as e:
        data.split_samples(np.zeros((2, 8, 128), np.float32), spec([2, "dim1", 128], name="state"), "array 'state'")
    msg, hint = e.value.message, e.value.hint
    assert "read as 2 samples of one batch element each (samples, 2, 128)" in msg
    assert "batch axis 1" in msg and "axis 0 must be 2" in msg
    assert "(samples, 2, dim1, 128)" in hint and "(samples, 2, 128)" in hint


def test_rank_that_fits_no_reading():
    with pytest.raises(DataError) as e:
        data.split_samples(np.zeros((4, 1, 2, 1, 128), np.float32), spec([2, "dim1", 128]), "array 'state'")
    assert "rank 4 as whole samples and rank 3 as one batch element per sample" in e.value.message
    with pytest.raises(DataError) as e:
        data.split_samples(np.zeros((4, 2), np.int64), spec([], "int64", "sr"), "array 'sr'")
    assert "save it as whole samples (samples,)" in e.value.one_line()


def test_input_shape_sizes_checked_but_not_the_batch():
    s = spec([2, "dim1", 128], example=[2, 4, 128])
    assert data.split_samples(np.zeros((3, 2, 1, 128), np.float32), s, "a")[0].shape == (2, 1, 128)
    with pytest.raises(DataError) as e:
        data.split_samples(np.zeros((3, 2, 1, 64), np.float32), s, "a")
    assert "axis 2 must be 128" in e.value.message


def test_dtype_mismatch_and_int_widths():
    with pytest.raises(DataError) as e:
        data.split_samples(np.zeros((2, 4), np.float32), spec(["batch", 4], "int64"), "array 'ids'")
    assert "is float32, the model takes int64" in e.value.message
    out = data.split_samples(np.zeros((2, 4), np.int32), spec(["batch", 4], "int64"), "a")
    assert out[0].dtype == np.int64


def test_generated_scalar_and_state():
    inputs = [spec([], "float32", "gain"), spec([2, "batch", 16], name="state")]
    (sample,) = data.generate(inputs, 1)
    assert isinstance(sample["gain"], np.ndarray) and sample["gain"].shape == () and sample["gain"].dtype == np.float32
    assert sample["state"].shape == (2, 1, 16)


def test_load_npz_and_describe(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, ids=np.arange(12, dtype=np.int64).reshape(3, 4), sr=np.array([16000] * 3), extra=np.ones(1))
    assert data.describe(f) == {"ids": ((3, 4), "int64"), "sr": ((3,), "int64"), "extra": ((1,), "float64")}
    rows = data.load_npz(f, [spec(["batch", 4], "int64", "ids"), spec([], "int64", "sr")], "inputs", limit=2)
    assert len(rows) == 2 and rows[1]["ids"].tolist() == [[4, 5, 6, 7]] and rows[1]["sr"].shape == ()


def test_scalar_input_shape_word():
    assert parse_input_shapes(["sr=scalar", "x=1x512"]) == {"sr": [], "x": [1, 512]}
    with pytest.raises(UsageError):
        parse_input_shapes(["sr=scalar", "sr=1"])
