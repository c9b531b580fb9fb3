"""Tensor specs shared by sources, converters and bundles."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from .errors import UsageError

Dim = int | str  # a concrete size, or a symbolic name such as "batch"
BATCH_NAMES = ("N", "n", "B", "b", "bs")
SCALAR_WORDS = ("scalar", "()", "[]")   # --input-shape sr=scalar: a 0-d input


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str                      # numpy dtype name: float32, int64, ...
    shape: list[Dim] = field(default_factory=list)
    layout: str | None = None       # NCHW / NHWC for image-like inputs, else None
    example_shape: list[int] | None = None  # concrete shape for reference inputs (--input-shape)

    def replace(self, **changes) -> "TensorSpec":
        return dataclasses.replace(self, **changes)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)

    @property
    def batch_axis(self) -> int | None:
        """The axis that counts samples in a batch (docs/DATA.md): a dimension named like a batch
        ('batch', 'batch_size', 'N'), else the first symbolic one, else the first of size 1; None for
        a scalar or a fixed shape without a size-1 axis. Recurrent state [2, batch, 128] -> 1."""
        for i, d in enumerate(self.shape):
            if isinstance(d, str) and ("batch" in d.lower() or d in BATCH_NAMES):
                return i
        for i, d in enumerate(self.shape):
            if not (isinstance(d, int) and d > 0):
                return i
        for i, d in enumerate(self.shape):
            if d == 1:
                return i
        return None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("example_shape")
        return d

    def concrete_shape(self, batch: int = 1) -> list[int]:
        """Shape with symbolic dims resolved: the batch axis -> batch; others must be set."""
        if self.example_shape is not None and (self.example_shape or not self.shape):
            return list(self.example_shape)
        out = []
        b = self.batch_axis
        for i, d in enumerate(self.shape):
            if isinstance(d, int) and d > 0:
                out.append(d)
            elif i == b:
                out.append(batch)
            else:
                raise UsageError(
                    f"input '{self.name}' has a symbolic dimension '{d}' at axis {i} (shape {self.shape})",
                    f"give it a size: --input-shape {self.name}=" + "x".join(
                        str(x) if isinstance(x, int) and x > 0 else ("1" if j == b else "N")
                        for j, x in enumerate(self.shape)))
        return out


def guess_layout(shape: list) -> str | None:
    """4-D inputs with 1 or 3 channels on axis 1 look like NCHW images; on the last axis, NHWC."""
    if len(shape) != 4:
        return None
    if isinstance(shape[1], int) and shape[1] in (1, 3, 4):
        return "NCHW"
    if isinstance(shape[3], int) and shape[3] in (1, 3, 4):
        return "NHWC"
    return None


def parse_input_shapes(items: list[str] | None) -> dict[str, list[int]]:
    """['x=1x3x224x224', 'mask=1x128', 'sr=scalar'] -> {'x': [1,3,224,224], 'mask': [1,128], 'sr': []}."""
    shapes: dict[str, list[int]] = {}
    for item in items or []:
        name, sep, dims = item.partition("=")
        name = name.strip()
        fix = "write --input-shape NAME=AxBxC, e.g. --input-shape x=1x3x224x224 (NAME=scalar for a 0-d input)"
        if not sep or not name or not dims.strip():
            raise UsageError(f"bad --input-shape '{item}': expected NAME=AxBxC", fix)
        if name in shapes:
            raise UsageError(f"--input-shape gives '{name}' twice", "give each input once")
        if dims.strip().lower() in SCALAR_WORDS:
            shapes[name] = []
            continue
        try:
            values = [int(d) for d in dims.lower().replace("*", "x").split("x")]
        except ValueError:
            raise UsageError(f"bad --input-shape '{item}': dimensions must be whole numbers", fix) from None
        if any(v <= 0 for v in values):
            raise UsageError(f"bad --input-shape '{item}': dimensions must be positive", fix)
        shapes[name] = values
    return shapes
