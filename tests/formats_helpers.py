"""Helpers for the format x precision tests: tiny models, builds, and the agent in a subprocess."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "models.py"


class Branchy(nn.Module):
    """Data-dependent control flow: the branch depends on the input's values."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 8)
        self.b = nn.Linear(16, 8)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return self.b(x) * 2.0


class Unscriptable(nn.Module):
    """Control flow that tracing bakes in and scripting cannot compile (a Python builtin call)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 8)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return self.a(x) * (1 + len({id(v) for v in [x]}))  # a set comprehension: TorchScript rejects it


def branchy():
    torch.manual_seed(0)
    return Branchy().eval(), torch.randn(1, 16, generator=torch.Generator().manual_seed(1)).abs()


def unscriptable():
    torch.manual_seed(0)
    return Unscriptable().eval(), torch.randn(1, 16, generator=torch.Generator().manual_seed(1)).abs()


def build(source, profile, out, **kw):
    from packager.pipeline import BuildOptions, build as _build

    t0 = time.perf_counter()
    res = _build(BuildOptions(source=str(source), profile=profile, out=Path(out), **kw))
    res.seconds = time.perf_counter() - t0
    return res


def selftest(bundle):
    """The bundle's own agent in a subprocess with a clean environment (as on a device)."""
    from packager.selftest import run_local

    return run_local(Path(bundle), runs=20, seconds=0.05)


def save_keras(path: Path, kind: str = "cnn") -> Path:
    import keras

    keras.utils.set_random_seed(0)
    if kind == "cnn":
        inp = keras.Input((16, 16, 3), name="image")
        x = keras.layers.Conv2D(8, 3, padding="same")(inp)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        out = keras.layers.Dense(5)(x)
    else:
        inp = keras.Input((12,), name="features")
        x = keras.layers.Dense(16, activation="relu")(inp)
        out = keras.layers.Dense(3)(x)
    model = keras.Model(inp, out)
    model.save(str(path))
    return path
