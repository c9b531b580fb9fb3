"""Reference and calibration inputs: read from .npz files, or generated with a fixed seed.

An .npz holds one array per model input, keyed by input name, first axis = samples. Each
sample is either a whole batch (array of ndim+1) or one row of a batch-1 input (array of
the input's ndim, one sample per row).
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
    for _ in range(samples):
        out.append({s.name: rng.standard_normal(s.concrete_shape()).astype(s.dtype) for s in inputs})
    return out


def load_npz(path: str | Path, inputs: list[TensorSpec], what: str, limit: int | None = None
             ) -> list[dict[str, np.ndarray]]:
    """Read samples for every input from an .npz, checking names, dtypes and shapes."""
    path = Path(path)
    flag = "--calibration" if what == "calibration" else "--inputs"
    if not path.is_file():
        raise DataError(f"{what} file '{path}' does not exist", f"check the path given to {flag}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{what} file '{path}' is not a readable .npz ({type(exc).__name__}: {exc})",
                        "write it with numpy.savez(path, input_name=array, ...)") from exc
    names = [s.name for s in inputs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataError(f"{what} file '{path}' lacks {missing} (has {sorted(arrays)}; the model's inputs "
                        f"are {names})", "save one array per model input, keyed by input name")
    counts = set()
    per_input = {}
    for spec in inputs:
        arr = arrays[spec.name]
        try:
            want = spec.concrete_shape()
        except Exception:
            want = None
        samples = _split_samples(arr, spec, want, path, what)
        counts.add(len(samples))
        per_input[spec.name] = samples
    if len(counts) != 1:
        raise DataError(f"{what} file '{path}' has different sample counts per input "
                        f"({ {n: len(v) for n, v in per_input.items()} })", "give every input the same first axis")
    n = counts.pop()
    if n == 0:
        raise DataError(f"{what} file '{path}' holds zero samples", "put at least one sample on the first axis")
    if limit is not None:
        n = min(n, limit)
    return [{name: per_input[name][i] for name in names} for i in range(n)]


def _split_samples(arr: np.ndarray, spec: TensorSpec, want, path, what) -> list[np.ndarray]:
    kind, want_kind = arr.dtype.kind, np.dtype(spec.dtype).kind
    compatible = (kind == want_kind) or (kind in "iu" and want_kind in "iu") or (kind == "f" and want_kind == "f")
    if not compatible:
        raise DataError(f"{what} array '{spec.name}' in '{path}' is {arr.dtype}, the model takes {spec.dtype}",
                        f"save '{spec.name}' as {spec.dtype}")
    arr = arr.astype(spec.dtype, copy=False)
    rank = len(spec.shape)
    if arr.ndim == rank + 1:
        samples = [arr[i] for i in range(arr.shape[0])]
    elif arr.ndim == rank and rank > 0:
        samples = [arr[i:i + 1] for i in range(arr.shape[0])]  # rows of a batch-1 input
    else:
        raise DataError(f"{what} array '{spec.name}' in '{path}' has shape {list(arr.shape)}; the input is "
                        f"{spec.shape}", f"save it as (samples, {', '.join(map(str, spec.shape))})")
    for s in samples[:1]:
        for i, (got, dim) in enumerate(zip(s.shape, spec.shape)):
            fixed = dim if isinstance(dim, int) and dim > 0 else None
            if want is not None and i > 0 and got != want[i]:
                fixed = want[i]
            if fixed is not None and got != fixed:
                raise DataError(f"{what} array '{spec.name}' in '{path}': a sample has shape {list(s.shape)}, "
                                f"the input takes {spec.shape}", "match the model's input shape")
    return samples


def check_finite(outputs: list[dict[str, np.ndarray]], who: str) -> None:
    for i, out in enumerate(outputs):
        for name, arr in out.items():
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
                raise SourceError(f"{who} produces {bad} NaN/Inf values in output '{name}' on reference "
                                  f"sample {i}: there is nothing valid to compare against",
                                  "fix the model (or its weights), or pass realistic --inputs FILE.npz")
