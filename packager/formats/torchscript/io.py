"""A TorchScript file records its input names but not their shapes or its outputs: the I/O of a
TorchScript artifact is the one it was made with (the source's, carried by `like`)."""
from __future__ import annotations

from pathlib import Path

from ...errors import ConversionError
from .. import Artifact


def read(path: Path, precision: str, like: Artifact | None) -> Artifact:
    if like is None:
        raise ConversionError(f"'{path}': a TorchScript file does not record its input shapes or outputs",
                              "read it with the artifact it was made from")
    return like.replace(path=Path(path), precision=precision)
