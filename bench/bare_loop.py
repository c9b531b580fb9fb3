"""The limit the agent's probe is held to: a bare timed loop over an onnxruntime session
(or a LiteRT Interpreter, for a TF-Lite bundle).

    python bench/bare_loop.py BUNDLE [--mode loop|import] [--runs N --seconds S ...]

Standalone on purpose (stdlib + numpy + the runtime, nothing of edgepack or bench), so that its peak
RSS is that of a process that only loads the runtime and the model and runs it. It opens the
session exactly as the agent does (same intra/inter threads, graph optimization level, provider)
from the bundle's manifest, feeds the same first reference input, and follows the same schedule
(one first run, warmup by count and time, runs by count and time) with nothing else in the loop.
Prints one JSON object.
"""
import json
import os
import resource
import sys
import time

T_START = time.perf_counter()


def main(argv):
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("bundle")
    p.add_argument("--mode", choices=["loop", "import"], default="loop")
    for k in ("warmup_runs", "runs"):
        p.add_argument("--" + k.replace("_", "-"), type=int, default=None)
    for k in ("warmup_seconds", "seconds", "max_seconds"):
        p.add_argument("--" + k.replace("_", "-"), type=float, default=None)
    a = p.parse_args(argv)

    with open(os.path.join(a.bundle, "manifest.json")) as f:
        m = json.load(f)
    litert = m.get("runtime") == "litert"
    t0 = time.perf_counter()
    import numpy as np
    if litert:
        from ai_edge_litert import interpreter as ort
    else:
        import onnxruntime as ort
    import_s = time.perf_counter() - t0
    out = {"import_seconds": import_s, "runtime": m.get("runtime")}
    if a.mode == "import":
        out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(out))
        return 0

    rs = m.get("runtime_settings") or {}
    probe = dict(m.get("probe") or {})
    for k in ("warmup_runs", "runs", "warmup_seconds", "seconds", "max_seconds"):
        if getattr(a, k) is not None:
            probe[k] = getattr(a, k)
    threads = int(rs.get("threads") or 0)
    model = os.path.join(a.bundle, *m["model"]["path"].split("/"))
    vec = m["vectors"]
    with np.load(os.path.join(a.bundle, vec.get("path", "vectors.npz"))) as d:
        feeds = {name: d[key][0] for name, key in vec["inputs"].items()}
    t0 = time.perf_counter()
    if litert:
        # the Interpreter API, as the agent uses it: set every input, invoke, read every output
        it = ort.Interpreter(model_path=model, **({"num_threads": threads} if threads > 0 else {}))
        it.allocate_tensors()
        ins = [(d["index"], feeds[name]) for d, name in zip(it.get_input_details(), feeds)]
        outs = [d["index"] for d in it.get_output_details()]
        set_tensor, invoke, get_tensor = it.set_tensor, it.invoke, it.get_tensor

        def run(_names, _feeds):
            for idx, value in ins:
                set_tensor(idx, value)
            invoke()
            return [get_tensor(i) for i in outs]
        intra = threads
    else:
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        opts.graph_optimization_level = levels.get(str(rs.get("graph_optimization") or "all").lower(),
                                                   levels["all"])
        opts.log_severity_level = 3
        sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        run = sess.run
        intra = opts.intra_op_num_threads
    load_s = time.perf_counter() - t0
    clock = time.perf_counter

    t0 = clock()
    run(None, feeds)
    first = clock() - t0

    def loop(count, seconds, cap):
        times = []
        start = clock()
        while True:
            t0 = clock()
            run(None, feeds)
            t1 = clock()
            times.append(t1 - t0)
            if (len(times) >= count and t1 - start >= seconds) or t1 - start >= cap:
                return times, t1 - start

    cap = float(probe.get("max_seconds", 30.0))
    warm, warm_s = loop(int(probe.get("warmup_runs", 10)), float(probe.get("warmup_seconds", 0.5)), cap / 2)
    times, meas_s = loop(max(1, int(probe.get("runs", 100))), float(probe.get("seconds", 1.0)), cap)
    ms = sorted(t * 1000.0 for t in times)
    n = len(ms)
    pos = (n - 1) * 0.5
    lo = int(pos)
    p50 = ms[lo] + (ms[min(lo + 1, n - 1)] - ms[lo]) * (pos - lo)
    out.update(load_seconds=load_s, first_run_ms=first * 1000.0, warmup_runs=len(warm),
               warmup_seconds=warm_s, measure_seconds=meas_s, runs=n, p50_ms=p50,
               mean_ms=sum(ms) / n, min_ms=ms[0], max_ms=ms[-1],
               threads=threads if threads > 0 else "default",
               intra_op_num_threads=intra,
               peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               in_process_seconds=time.perf_counter() - T_START)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
