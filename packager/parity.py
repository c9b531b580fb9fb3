"""Host parity: run the converted artifact in its runtime and compare with the original.

Reuses the agent's comparison core (agent.parity) and runtimes (agent.runtimes), so the host
and the device judge a bundle by the same code. The thresholds a bundle carries are the profile's
for its precision plus what the build decided about the model's outputs (which are classifier
scores, which axis to slice).
"""
from __future__ import annotations

import numpy as np

from agent import parity as core
from agent import runtimes

from . import formats
from .errors import CheckFailed, ConversionError, short
from .formats import Artifact
from .specs import TensorSpec

HINT = ("inspect the model for ops that lose precision (`edgepack diagnose` shows where, tensor by tensor); "
        "loosen the profile's parity thresholds only if the difference is acceptable, or choose a higher precision")


class ParityFailed(CheckFailed):
    """Parity failed; `details` holds what --json shows (every output, the recipes tried, the
    per-tensor table)."""

    def __init__(self, message: str, hint: str | None = None, details: dict | None = None):
        super().__init__(message, hint)
        self.details = details or {}


def thresholds_for(profile, art: Artifact, reference: list[dict] | None = None) -> dict:
    """The thresholds for the profile's precision, with the classifier outputs resolved (a
    Softmax/LogSoftmax producer when `classifier_outputs: auto`) and the slice axis (per output
    where its batch axis is not the first)."""
    out = profile.thresholds()
    chosen = profile.parity.classifier_outputs
    if chosen == "auto":
        names = sorted(formats.get(art.format).classifier_outputs(art))
    else:
        names = list(chosen)
    out["classifier_outputs"] = names
    out["slice_axis"] = profile.parity.slice_axis
    if profile.parity.slice_axis is None:
        # Axis 1 is the channel axis only behind a batch axis 0: a state [2, batch, 128] is sliced on
        # axis 0 instead, so h in [-1, 1] is judged apart from c, which would otherwise hide it. A
        # reference sample's sizes say where its batch is (an ONNX graph often leaves its outputs'
        # sizes unknown): TensorSpec.batch_axis, the first axis of size 1 of a fixed shape.
        specs = {o.name: o for o in art.outputs}
        specs.update({k: TensorSpec(k, "float32", list(np.shape(v))) for k, v in (reference or [{}])[0].items()})
        axes = {n: 0 for n, spec in specs.items() if len(spec.shape) >= 3 and spec.batch_axis not in (None, 0)}
        if axes:
            out["slice_axes"] = axes
    return out


def load_on_host(art: Artifact, settings: dict):
    """The artifact's runtime on the host's CPU, with the profile's other settings."""
    host_settings = formats.get(art.format).host_settings(settings)  # the host judges on its CPU
    try:
        rt, _ = runtimes.load_timed(art.runtime, str(art.path), host_settings)
    except (runtimes.RuntimeMissing, runtimes.RuntimeLoadError) as exc:
        raise ConversionError(f"the converted model does not load on the host: {exc}",
                              "try another precision or format; run with --debug") from exc
    return rt


def run_artifact(art: Artifact, samples: list[dict], settings: dict, rt=None) -> list[dict]:
    """Outputs of the artifact for every sample (rt: an already loaded runtime to reuse)."""
    rt = rt or load_on_host(art, settings)
    results = []
    for feeds in samples:
        try:
            results.append(rt.run(feeds))
        except Exception as exc:
            raise ConversionError(f"the converted model fails to run on the host: {type(exc).__name__}: "
                                  f"{short(exc)}",
                                  "the conversion lost something the model needs; try --precision fp32") from exc
    return results


def check(reference: list[dict], converted: list[dict], thresholds: dict, label: str = "") -> dict:
    ref = {name: [s[name] for s in reference] for name in reference[0]}
    got = {name: [s[name] for s in converted if name in s] for name in converted[0]}
    return core.compare(ref, got, thresholds)


def failure_line(result: dict) -> str:
    return " | ".join(core.describe_failures(result))


def raise_if_failed(result: dict, label: str) -> None:
    if result["passed"]:
        return
    raise ParityFailed(f"host parity failed for {label}: " + failure_line(result), HINT, {"host_parity": result})
