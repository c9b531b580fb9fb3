"""Reference and calibration inputs: read from .npz files, or generated with a fixed seed.

An .npz holds one array per model input, keyed by input name, first axis = samples. Each
sample is either a whole input (array of the input's rank + 1) or one batch element of it
(array of the input's rank; the input's batch axis, wherever it is, is put back with size 1).
docs/DATA.md states the rule.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError, SourceError
from .specs import TensorSpec

SEED = 0


def generate(inputs: list[TensorSpec], samples: int, seed: int = SEED) -> list[dict[str, np.ndarray]]:
    """Standard-normal float inputs from a fixed seed. Integer/bool inputs cannot be guessed."""
    for spec in inputs:
        if np.dtype(spec.dtype).kind not in "fc":
            raise DataError(f"input '{spec.name}' is {spec.dtype}: random values are not valid "
                            "token ids, indices or masks",
                            f"pass real samples with --inputs FILE.npz holding an array '{spec.name}'")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(samples):  # np.asarray: a 0-d input stays a 0-d array, never a numpy scalar
        out.append({s.name: np.asarray(rng.standard_normal(s.concrete_shape()), dtype=s.dtype) for s in inputs})
    return out


def _read(path: Path, what: str) -> dict[str, np.ndarray]:
    flag = "--calibration" if what == "calibration" else "--inputs"
    if not path.is_file():
        raise DataError(f"{what} file '{path}' does not exist", f"check the path given to {flag}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{what} file '{path}' is not a readable .npz ({type(exc).__name__}: {exc})",
                        "write it with numpy.savez(path, input_name=array, ...)") from exc


def describe(path: str | Path, what: str = "inputs") -> dict[str, tuple[tuple[int, ...], str]]:
    """{array name: (shape, dtype)} of an .npz: what a source without input specs learns its
    inputs' dtypes (and, without --input-shape, their shapes) from."""
    return {k: (tuple(v.shape), v.dtype.name) for k, v in _read(Path(path), what).items()}


def load_npz(path: str | Path, inputs: list[TensorSpec], what: str, limit: int | None = None
             ) -> list[dict[str, np.ndarray]]:
    """Read samples for every input from an .npz, checking names, dtypes and shapes."""
    path = Path(path)
    arrays = _read(path, what)
    names = [s.name for s in inputs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataError(f"{what} file '{path}' lacks {missing} (has {sorted(arrays)}; the model's inputs "
                        f"are {names})", "save one array per model input, keyed by input name")
    per_input = {spec.name: split_samples(arrays[spec.name], spec, f"{what} array '{spec.name}' in '{path}'")
                 for spec in inputs}
    counts = {len(v) for v in per_input.values()}
    if len(counts) != 1:
        raise DataError(f"{what} file '{path}' has different sample counts per input "
                        f"({ {n: len(v) for n, v in per_input.items()} })", "give every input the same first axis")
    n = counts.pop()
    if n == 0:
        raise DataError(f"{what} file '{path}' holds zero samples", "put at least one sample on the first axis")
    if limit is not None:
        n = min(n, limit)
    return [{name: per_input[name][i] for name in names} for i in range(n)]


def split_samples(arr: np.ndarray, spec: TensorSpec, where: str) -> list[np.ndarray]:
    """An array's samples for one input (docs/DATA.md, "How --inputs is read"). Axis 0 always
    counts samples; the array's rank says how each sample is stored:
    - rank of the input + 1: whole samples, (samples, *input shape), e.g. (8, 2, 1, 128) for a
      state [2, batch, 128], (8,) for a scalar;
    - rank of the input: one batch element per sample, the input's batch axis left out and put
      back with size 1, e.g. (8, 576) for [batch, 576] -> [1, 576], (8, 2, 128) for the state.
    """
    kind, want_kind = arr.dtype.kind, np.dtype(spec.dtype).kind
    compatible = kind == want_kind or (kind in "iu" and want_kind in "iu")
    if not compatible:
        raise DataError(f"{where} is {arr.dtype}, the model takes {spec.dtype}",
                        f"save '{spec.name}' as {spec.dtype}")
    arr = arr.astype(spec.dtype, copy=False)
    rank, b = len(spec.shape), spec.batch_axis
    shape_txt = "[" + ", ".join(map(str, spec.shape)) + "]"
    whole = _tuple(["samples"] + list(spec.shape))
    if arr.ndim == rank + 1:
        reading = f"read as {arr.shape[0]} whole samples {whole}"
        samples = [arr[i, ...] for i in range(arr.shape[0])]  # arr[i, ...] keeps a 0-d sample an array
    elif arr.ndim == rank and rank > 0 and b is not None:
        rest = [d for i, d in enumerate(spec.shape) if i != b]
        reading = (f"read as {arr.shape[0]} samples of one batch element each {_tuple(['samples'] + rest)}, "
                   f"batch axis {b} of {shape_txt} put back with size 1")
        samples = [np.expand_dims(arr[i], b) for i in range(arr.shape[0])]
    else:
        raise DataError(f"{where} has shape {list(arr.shape)} (rank {arr.ndim}); the input is {shape_txt} "
                        f"(rank {rank}): edgepack reads rank {rank + 1} as whole samples"
                        + (f" and rank {rank} as one batch element per sample" if rank and b is not None else ""),
                        f"save it as {_ways(spec)}")
    want = spec.example_shape
    for s in samples[:1]:
        for i, (got, dim) in enumerate(zip(s.shape, spec.shape)):
            fixed = dim if isinstance(dim, int) and dim > 0 else None
            if want is not None and i != b and i < len(want):
                fixed = want[i]   # --input-shape sizes, but for the batch axis
            if fixed is not None and got != fixed:
                raise DataError(f"{where} has shape {list(arr.shape)}, {reading}: a sample has shape "
                                f"{list(s.shape)}, the input takes {shape_txt}"
                                + (f" (--input-shape {'x'.join(map(str, want))})" if want else "")
                                + f", axis {i} must be {fixed}", f"save it as {_ways(spec)}")
    return samples


def _tuple(dims) -> str:
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def _ways(spec: TensorSpec) -> str:
    """The two layouts an array for this input may have."""
    text = "whole samples " + _tuple(["samples"] + list(spec.shape))
    b = spec.batch_axis
    if spec.shape and b is not None:
        text += " or one batch element per sample " + _tuple(
            ["samples"] + [d for i, d in enumerate(spec.shape) if i != b])
    return text


def check_finite(outputs: list[dict[str, np.ndarray]], who: str) -> None:
    for i, out in enumerate(outputs):
        for name, arr in out.items():
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
                raise SourceError(f"{who} produces {bad} NaN/Inf values in output '{name}' on reference "
                                  f"sample {i}: there is nothing valid to compare against",
                                  "fix the model (or its weights), or pass realistic --inputs FILE.npz")
