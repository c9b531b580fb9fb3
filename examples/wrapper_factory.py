"""Wrapper factories: the way out when forward() takes something that is not a tensor.

Exporters (torch.onnx, tracing, litert-torch) feed tensors only: a Python number such as
`forward(x, sr: int)` would be frozen into the graph at one value, and state a module keeps in its
own attributes between calls is lost. edgepack refuses such a model with one line naming the
parameter; a factory like the ones below makes it a model of tensors (docs/DATA.md,
"Non-tensor arguments").

    edgepack build examples/wrapper_factory.py:repeat_three --profile x86-cpu
    edgepack build examples/wrapper_factory.py:silero_vad_16k --profile x86-cpu \\
        --inputs vad_inputs.npz          # arrays 'input' (N, 1, 576) and 'state' (N, 2, 1, 128)
"""
import os
import sys
from pathlib import Path

import torch
from torch import nn


# ------------------------------------------------------------------ the pattern, on a tiny model

class Repeat(nn.Module):
    """A model whose forward takes a Python int: edgepack refuses it as it is."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(8, 8)

    def forward(self, x, n: int):
        for _ in range(n):
            x = torch.tanh(self.proj(x))
        return x


def repeat():
    """The model as it is: `edgepack build ...:repeat` says 'forward() parameter n is int'."""
    return Repeat().eval()


class RepeatThree(nn.Module):
    """The wrapper: forward takes tensors only and passes n itself."""

    def __init__(self, inner: Repeat, n: int = 3):
        super().__init__()
        self.inner, self.n = inner, n

    def forward(self, x):
        return self.inner(x, self.n)


def repeat_three():
    """Factory: (wrapped model, example inputs), so no --input-shape is needed."""
    return RepeatThree(Repeat().eval()).eval(), torch.randn(1, 8, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ a real one: Silero VAD

def silero_jit_path() -> Path:
    """silero_vad.jit from the installed silero-vad package ($SILERO_VAD_JIT, sys.path, or the
    zoo's site folder: $EDGEPACK_ZOO/site or .zoo/site)."""
    if os.environ.get("SILERO_VAD_JIT"):
        return Path(os.environ["SILERO_VAD_JIT"])
    zoo = Path(os.environ.get("EDGEPACK_ZOO") or Path(__file__).resolve().parents[1] / ".zoo")
    for base in [*map(Path, sys.path), zoo / "site"]:
        f = base / "silero_vad" / "data" / "silero_vad.jit"
        if f.is_file():
            return f
    raise FileNotFoundError("silero_vad.jit not found: pip install silero-vad==6.2.3, or set SILERO_VAD_JIT")


class SileroVadStep(nn.Module):
    """One 16 kHz step of Silero VAD with its state as tensors, like the package's own ONNX model.

    The TorchScript file's forward(x, sr: int) keeps the LSTM state and the last 64 samples in its
    attributes between calls; its 16 kHz network (`_model`) takes them as tensors:
      input: (batch, 64 + 512) float32, the previous 64 samples (context) then 512 new ones
      state: (2, batch, 128) float32, zeros at the start of a stream (batch on axis 1)
      -> (speech probability (batch, 1), new state (2, batch, 128))
    The caller keeps the state and the context, as with the ONNX model.
    """

    def __init__(self, jit):
        super().__init__()
        self.net = jit._model

    def forward(self, input, state):  # noqa: A002 - the names of the package's ONNX model inputs
        return self.net(input, state)


def silero_vad_16k():
    """Factory: (the step, scripted, and example inputs). Scripted, because the network inside is
    TorchScript already: torch.onnx.export takes a ScriptModule whole, while its tracer refuses a
    Python module that calls into a loaded ScriptModule."""
    jit = torch.jit.load(str(silero_jit_path()), map_location="cpu").eval()
    step = torch.jit.script(SileroVadStep(jit).eval())
    return step, (torch.zeros(1, 576), torch.zeros(2, 1, 128))
