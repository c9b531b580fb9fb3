"""onnx2tf's TF-Lite model against the ONNX graph it came from: the I/O it must keep, and its values
in LiteRT against onnxruntime on the build's example; on a mismatch onnx2tf's own per-op check
(-cotof) names the first ONNX node whose output no longer matches."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CheckFailed, ConversionError
from .. import Artifact
from ..base import BuildContext
from . import onnx2tf_log

if TYPE_CHECKING:
    from .onnx2tf import Job

CHECK_ATOL, CHECK_RTOL = 1e-4, 1e-3   # onnx2tf's per-op check (np.allclose on each tensor)


def against_onnx(ctx: BuildContext, job: "Job", tflite: Path, onnx_art: Artifact) -> dict:
    """The TF-Lite model against onnxruntime on the example; on a mismatch, onnx2tf's per-op check
    names the first ONNX node that differs (CheckFailed). A model LiteRT cannot run is refused."""
    from agent import parity, runtimes

    from ...layout import to_model_layout

    feeds = {k: ctx.example[k] for k in job.inputs}
    try:
        rt, _ = runtimes.load_timed("litert", str(tflite), {"threads": 0})
        got = rt.run(to_model_layout(feeds, ctx.layout))
    except Exception as exc:
        raise ConversionError(f"onnx2tf's TF-Lite model does not run in LiteRT: {onnx2tf_log.runtime_error(exc)}",
                              "use --format onnx; or replace the op in the model") from exc
    ref = ort_outputs(onnx_art.path, feeds)
    result = parity.compare({k: [v] for k, v in ref.items()}, {k: [got[k]] for k in ref if k in got},
                            ctx.profile.thresholds("fp32"))
    summary = {o["name"]: {"cosine": round(o.get("cosine", 0.0), 6), "max_abs": o.get("max_abs")}
               for o in result["outputs"]}
    if result["passed"]:
        return {"vs_onnxruntime": summary, "passed": True}
    proc = job.call("cotof", {"check_onnx_tf_outputs_elementwise_close_full": True,
                              "check_onnx_tf_outputs_elementwise_close_atol": CHECK_ATOL,
                              "check_onnx_tf_outputs_elementwise_close_rtol": CHECK_RTOL}, signature=False)
    where = onnx2tf_log.first_unmatched(proc.stdout, job.graph_file, job.renamed)
    failing = "; ".join(parity.describe_failures(result))
    raise CheckFailed(f"onnx2tf's TF-Lite differs from the ONNX graph on the reference input ({failing}); "
                      f"{where}",
                      "use --format onnx; or pass onnx2tf a parameter replacement for that node "
                      "(https://github.com/PINTO0309/onnx2tf#parameter-replacement)")


def ort_outputs(path: Path, feeds: dict) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {k: np.asarray(v) for k, v in feeds.items()})))


def io_kept(art: Artifact, onnx_art: Artifact, changes: dict) -> None:
    """The TF-Lite model must take the inputs edgepack will feed and give the ONNX outputs by name."""
    got_in = {s.name: list(s.example_shape or s.shape) for s in art.inputs}
    for spec in onnx_art.inputs:
        want = list(spec.example_shape or spec.shape)
        if spec.name in changes:
            want = [want[i] for i in changes[spec.name]["perm"]]
        got = got_in.get(spec.name)
        if got is None:
            raise ConversionError(f"onnx2tf's TF-Lite model has no input '{spec.name}' (it has {sorted(got_in)})",
                                  "use --format onnx")
        if len(got) != len(want) or any(isinstance(w, int) and w != g for w, g in zip(want, got)):
            raise ConversionError(f"onnx2tf changed input '{spec.name}' to shape {got} (expected {want})",
                                  "use --format onnx, which keeps the model's layout")
    want_out = {s.name for s in onnx_art.outputs}
    got_out = {s.name for s in art.outputs}
    if want_out and not want_out <= got_out:
        raise ConversionError(f"onnx2tf's TF-Lite outputs {sorted(got_out)} do not match the ONNX outputs "
                              f"{sorted(want_out)}", "use --format onnx")
