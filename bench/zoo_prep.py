"""Graph-preparation measurements on the real-model zoo (issue 10), with no edits to packager/.

    .venv/bin/python bench/zoo_prep.py simplify|shapes|onnx2tf|int8|qdq|all [--only yolov8s-fall,...]

Needs `bash scripts/setup-zoo.sh` and the simplifiers in scratch folders (never in .venv):
    .venv/bin/pip install --no-deps --target /tmp/prep/slim onnxslim==0.1.98
    .venv/bin/pip install --no-deps --target /tmp/prep/sim  onnxsim==0.8.1
(override with ZOO_PREP_SLIM / ZOO_PREP_SIM). Each model is first fixed to the shapes of its sample
data (batch 1); work files go to $ZOO_PREP_WORK (default /tmp/zoo_prep); results are merged into
bench/results/zoo_prep.json (git-ignored) and summarized in bench/zoo_prep.md by `report`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "zoo"))
sys.path.insert(0, str(ROOT))
import zoo  # noqa: E402

WORK = Path(os.environ.get("ZOO_PREP_WORK", "/tmp/zoo_prep"))
RESULTS = ROOT / "bench" / "results" / "zoo_prep.json"
TOOLS = {"onnxslim": os.environ.get("ZOO_PREP_SLIM", "/tmp/prep/slim"),
         "onnxsim": os.environ.get("ZOO_PREP_SIM", "/tmp/prep/sim")}
O2TF_PY = ROOT / ".venv-onnx2tf" / "bin" / "python"
ONNX_CASES = ["yolov8s-fall", "ppocr-det", "ppocr-rec", "ppocr-cls", "silero-vad", "minilm-onnx"]


# ----------------------------------------------------------------------------- helpers

def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def save(section: str, name: str, value) -> None:
    r = load_results()
    r.setdefault(section, {})[name] = value
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=1, sort_keys=True, default=str))


def session(path, threads: int = 2):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def graph_inputs(model):
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def samples(case: zoo.Case, which: str = "inputs", limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """The case's .npz as per-sample feeds (batch 1), read with edgepack's documented layout."""
    import onnx
    model = onnx.load(case.resolve()["source"], load_external_data=False)
    ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in graph_inputs(model)}
    path = case.resolve()["inputs" if which == "inputs" else "calibration"]
    data = dict(np.load(path))
    n = len(next(iter(data.values())))
    out = []
    for k in range(n if limit is None else min(n, limit)):
        feed = {}
        for name, arr in data.items():
            # np.asarray: arr[k] of an (N,) array is a numpy scalar, which onnxruntime refuses
            feed[name] = np.asarray(arr[k]) if arr.ndim == ranks[name] + 1 else arr[k:k + 1]
        out.append(feed)
    return out


# Axes that cannot be fixed (measured): silero's audio length. Fixed to 576, ORT refuses the model
# (the If's 8 kHz branch is type-checked with 576 samples: "LSTM: First input tensor must have rank 3");
# with sr made a constant instead, ORT's own If inlining fails ("... is not If node's input") and
# onnx shape inference segfaults. Batch 1 and the state are fixed.
KEEP_SYMBOLIC = {"silero-vad": {"input": (1,)}}


def fixed_path(name: str) -> Path:
    return WORK / name / "fixed.onnx"


def fix_shapes(case: zoo.Case) -> Path:
    """The model with every input fixed to its sample's shape; outputs and value_info left to inference."""
    import onnx
    out = fixed_path(case.name)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    m = onnx.load(case.resolve()["source"])
    feed = samples(case, limit=1)[0]
    keep = KEEP_SYMBOLIC.get(case.name, {})
    for i in list(graph_inputs(m)):
        shape = feed[i.name].shape
        t = i.type.tensor_type
        t.ClearField("shape")
        t.shape.SetInParent()
        for k, d in enumerate(shape):
            if k in keep.get(i.name, ()):
                t.shape.dim.add().dim_param = f"{i.name}_dim{k}"
            else:
                t.shape.dim.add().dim_value = int(d)
    for o in m.graph.output:
        t = o.type.tensor_type
        if t.HasField("shape"):
            for d in t.shape.dim:
                if not d.dim_value:
                    d.Clear()
    strip_subgraph_shapes(m.graph)
    onnx.save(m, str(out))
    return out


def strip_subgraph_shapes(graph, top: bool = True) -> None:
    """Drop value_info everywhere and the output shapes of If/Loop bodies: silero's subgraphs carry
    stale shapes that contradict a fixed input (ORT then refuses to load it)."""
    del graph.value_info[:]
    if not top:
        for o in graph.output:
            if o.type.HasField("tensor_type") and o.type.tensor_type.HasField("shape"):
                for d in o.type.tensor_type.shape.dim:
                    d.Clear()
    for n in graph.node:
        for a in n.attribute:
            if a.g.node:
                strip_subgraph_shapes(a.g, False)
            for g in a.graphs:
                strip_subgraph_shapes(g, False)


def run_model(path, feeds: list[dict]) -> list[list[np.ndarray]]:
    s = session(path)
    names = [i.name for i in s.get_inputs()]
    return [s.run(None, {k: f[k] for k in names}) for f in feeds]


def max_abs(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> float:
    return float(max(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()
                     for ra, rb in zip(a, b) for x, y in zip(ra, rb)))


def cosine(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    d = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / d) if d else float("nan")


def node_count(path) -> dict:
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"nodes": len(m.graph.node), "Constant": ops.get("Constant", 0),
            "Shape": ops.get("Shape", 0), "If": ops.get("If", 0)}


# ----------------------------------------------------------------------------- simplify

_SIMPLIFY_WORKER = r"""
import sys, time, json, onnx
tool, src, dst = sys.argv[1:4]
m = onnx.load(src)
t0 = time.perf_counter()
if tool == "onnxslim":
    import onnxslim
    out = onnxslim.slim(m)
    ver = onnxslim.__version__
else:
    import onnxsim
    out, ok = onnxsim.simplify(m)
    ver = onnxsim.__version__
    if not ok:
        raise SystemExit("onnxsim: check failed")
secs = time.perf_counter() - t0
onnx.save(out, dst)
print("RESULT " + json.dumps({"seconds": round(secs, 2), "version": ver}))
"""


def simplify(case: zoo.Case) -> dict:
    fixed = fix_shapes(case)
    feeds = samples(case)
    ref = run_model(case.resolve()["source"], feeds)
    res = {"fixed": node_count(fixed), "fixed_vs_original_max_abs": max_abs(ref, run_model(fixed, feeds))}
    for tool, site in TOOLS.items():
        dst = WORK / case.name / f"{tool}.onnx"
        env = dict(os.environ, PYTHONPATH=site)
        cmd = [sys.executable, "-c", _SIMPLIFY_WORKER, tool, str(fixed), str(dst)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - t0
        r = {"wall_seconds": round(wall, 1)}
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode or not line:
            r["failed"] = (p.stderr.strip().splitlines() or ["?"])[-1][:300]
        else:
            r.update(json.loads(line[0][7:]))
            r.update(node_count(dst))
            try:
                r["max_abs_vs_original"] = max_abs(ref, run_model(dst, feeds))
            except Exception as exc:  # noqa: BLE001
                r["ort_failed"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        res[tool] = r
    save("simplify", case.name, res)
    return res


# ----------------------------------------------------------------------------- shape inference

def shapes(case: zoo.Case) -> dict:
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    from onnxruntime.quantization.shape_inference import quant_pre_process
    res = {}
    variants = {"original": Path(case.resolve()["source"]), "fixed": fix_shapes(case)}
    for tool in TOOLS:
        p = WORK / case.name / f"{tool}.onnx"
        if p.is_file():
            variants[f"fixed+{tool}"] = p
    for label, path in variants.items():
        r = {}
        m = onnx.load(str(path))
        t0 = time.perf_counter()
        try:
            out = SymbolicShapeInference.infer_shapes(m, auto_merge=True)
            known = sum(1 for v in out.graph.value_info if v.type.tensor_type.HasField("shape"))
            r["symbolic"] = f"ok ({known} value_info)"
        except Exception as exc:  # noqa: BLE001
            r["symbolic"] = f"FAIL {type(exc).__name__}: {str(exc)[:160]}"
        r["symbolic_seconds"] = round(time.perf_counter() - t0, 2)
        # quant_pre_process: does it run its optimization or skip it? (it logs why) -- in a temp cwd
        buf = io.StringIO()
        h = logging.StreamHandler(buf)
        logging.getLogger().addHandler(h)
        old = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            try:
                dst = Path(tmp) / "pre.onnx"
                with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
                    quant_pre_process(str(path), str(dst), skip_optimization=False, skip_onnx_shape=False,
                                      skip_symbolic_shape=False, auto_merge=True)
                r["pre_process"] = "ran" if dst.is_file() else "no output"
                if dst.is_file():
                    r["pre_process_nodes"] = node_count(dst)["nodes"]
                left = sorted(os.listdir(tmp))
                r["pre_process_left_in_cwd"] = [f for f in left if f != "pre.onnx"]
            except Exception as exc:  # noqa: BLE001
                r["pre_process"] = f"FAIL {type(exc).__name__}: {str(exc)[:160]}"
            finally:
                os.chdir(old)
                logging.getLogger().removeHandler(h)
        logs = [ln for ln in buf.getvalue().splitlines() if re.search(r"skip|fail|Incomplete|error", ln, re.I)]
        r["pre_process_log"] = sorted(set(ln[:200] for ln in logs))[:4]
        res[label] = r
    save("shapes", case.name, res)
    return res


# ----------------------------------------------------------------------------- onnx2tf

def onnx2tf(case: zoo.Case, variants=("onnxslim", "onnxsim", "fixed")) -> dict:
    import onnx
    from packager.convert.onnx2tf_route import _CHILD
    res = {}
    feed = samples(case, limit=1)[0]
    for v in variants:
        src = fix_shapes(case) if v == "fixed" else WORK / case.name / f"{v}.onnx"
        if not src.is_file():
            continue
        work = WORK / case.name / f"o2tf-{v}"
        subprocess.run(["rm", "-rf", str(work)])
        work.mkdir(parents=True)
        m = onnx.load(str(src), load_external_data=False)
        ops = {n.name: n.op_type for n in m.graph.node}
        custom, keep = [], []
        for i in graph_inputs(m):
            p = work / f"in_{len(custom)}.npy"
            np.save(p, np.ascontiguousarray(feed[i.name]))
            custom.append([i.name, str(p)])
            if feed[i.name].ndim == 3 or feed[i.name].ndim == 5:
                keep.append(i.name)
        kw = {"input_onnx_file_path": str(src), "output_folder_path": str(work / "out"),
              "copy_onnx_input_output_names_to_tflite": True, "non_verbose": False,
              "custom_input_op_name_np_data_path": custom}
        if keep:
            kw["keep_ncw_or_nchw_or_ncdhw_input_names"] = keep
        env = {k: val for k, val in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", NO_COLOR="1")
        t0 = time.perf_counter()
        try:
            p = subprocess.run([str(O2TF_PY), "-c", _CHILD, json.dumps(kw)], cwd=str(work), env=env,
                               capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
            rc, text = p.returncode, p.stdout + "\n" + p.stderr
        except subprocess.TimeoutExpired:
            rc, text = None, ""
        secs = round(time.perf_counter() - t0, 1)
        (work / "log.txt").write_text(text)
        clean = re.sub(r"\x1b\[[0-9;]*m", "", text)
        produced = sorted((work / "out").glob("*_float32.tflite"))
        r = {"rc": rc, "seconds": secs}
        if rc == 0 and produced:
            r["result"] = "ok"
            r.update(tflite_vs_onnx(produced[0], src, case))
        else:
            names = re.findall(r"onnx_op_name: (\S+)", clean)
            stopped = names[-1] if names else None
            errs = [ln.strip() for ln in clean.splitlines()
                    if re.search(r"Error|error:|must be|Exception|Dimension", ln) and "Read this" not in ln]
            r.update(result="FAIL" if rc is not None else "timeout", stopped_at=stopped,
                     stopped_op=ops.get(stopped or "", ops.get(re.sub("^wa/", "/", stopped or ""), None)),
                     error=(errs[-1] if errs else clean.strip().splitlines()[-1] if clean.strip() else "")[:300])
        res[v] = r
    save("onnx2tf", case.name, res)
    return res


def tflite_vs_onnx(tfl: Path, onnx_path: Path, case: zoo.Case) -> dict:
    """Run the float32 TF-Lite (through its serving signature; NHWC for 4-D inputs) against ORT."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return {}
    feeds = samples(case)
    ref = run_model(onnx_path, feeds)
    onames = [o.name for o in session(onnx_path).get_outputs()]
    it = Interpreter(model_path=str(tfl))
    if not it.get_signature_list():
        # no SignatureDef (seen: PP-OCRv4 rec): one input, outputs in ONNX order
        it.allocate_tensors()
        ind, outd = it.get_input_details(), it.get_output_details()

        def run(**kw):
            for d, a in zip(ind, kw.values()):
                it.set_tensor(d["index"], a)
            it.invoke()
            return {on: it.get_tensor(d["index"]) for on, d in zip(onames, outd)}
        details = {i.name: {"shape": d["shape"], "dtype": d["dtype"]}
                   for i, d in zip(session(onnx_path).get_inputs(), ind)}
        onames = [o.name for o in session(onnx_path).get_outputs()]
    else:
        run = it.get_signature_runner()
        details = run.get_input_details()
    onames = [o.name for o in session(onnx_path).get_outputs()]
    worst = {}
    for f, r in zip(feeds, ref):
        kw = {}
        for name, d in details.items():
            a = f[name]
            if a.ndim == 4 and tuple(d["shape"]) != a.shape:
                a = a.transpose(0, 2, 3, 1)
            kw[name] = a.astype(d["dtype"])
        got = run(**kw)
        for on, rv in zip(onames, r):
            g = got.get(on)
            if g is None or g.shape != rv.shape:
                worst[on] = {"note": f"shape {None if g is None else g.shape} vs {rv.shape}"}
                continue
            c, m = cosine(g, rv), float(np.abs(g - rv).max())
            w = worst.setdefault(on, {"cosine": 1.0, "max_abs": 0.0})
            if "cosine" in w:
                w["cosine"], w["max_abs"] = min(w["cosine"], c), max(w["max_abs"], m)
    return {"tflite_vs_ort": worst}


def o2tf_check(case: zoo.Case) -> dict:
    """Re-compare the TF-Lite files an earlier `onnx2tf` run produced."""
    r = load_results().get("onnx2tf", {}).get(case.name, {})
    for v, res in r.items():
        if res.get("result") == "ok":
            src = fix_shapes(case) if v == "fixed" else WORK / case.name / f"{v}.onnx"
            tfl = sorted((WORK / case.name / f"o2tf-{v}" / "out").glob("*_float32.tflite"))[0]
            res.update(tflite_vs_onnx(tfl, src, case))
    save("onnx2tf", case.name, r)
    return r


# ----------------------------------------------------------------------------- int8

class Reader:
    def __init__(self, feeds):
        self.feeds, self.i = feeds, 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0

    def __iter__(self):   # qdq_loss_debug.collect_activations iterates the reader
        while (item := self.get_next()) is not None:
            yield item


RECIPES = {
    "static_minmax_pertensor": dict(kind="static", per_channel=False, method="MinMax"),
    "static_minmax_perchannel": dict(kind="static", per_channel=True, method="MinMax"),
    "static_entropy_perchannel": dict(kind="static", per_channel=True, method="Entropy"),
    "static_percentile_perchannel": dict(kind="static", per_channel=True, method="Percentile"),
    "static_minmax_perchannel_convmatmul": dict(kind="static", per_channel=True, method="MinMax",
                                                ops=["Conv", "MatMul", "Gemm"]),
    "dynamic_pertensor": dict(kind="dynamic", per_channel=False),
    "dynamic_perchannel": dict(kind="dynamic", per_channel=True),
}


def prepared(case: zoo.Case) -> Path:
    """The graph the quantizer gets: fixed shapes + onnxslim (falls back to fixed) + symbolic shapes."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    out = WORK / case.name / "prepared.onnx"
    if out.is_file():
        return out
    src = WORK / case.name / "onnxslim.onnx"
    if not src.is_file():
        src = fix_shapes(case)
    m = onnx.load(str(src))
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        # measured: per-channel QDQ on the opset-12 paddle2onnx det/rec writes DequantizeLinear(axis=...)
        # for biases, which opset 12 lacks ("Unrecognized attribute: axis"): the graph is invalid
        from onnx import version_converter
        m = version_converter.convert_version(m, 13)
    try:
        m = SymbolicShapeInference.infer_shapes(m, auto_merge=True)
    except Exception:  # noqa: BLE001
        m = onnx.shape_inference.infer_shapes(m)
    onnx.save(m, str(out))
    return out


def quantize(src: Path, dst: Path, recipe: dict, calib: list[dict]) -> None:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)   # the quantizer writes augmented models / external data into the cwd
        try:
            buf = io.StringIO()
            with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
                if recipe["kind"] == "dynamic":
                    quantize_dynamic(str(src), str(dst), per_channel=recipe["per_channel"],
                                     weight_type=QuantType.QInt8)
                else:
                    quantize_static(str(src), str(dst), Reader(calib), quant_format=QuantFormat.QDQ,
                                    per_channel=recipe["per_channel"], activation_type=QuantType.QInt8,
                                    weight_type=QuantType.QInt8,
                                    calibrate_method=getattr(CalibrationMethod, recipe["method"]),
                                    op_types_to_quantize=recipe.get("ops"),
                                    extra_options={"CalibTensorRangeSymmetric": False})
        finally:
            os.chdir(old)


def int8(case: zoo.Case, recipes=None) -> dict:
    src = prepared(case)
    feeds, calib = samples(case), samples(case, "calibration")
    ref = run_model(src, feeds)
    onames = [o.name for o in session(src).get_outputs()]
    res = {}
    for name, recipe in RECIPES.items():
        if recipes and name not in recipes:
            continue
        dst = WORK / case.name / f"int8-{name}.onnx"
        t0 = time.perf_counter()
        try:
            quantize(src, dst, recipe, calib)
            got = run_model(dst, feeds)
        except Exception as exc:  # noqa: BLE001
            res[name] = {"failed": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        r = {"seconds": round(time.perf_counter() - t0, 1)}
        for k, on in enumerate(onames):
            cos = [cosine(g[k], rr[k]) for g, rr in zip(got, ref)]
            r[on] = {"cosine_min": round(min(cos), 5), "cosine_all": round(cosine(
                np.concatenate([g[k].ravel() for g in got]), np.concatenate([rr[k].ravel() for rr in ref])), 5),
                "max_abs": round(max_abs([[g[k]] for g in got], [[rr[k]] for rr in ref]), 4)}
            if case.name.startswith("yolo") and ref[0][k].ndim == 3:
                box = [cosine(g[k][:, :4], rr[k][:, :4]) for g, rr in zip(got, ref)]
                cls = [cosine(g[k][:, 4:], rr[k][:, 4:]) for g, rr in zip(got, ref)]
                r[on]["box_rows_cosine_min"] = round(min(box), 5)
                r[on]["score_rows_cosine_min"] = round(min(cls), 5)
                r[on]["score_rows_max_abs"] = round(float(max(np.abs(g[k][:, 4:] - rr[k][:, 4:]).max()
                                                          for g, rr in zip(got, ref))), 4)
            if case.name.startswith("minilm") and ref[0][k].ndim == 2:
                r[on]["note"] = "cosine_min over the 8 real sentences"
        res[name] = r
        save("int8", case.name, res)
    return res


# ----------------------------------------------------------------------------- qdq_loss_debug

def qdq(case: zoo.Case, recipe: str = "static_minmax_perchannel", threshold_db: float = 20.0) -> dict:
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)
    src = prepared(case)
    q = WORK / case.name / f"int8-{recipe}.onnx"
    if not q.is_file():
        quantize(src, q, RECIPES[recipe], samples(case, "calibration"))
    feeds = samples(case, limit=4)
    faug, qaug = WORK / case.name / "aug-float.onnx", WORK / case.name / f"aug-{recipe}.onnx"
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            modify_model_output_intermediate_tensors(str(src), str(faug))
            modify_model_output_intermediate_tensors(str(q), str(qaug))
            fa = collect_activations(str(faug), Reader(feeds))
            qa = collect_activations(str(qaug), Reader(feeds))
        finally:
            os.chdir(old)
    match = create_activation_matching(qa, fa)
    err = compute_activation_error(match)
    m = onnx.load(str(src), load_external_data=False)
    producer, order = {}, []
    for n in m.graph.node:
        for o in n.output:
            producer[o] = (n.name, n.op_type)
            order.append(o)
    rows = []
    for t in order:
        if t in err:
            e = err[t]
            rows.append({"tensor": t, "node": producer[t][0], "op": producer[t][1],
                         "xmodel_sqnr_db": round(float(e.get("xmodel_err", float("nan"))), 2),
                         "qdq_sqnr_db": round(float(e.get("qdq_err", float("nan"))), 2) if "qdq_err" in e else None})
    first = next((r for r in rows if r["xmodel_sqnr_db"] < threshold_db), None)
    # the largest single drops of the cumulative SQNR between a tensor and its producer's inputs
    drops = []
    xm = {r["tensor"]: r["xmodel_sqnr_db"] for r in rows}
    for n in m.graph.node:
        for o in n.output:
            if o in xm:
                prev = [xm[i] for i in n.input if i in xm]
                base = min(prev) if prev else None
                if base is not None and np.isfinite(base) and np.isfinite(xm[o]):
                    drops.append({"node": n.name, "op": n.op_type, "drop_db": round(base - xm[o], 2),
                                  "sqnr_db": xm[o]})
    drops.sort(key=lambda d: -d["drop_db"])
    worst_local = sorted([r for r in rows if r["qdq_sqnr_db"] is not None and np.isfinite(r["qdq_sqnr_db"])],
                         key=lambda r: r["qdq_sqnr_db"])[:5]
    out_rows = [r for r in rows if r["tensor"] in {o.name for o in m.graph.output}]
    res = {"recipe": recipe, "tensors_compared": len(rows), "threshold_db": threshold_db,
           "first_below_threshold": first, "largest_drops": drops[:6], "worst_local_qdq": worst_local,
           "outputs": out_rows}
    save("qdq", case.name, res)
    return res


# ----------------------------------------------------------------------------- report

def _f(x, nd=5):
    if x is None:
        return ""
    if isinstance(x, float):
        if x != x:
            return "nan (all 0)"
        return f"{x:.{nd}g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.{nd}f}".rstrip("0").rstrip(".")
    return str(x)


def report() -> str:
    r = load_results()
    out = ["# Graph preparation and int8 on the real-model zoo (measured)", "",
           "Numbers from `bench/zoo_prep.py` (raw: bench/results/zoo_prep.json). Each model fixed to the shapes of "
           "its sample data (batch 1; silero's audio length stays symbolic, see KEEP_SYMBOLIC). Host: 2 shared cores, "
           "loaded by other jobs: seconds are indicative.", ""]
    out += ["## Simplifiers (`bench/zoo_prep.py simplify`)", "",
            "| model | nodes fixed | onnxslim 0.1.98: s / nodes / max abs vs original | onnxsim 0.8.1: s / nodes / max abs |",
            "|---|---|---|---|"]
    for k, v in r.get("simplify", {}).items():
        if "fixed" not in v:
            out.append(f"| {k} | {v} | | |"); continue
        cells = []
        for t in ("onnxslim", "onnxsim"):
            x = v.get(t, {})
            cells.append(f"FAIL {x['failed']}" if "failed" in x else
                         f"{x.get('seconds')} s / {x.get('nodes')} ({x.get('Constant')} Constant) / {_f(x.get('max_abs_vs_original'))}")
        out.append(f"| {k} | {v['fixed']['nodes']} ({v['fixed']['Constant']} Constant, {v['fixed']['Shape']} Shape) | "
                   + " | ".join(cells) + " |")
    out += ["", "## ORT symbolic shape inference (auto_merge=True) and quant_pre_process (`shapes`)", "",
            "| model | variant | SymbolicShapeInference | quant_pre_process (auto_merge=True) | nodes after |", "|---|---|---|---|---|"]
    for k, v in r.get("shapes", {}).items():
        for var, x in v.items():
            out.append(f"| {k} | {var} | {x.get('symbolic')} | {x.get('pre_process')} | {x.get('pre_process_nodes', '')} |")
    out += ["", "## onnx2tf 1.29.24 on the static graph (`onnx2tf`; edgepack's no-network child, verbose)", "",
            "| model | graph given | result | s | stopped at (ONNX node, op) | error | TF-Lite fp32 vs ORT (min cosine, max abs) |",
            "|---|---|---|---|---|---|---|"]
    for k, v in r.get("onnx2tf", {}).items():
        for var, x in v.items():
            tv = "; ".join(f"{n}: {_f(w.get('cosine'))}, {_f(w.get('max_abs'), 3)}" if "cosine" in w else f"{n}: {w.get('note')}"
                           for n, w in (x.get("tflite_vs_ort") or {}).items())
            out.append(f"| {k} | {var} | {x.get('result')} | {x.get('seconds')} | {x.get('stopped_at') or ''} "
                       f"{('(' + x['stopped_op'] + ')') if x.get('stopped_op') else ''} | "
                       f"{(x.get('error') or '').replace('|', '/')[:160]} | {tv} |")
    out += ["", "## int8 recipes (`int8`): cosine vs fp32 (min over the 8 samples) per output", "",
            "Quantized graph: fixed + onnxslim + symbolic shapes. Static = quantize_static QDQ, int8 activations and "
            "weights, 32 calibration samples (VAD 64); dynamic = quantize_dynamic, int8 weights. YOLO: box rows 0-3 "
            "vs class-score rows 4-5 of output0 separately; `nan (all 0)` = the int8 score rows are all zero.", "",
            "| model | recipe | s | per output: cosine_min [boxes / scores, score max abs] |", "|---|---|---|---|"]
    for k, v in r.get("int8", {}).items():
        for rec, x in v.items():
            if "failed" in x:
                out.append(f"| {k} | {rec} | | FAIL {x['failed'][:150]} |"); continue
            cells = []
            for on, m in x.items():
                if not isinstance(m, dict):
                    continue
                c = f"{on.split('/')[-1]} {_f(m['cosine_min'])}"
                if "box_rows_cosine_min" in m:
                    c += f" [boxes {_f(m['box_rows_cosine_min'])} / scores {_f(m['score_rows_cosine_min'])}, {_f(m['score_rows_max_abs'], 3)}]"
                cells.append(c)
            out.append(f"| {k} | {rec} | {x.get('seconds')} | {'; '.join(cells)} |")
    out += ["", "## qdq_loss_debug (`qdq`): where static int8 (per-channel MinMax, edgepack's default) breaks", "",
            "xmodel SQNR = float tensor vs the int8 model's dequantized tensor (cumulative); qdq SQNR = the tensor "
            "before vs after its own QDQ pair (local). First tensor in graph order under 20 dB; largest single drops.", "",
            "| model | tensors | first < 20 dB (node, op, dB) | largest drops (node op: -dB -> dB) | outputs (dB) |", "|---|---|---|---|---|"]
    for k, x in r.get("qdq", {}).items():
        if "crashed" in x:
            out.append(f"| {k} | FAIL {x['crashed'][:200]} | | | |"); continue
        f = x.get("first_below_threshold")
        fs = f"{f['node']} ({f['op']}) {f['xmodel_sqnr_db']}" if f else "none"
        drops = "; ".join(f"{d['node']} {d['op']}: -{d['drop_db']} -> {d['sqnr_db']}" for d in x.get("largest_drops", [])[:4])
        outs = "; ".join(f"{o['tensor'].split('/')[-1]} {o['xmodel_sqnr_db']}" for o in x.get("outputs", []))
        out.append(f"| {k} | {x.get('tensors_compared')} | {fs} | {drops} | {outs} |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["simplify", "shapes", "onnx2tf", "o2tf_check", "int8", "qdq", "all", "report"])
    ap.add_argument("--only", default="")
    ap.add_argument("--recipes", default="")
    ap.add_argument("--variants", default="onnxslim,onnxsim,fixed")
    a = ap.parse_args()
    if a.what == "report":
        md = report()
        (ROOT / "bench" / "zoo_prep.md").write_text(md)
        print(md)
        return
    names = [s for s in a.only.split(",") if s] or ONNX_CASES
    for name in names:
        case = zoo.BY_NAME[name]
        steps = ["simplify", "shapes", "onnx2tf", "int8", "qdq"] if a.what == "all" else [a.what]
        for step in steps:
            t0 = time.perf_counter()
            print(f"== {name} {step}", file=sys.stderr, flush=True)
            try:
                if step == "o2tf_check":
                    r = o2tf_check(case)
                elif step == "onnx2tf":
                    r = onnx2tf(case, tuple(a.variants.split(",")))
                elif step == "int8":
                    r = int8(case, [s for s in a.recipes.split(",") if s] or None)
                else:
                    r = globals()[step](case)
            except Exception as exc:  # noqa: BLE001
                r = {"crashed": f"{type(exc).__name__}: {str(exc)[:300]}"}
                save(step, name, r)
            print(json.dumps(r, default=str)[:3000], flush=True)
            print(f"   {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
