"""The self-test: integrity, load, parity against the original model's vectors, latency probe."""
import os
import time

import numpy as np

from . import manifest as mf
from . import parity as par
from . import probe as prb
from . import report as rep
from . import runtimes

EXIT_PASS, EXIT_FAIL, EXIT_UNUSABLE = 0, 1, 2


def load_vectors(bundle_dir, manifest):
    vec = manifest.get("vectors") or {}
    path = os.path.join(bundle_dir, vec.get("path", "vectors.npz"))
    with np.load(path, allow_pickle=False) as data:
        inputs = dict((name, data[key]) for name, key in vec["inputs"].items())
        outputs = dict((name, data[key]) for name, key in vec["outputs"].items())
    return inputs, outputs, int(vec.get("samples", 0))


def _fail(report, status, reason):
    report["verdict"] = {"passed": False, "status": status, "reasons": [reason]}
    return report


def run(bundle_dir, probe_overrides=None, runtime_overrides=None):
    """Return (report, exit code). Never raises for a bad bundle: the report says why.

    runtime_overrides: runtime settings that replace the manifest's (threads, providers, delegates,
    devices): how `edgepack tune` measures one bundle under several settings."""
    started = time.perf_counter()
    report = rep.new_report(bundle_dir)
    try:
        report = _run(bundle_dir, report, probe_overrides or {}, runtime_overrides or {})
    except mf.BundleUnusable as exc:
        _fail(report, "unusable", str(exc))
    except runtimes.RuntimeMissing as exc:
        _fail(report, "unusable", str(exc))
    except runtimes.RuntimeLoadError as exc:
        _fail(report, "fail", str(exc))
    report["finished"] = rep.now_iso()
    report["wall_seconds"] = time.perf_counter() - started
    report["peak_rss_bytes"] = rep.peak_rss_bytes()
    status = report["verdict"]["status"]
    code = {"pass": EXIT_PASS, "fail": EXIT_FAIL}.get(status, EXIT_UNUSABLE)
    return report, code


def _run(bundle_dir, report, probe_overrides, runtime_overrides):
    manifest = mf.load(bundle_dir)
    report["bundle_id"] = mf.release_id(bundle_dir)
    report["bundle"].update(name=manifest["name"], version=manifest["version"],
                            profile=(manifest.get("profile") or {}).get("name"),
                            format=manifest["format"], precision=manifest["precision"])
    integrity = mf.verify_files(bundle_dir, manifest)
    report["integrity"] = integrity
    if not integrity["passed"]:
        raise mf.BundleUnusable("integrity check failed: %s (fix: copy the bundle again or "
                                "rebuild it)" % "; ".join(integrity["problems"][:5]))

    reasons = []
    arch = (manifest.get("device") or {}).get("arch") or []
    if arch and report["device"]["arch"] not in arch:
        report["notes"] = ["profile targets %s, this machine is %s: latency is not the target's"
                           % ("/".join(arch), report["device"]["arch"])]

    model_path = os.path.join(bundle_dir, *manifest["model"]["path"].split("/"))
    rt, load_s = runtimes.load_timed(manifest["runtime"], model_path,
                                     dict(manifest.get("runtime_settings") or {}, **runtime_overrides))
    report["runtime"] = rt.describe()
    report["device"]["runtimes"] = {rt.name: {"version": rt.version,
                                              "providers": rt.providers_available}}

    try:
        inputs, expected, samples = load_vectors(bundle_dir, manifest)
    except (KeyError, ValueError, OSError) as exc:
        raise mf.BundleUnusable("vectors.npz cannot be read (%s) (fix: rebuild the bundle)" % exc)
    got = dict((name, []) for name in expected)
    ref = dict((name, [expected[name][i] for i in range(samples)]) for name in expected)
    for i in range(samples):
        # arr[i, ...]: a 0-d input (a scalar such as a sample rate) stays a 0-d array, not a numpy scalar
        out = rt.run(dict((name, arr[i, ...]) for name, arr in inputs.items()))
        for name in got:
            if name in out:
                got[name].append(out[name])
    got = dict((k, v) for k, v in got.items() if len(v) == samples)
    thresholds = (manifest.get("parity") or {}).get("thresholds") or {}
    parity = par.compare(ref, got, thresholds)
    report["parity"] = parity
    reasons.extend("parity: " + line for line in par.describe_failures(parity))

    probe_settings = dict(manifest.get("probe") or {})
    probe_settings.update(probe_overrides)
    feeds = dict((name, arr[0, ...]) for name, arr in inputs.items())
    latency = prb.probe(rt.run, feeds, probe_settings)
    latency["load_ms"] = load_s * 1000.0
    latency["threads"] = rt.threads
    latency["provider"] = report["runtime"]["provider"]
    budget = probe_settings.get("budget_ms")
    metric = probe_settings.get("budget_metric", "p90")
    latency["budget"] = {"budget_ms": budget, "metric": metric, "passed": None}
    if budget is not None:
        value = latency.get("%s_ms" % metric)
        ok = value is not None and value <= float(budget)
        latency["budget"]["passed"] = ok
        if not ok:
            reasons.append("latency: %s %.3f ms > budget %.3f ms" % (metric, value or -1, budget))
    report["latency"] = latency

    report["verdict"] = {"passed": not reasons, "status": "pass" if not reasons else "fail",
                         "reasons": reasons}
    return report
