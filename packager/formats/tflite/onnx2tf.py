"""ONNX -> TF-Lite through onnx2tf, run as a subprocess from its own venv (.venv-onnx2tf/).

onnx2tf hard-pins tensorflow 2.19, numpy 1.26, onnx 1.19 and onnxruntime 1.23, which cannot live
beside the main venv, so `scripts/setup-onnx2tf.sh` gives it an isolated venv and this module calls
it with a timeout. Only its float32 flatbuffer is used: fp16 and int8 are done afterwards by
ai-edge-quantizer in the main venv (quantize.py), as for every other TF-Lite route.

Driven the way its author and Ultralytics drive it (onnx2tf 1.29.24's convert(), Ultralytics'
utils/export/tensorflow.py): the graph arrives static and simplified by edgepack's passes
(static-shapes, simplify: onnxslim), so onnx2tf's own onnx-simplifier step is off
(`not_use_onnxsim`, as Ultralytics does; onnxsim's graph of YOLOv8 converted to a wrong TF-Lite,
bench/zoo_prep.md); `batch_size` (-b) only where the batch is still symbolic; Erf/GeLU replaced by
pseudo operators (`replace_to_pseudo_operators`) so transformers need no Flex (Select TF) ops. onnx2tf
rewrites its input file in place, so it gets a copy.

After the conversion the TF-Lite model runs once in LiteRT on the build's example and is compared
with onnxruntime on the same graph (the profile's fp32 thresholds). When it differs, onnx2tf runs
again with its own per-op check (`check_onnx_tf_outputs_elementwise_close_full`, -cotof) and the error
names the first ONNX node whose output no longer matches. When onnx2tf fails, the error is one line
naming the ONNX node and op where it stopped and the exception it raised (onnx2tf_log.py).

Cache: the float TF-Lite is stored in edgepack's content-addressed cache (packager/cache.py) under the
sha256 of the graph, the example, onnx2tf's and TensorFlow's versions and the options, so the three
TF-Lite profiles (raspberry-pi, android, coral) convert a model once; `conversion.cache` says hit/miss.

No network, by construction: the child blocks socket connections and name lookups before onnx2tf is
imported and replaces onnx2tf's sample-image downloader with one that returns zeros; onnx2tf's integer
quantization (the only step that wants that sample) is never asked for, and its dummy inference is
fed edgepack's own example input (`custom_input_op_name_np_data_path`).

Layout: onnx2tf turns 3-D/4-D/5-D channels-first inputs into channels-last. edgepack asks for that only
for the inputs the route's layout plan names (ctx.layout: 4-D NCHW inputs under a `layout: NHWC`
profile; recorded as `conversion.layout_changes`); every other input keeps its shape. An input that
feeds a convolution or pooling keeps its signature while onnx2tf computes channels-last inside
(`keep_ncw_or_nchw_or_ncdhw_input_names`); a 3-D input that feeds none (recurrent state
`[layers, batch, hidden]`: Silero VAD) is not channels-first at all and is left untouched
(`keep_shape_absolutely_input_names`): transposed to "NWC", its slices reached onnx2tf's LSTM as
`(hidden, batch)` (`initial_state ... not compatible with cell.state_size`, measured).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import cache
from ...errors import ConversionError
from .. import Artifact
from ..base import BuildContext
from . import io, onnx2tf_check, onnx2tf_log

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get("EDGEPACK_ONNX2TF_VENV", REPO / ".venv-onnx2tf"))
SETUP = "bash scripts/setup-onnx2tf.sh"
TIMEOUT_S = float(os.environ.get("EDGEPACK_ONNX2TF_TIMEOUT", "900"))
# ONNX ops that read a channels-first tensor as such (onnx2tf computes them channels-last)
SPATIAL_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
               "GlobalMaxPool", "BatchNormalization", "InstanceNormalization", "Resize", "DepthToSpace",
               "SpaceToDepth"}
RECURRENT_OPS = {"LSTM", "GRU", "RNN"}
# ONNX op types onnx2tf can build from TF-Lite builtins instead of a Flex op, with the name its ops
# look for in replace_to_pseudo_operators (lower case: onnx2tf 1.29.24's ops/Erf.py, ops/Gelu.py)
PSEUDO_OPS = {"Erf": "erf", "Gelu": "gelu"}
SCOPE_NAME = re.compile(r"^[A-Za-z0-9_./>-]*$")   # TensorFlow's _VALID_SCOPE_NAME_REGEX

# Runs first in the child, before onnx2tf (or TensorFlow) is imported.
GUARD = r"""
import socket
def _blocked(*a, **k):
    raise OSError("edgepack: network access is disabled while onnx2tf runs")
socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
import onnx2tf, sys
"""
# Then onnx2tf's sample downloader is replaced everywhere it was imported by name.
NO_DOWNLOAD = r"""
import numpy as np
def _no_download(*a, **k):
    # onnx2tf fetches a 20x128x128x3 image sample whenever every input looks like an NHWC image; with
    # custom_input_op_name_np_data_path (edgepack's example) that sample is never used: hand it zeros.
    return np.zeros((20, 128, 128, 3), dtype=np.float32)
for mod in list(sys.modules.values()):
    if getattr(mod, "__name__", "").startswith("onnx2tf") and hasattr(mod, "download_test_image_data"):
        mod.download_test_image_data = _no_download
"""
# Runs inside .venv-onnx2tf. argv[1]: JSON kwargs for onnx2tf.convert; argv[2]: JSON {inputs, outputs,
# tflite}: the ONNX graph's input and output names and the file to write. onnx2tf builds the Keras
# model (disable_model_save: none of its own files); edgepack exports it with ONE serving signature
# named after the ONNX inputs and outputs (onnx2tf's own flatbuffer has no SignatureDef when its Keras
# model cannot be saved directly: seen on PP-OCR; copy_onnx_input_output_names_to_tflite needs flatc
# and a download) and converts it with TF-Lite builtins only: no Flex ops the device's LiteRT lacks.
# Without argv[2] (the -cotof check): onnx2tf runs as it likes.
_CHILD = GUARD + NO_DOWNLOAD + r"""
import json
kwargs = json.loads(sys.argv[1])
if len(sys.argv) > 2:
    io = json.loads(sys.argv[2])
    import tensorflow as tf, tf_keras
    model = onnx2tf.convert(**kwargs, disable_model_save=True)
    outs, shapes = io["outputs"], io["output_shapes"]
    def fit(name, t, want):
        # onnx2tf can move a size-1 axis of an output (Silero's stateN (2, 1, 128) came out (1, 2, 128)):
        # the same values in the same order, so a reshape back to the ONNX shape is exact
        have = list(t.shape)
        if want is None or have == want or None in have:
            return t
        if [d for d in have if d != 1] == [d for d in want if d != 1]:
            print("EDGEPACK_RESHAPED " + json.dumps([name, have, want]))
            return tf.reshape(t, want)
        # a channels-first output (a segmentation map, an image) comes out channels-last: transposed back
        r = len(want)
        if r >= 3 and have == [want[0], *want[2:], want[1]]:
            print("EDGEPACK_TRANSPOSED " + json.dumps([name, have, want]))
            return tf.transpose(t, [0, r - 1, *range(1, r - 1)])
        return t
    def serve(*inputs):
        got = model(inputs)
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        return {n: fit(n, t, w) for n, t, w in zip(outs, got, shapes)}
    archive = tf_keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve,
                         input_signature=[tf.TensorSpec(t.shape, t.dtype, name=n) for t, n in zip(model.inputs, io["inputs"])])
    archive.write_out(io["saved_model"])
    conv = tf.lite.TFLiteConverter.from_saved_model(io["saved_model"], signature_keys=["serving_default"])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        flat = conv.convert()
    except Exception as exc:
        print("EDGEPACK_FLEX " + " ".join(str(exc).split())[:2000])
        raise SystemExit(3)
    open(io["tflite"], "wb").write(flat)
else:
    onnx2tf.convert(**kwargs)
import onnx2tf as o, tensorflow as tf, onnx
print("EDGEPACK_VERSIONS " + json.dumps({"onnx2tf": getattr(o, "__version__", "?"),
      "tensorflow": tf.__version__, "onnx": onnx.__version__}))
"""


def python() -> Path:
    return VENV / "bin" / "python"


def require() -> Path:
    py = python()
    if not py.exists():
        raise ConversionError(f"ONNX -> TF-Lite needs onnx2tf in its own virtual environment {VENV}, "
                              "which is missing",
                              f"install it (one time, about 2.6 GB): {SETUP}   (from the repository root {REPO})")
    return py


def tool_versions() -> dict:
    """onnx2tf's and TensorFlow's versions from the venv's metadata (no subprocess)."""
    out = {}
    for site in VENV.glob("lib/python*/site-packages"):
        for dist in site.glob("*.dist-info"):
            name, _, version = dist.name[:-len(".dist-info")].partition("-")
            if name.lower().replace("-", "_") in ("onnx2tf", "tensorflow", "onnx", "tf_keras"):
                out[name.lower()] = version
    return out


def options(ctx: BuildContext, onnx_art: Artifact, graph_ops: set[str],
            consumers: dict[str, set[str]] | None = None) -> dict:
    """onnx2tf.convert's keyword arguments, without the paths (the cache key holds these).
    consumers: {graph input: the op types that read it}."""
    example, changes, consumers = ctx.example, ctx.layout, consumers or {}
    kwargs = {"non_verbose": True, "not_use_onnxsim": True}
    kept = [s for s in onnx_art.inputs if s.name not in changes and len(s.shape) in (3, 4, 5)]
    untouched = [s.name for s in kept if len(s.shape) == 3 and s.name in consumers
                 and not consumers[s.name] & SPATIAL_OPS]
    keep = [s.name for s in kept if s.name not in untouched]
    if keep:
        kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] = keep
    if untouched:
        kwargs["keep_shape_absolutely_input_names"] = untouched
    symbolic_batch = [s.name for s in onnx_art.inputs if s.shape and not isinstance(s.shape[0], int)]
    if symbolic_batch:
        batch = {int(np.shape(example[n])[0]) for n in symbolic_batch if np.ndim(example[n])}
        if len(batch) == 1:
            kwargs["batch_size"] = batch.pop()          # -b: the Input ops take the example's batch
    if graph_ops & RECURRENT_OPS:
        kwargs["enable_rnn_unroll"] = True
    pseudo = sorted(name for op, name in PSEUDO_OPS.items() if op in graph_ops)
    if pseudo:
        kwargs["replace_to_pseudo_operators"] = pseudo
    return kwargs


@dataclass
class Job:
    """One conversion: the child's interpreter, its folder, the graph copy and what it is fed."""

    py: Path
    work: Path
    graph_file: Path
    custom: list                 # [[input name, .npy path]]: onnx2tf's dummy-inference data
    kwargs: dict
    inputs: list[str]
    outputs: list[str]
    renamed: dict = field(default_factory=dict)     # node renames {new: old}
    output_shapes: list = field(default_factory=list)   # the ONNX outputs' static shapes (None: symbolic)

    def call(self, folder: str, extra: dict | None = None, signature: bool = True) -> subprocess.CompletedProcess:
        kw = {"input_onnx_file_path": str(self.graph_file), "output_folder_path": str(self.work / folder),
              "custom_input_op_name_np_data_path": self.custom, **self.kwargs, **(extra or {})}
        argv = [str(self.py), "-c", _CHILD, json.dumps(kw)]
        if signature:
            argv.append(json.dumps({"inputs": self.inputs, "outputs": self.outputs,
                                    "output_shapes": self.output_shapes or [None] * len(self.outputs),
                                    "saved_model": str(self.work / folder / "saved_model"),
                                    "tflite": str(self.work / folder / "model_float32.tflite")}))
        try:
            proc = subprocess.run(argv, cwd=str(self.work), env=_child_env(), capture_output=True, text=True,
                                  timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise ConversionError(f"ONNX -> TF-Lite (onnx2tf) ran past {TIMEOUT_S:.0f} s and was stopped",
                                  "use --format onnx, or set EDGEPACK_ONNX2TF_TIMEOUT higher") from exc
        lines = onnx2tf_log.clean(proc.stdout + "\n" + proc.stderr)
        log.debug("onnx2tf (%s) exit %s; the last of its output:\n%s", folder, proc.returncode,
                  "\n".join(ln for ln in lines[-80:] if ln.strip()))
        return proc


def prepare(ctx: BuildContext, onnx_art: Artifact) -> Job:
    """The conversion's folder: a copy of the graph with TF-safe node names, and the example as .npy."""
    import onnx

    work = ctx.workdir / "onnx2tf"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    graph_file = work / "model.onnx"          # onnx2tf rewrites its input: give it a copy
    model = onnx.load(str(onnx_art.path))
    renamed = scope_safe_names(model)
    onnx.save_model(model, str(graph_file), save_as_external_data=model.ByteSize() > 2 ** 31 - 1)
    graph_ops = {n.op_type for n in model.graph.node}
    init = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in init]
    consumers = {name: {n.op_type for n in model.graph.node if name in n.input} for name in inputs}
    outputs = [o.name for o in model.graph.output]
    del model
    # onnx2tf's dummy inference (its op-by-op shape and accuracy checks) gets edgepack's example
    # input for every input, in the ONNX layout, never a downloaded sample.
    custom = []
    for name in inputs:
        p = work / f"input_{len(custom)}.npy"
        np.save(p, np.ascontiguousarray(ctx.example[name]))
        custom.append([name, str(p)])
    output_shapes = [list(o.shape) if o.is_static else None for o in onnx_art.outputs]
    return Job(require(), work, graph_file, custom, options(ctx, onnx_art, graph_ops, consumers), inputs, outputs, renamed,
               output_shapes)


def cache_key(job: Job, ctx: BuildContext) -> str:
    data = {name: cache.file_digest(Path(p)) for name, p in job.custom}
    return cache.key("onnx2tf", cache.file_digest(job.graph_file), data, job.kwargs, tool_versions(),
                     hashlib.sha256(_CHILD.encode()).hexdigest(), ctx.layout)


def convert(ctx: BuildContext, onnx_art: Artifact) -> Artifact:
    """The ONNX artifact as a float32 TF-Lite file (ctx.workdir/model.tflite)."""
    job = prepare(ctx, onnx_art)
    key = cache_key(job, ctx)
    out = ctx.workdir / "model.tflite"
    hit = cache.get("onnx2tf", key)
    if hit is not None:
        t0 = time.perf_counter()
        shutil.copyfile(hit.file("model.tflite"), out)
        info = {**hit.meta.get("info", {}), "cache": "hit", "seconds": round(time.perf_counter() - t0, 3)}
        info["conversion_seconds"] = hit.meta.get("info", {}).get("seconds")
    else:
        info = _run(job, out)
        info["check"] = onnx2tf_check.against_onnx(ctx, job, out, onnx_art)
        stored = cache.put("onnx2tf", key, {"model.tflite": out}, {"info": info})
        info["cache"] = "miss" if stored is not None else "off" if cache.root() is None else "not stored"
    info["cache_key"] = key[:16]
    if onnx_art.info.get("bound_inputs"):
        info["bound_inputs"] = onnx_art.info["bound_inputs"]     # constants now: not fed (bind-inputs pass)
    art = io.with_source_layouts(io.read(out, "fp32", ctx.source.input_names), ctx, ctx.layout)
    onnx2tf_check.io_kept(art, onnx_art, ctx.layout)
    info["static_shapes"] = all(isinstance(d, int) for t in art.inputs + art.outputs for d in t.shape)
    if ctx.layout:
        info["layout_changes"] = ctx.layout
    return art.replace(info=info)


def scope_safe_names(model) -> dict:
    """Rename nodes whose names TensorFlow refuses as scope names (e.g. paddle2onnx's 'Softmax@0':
    onnx2tf names each TF op after its ONNX node). Node names carry no meaning in ONNX; the map
    {new: old} puts the original names back into error messages."""
    renamed, taken = {}, {n.name for n in model.graph.node}
    for n in model.graph.node:
        if n.name and not SCOPE_NAME.match(n.name):
            new = re.sub(r"[^A-Za-z0-9_./>-]", "_", n.name)
            while new in taken:
                new += "_"
            taken.add(new)
            renamed[new] = n.name
            n.name = new
    return renamed


def _child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", NO_PROXY="*", NO_COLOR="1",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    return env


# A failure inside one of onnx2tf's optional steps, and the option that skips that step (tried once,
# recorded; the TF-Lite model is checked against onnxruntime afterwards either way).
RETRIES = (
    # strict mode compares every broadcast op with onnxruntime to pick a transposition; on PP-OCRv4's
    # detector it crashes on a constant input ('NoneType' object has no attribute 'shape' at p2o.Add.4)
    ("correction_process_for_accuracy_errors", {"disable_strict_mode": True},
     "onnx2tf's strict-mode accuracy correction failed"),
)


def _run(job: Job, out: Path) -> dict:
    t0 = time.perf_counter()
    proc = job.call("out")
    retried = []
    for marker, extra, why in RETRIES:
        if proc.returncode != 0 and marker in proc.stdout + proc.stderr and \
                not all(job.kwargs.get(k) == v for k, v in extra.items()):
            first = onnx2tf_log.failure(proc.stdout, proc.stderr, job.graph_file, job.renamed)
            log.info("onnx2tf: %s (%s); trying again with %s", why, first, extra)
            retried.append({"why": f"{why}: {first}", "options": extra})
            job.kwargs = {**job.kwargs, **extra}
            proc = job.call("out")
    seconds = time.perf_counter() - t0
    produced = job.work / "out" / "model_float32.tflite"
    flex = [ln.split(" ", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("EDGEPACK_FLEX ")]
    if flex:
        raise ConversionError(f"ONNX -> TF-Lite (onnx2tf): {onnx2tf_log.flex_error(flex[0], job.graph_file)}",
                              "use --format onnx, or replace the op in the model")
    if proc.returncode != 0 or not produced.is_file():
        failure = onnx2tf_log.failure(proc.stdout, proc.stderr, job.graph_file, job.renamed)
        raise ConversionError(f"ONNX -> TF-Lite (onnx2tf) failed: {failure}",
                              "use --format onnx (or intel-cpu's OpenVINO), which runs the graph as given; "
                              "--debug logs onnx2tf's output")
    versions, reshaped = {}, []
    for line in proc.stdout.splitlines():
        if line.startswith("EDGEPACK_VERSIONS "):
            versions = json.loads(line.split(" ", 1)[1])
        elif line.startswith(("EDGEPACK_RESHAPED ", "EDGEPACK_TRANSPOSED ")):
            how, rest = line.split(" ", 1)
            name, have, want = json.loads(rest)
            entry = {"output": name, "onnx2tf_shape": have, "shape": want,
                     "by": "transpose" if how == "EDGEPACK_TRANSPOSED" else "reshape"}
            if entry not in reshaped:            # printed once per trace of the serving function
                reshaped.append(entry)
    shutil.copyfile(produced, out)
    info = {"route": "onnx2tf (isolated venv .venv-onnx2tf, subprocess, no network)",
            "seconds": round(seconds, 3), "toolchain": versions,
            "onnx2tf_options": {k: v for k, v in job.kwargs.items() if k != "non_verbose"}}
    if retried:
        info["onnx2tf_retried"] = retried
    if reshaped:
        info["outputs_reshaped"] = reshaped
    if job.renamed:
        info["renamed_nodes"] = len(job.renamed)
    return info
