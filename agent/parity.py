"""Compare a converted model's outputs with the original model's (numpy only).

The packager's host parity check imports this module too, so host and device judge alike.

Thresholds (any may be None = not checked):
  atol, rtol   every element must satisfy |got - ref| <= atol + rtol * |ref|
  cosine_min   cosine similarity of the flattened outputs (all samples together)
  top1_min     share of samples whose arg-max agrees (classifier-like outputs only)
"""
import numpy as np

THRESHOLD_KEYS = ("atol", "rtol", "cosine_min", "top1_min")


def is_classifier_like(shape):
    """(batch, classes) with more than one class: a score per class."""
    return len(shape) == 2 and shape[-1] is not None and shape[-1] > 1


def _f(x):
    return None if x is None else float(x)


def compare_output(name, refs, gots, thresholds):
    """Compare one output over all samples. refs/gots: lists of arrays, one per sample."""
    result = {"name": name, "passed": True, "failures": [], "samples": len(refs),
              "thresholds": dict((k, thresholds.get(k)) for k in THRESHOLD_KEYS)}
    for i, (ref, got) in enumerate(zip(refs, gots)):
        ref = np.asarray(ref)
        got = np.asarray(got)
        if ref.shape != got.shape:
            result["failures"].append("sample %d: shape %s, expected %s"
                                      % (i, list(got.shape), list(ref.shape)))
        elif ref.dtype.kind != got.dtype.kind:
            result["failures"].append("sample %d: dtype %s, expected %s" % (i, got.dtype, ref.dtype))
        elif got.dtype.kind in "fc" and not np.all(np.isfinite(got)):
            result["failures"].append("sample %d: %d NaN/Inf values"
                                      % (i, int(np.size(got) - np.count_nonzero(np.isfinite(got)))))
    if result["failures"]:
        result["passed"] = False
        return result

    ref_all = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in refs])
    got_all = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in gots])
    diff = np.abs(got_all - ref_all)
    absref = np.abs(ref_all)
    max_abs = float(diff.max()) if diff.size else 0.0
    denom = np.maximum(absref, 1e-12)
    max_rel = float((diff / denom).max()) if diff.size else 0.0
    nr = float(np.linalg.norm(ref_all))
    ng = float(np.linalg.norm(got_all))
    if nr == 0.0 and ng == 0.0:
        cosine = 1.0
    elif nr == 0.0 or ng == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(ref_all, got_all) / (nr * ng))
    result.update(max_abs=max_abs, max_rel=max_rel, cosine=cosine)

    atol = thresholds.get("atol")
    rtol = thresholds.get("rtol")
    if atol is not None or rtol is not None:
        allowed = (atol or 0.0) + (rtol or 0.0) * absref
        over = diff > allowed
        n_over = int(np.count_nonzero(over))
        result["elements_over_tolerance"] = n_over
        if n_over:
            worst = int(np.argmax(diff - allowed))
            result["failures"].append(
                "%d of %d elements outside atol=%s + rtol=%s*|ref| (worst |diff| %.3g where "
                "|ref| %.3g)" % (n_over, diff.size, _f(atol), _f(rtol), diff[worst], absref[worst]))
    cmin = thresholds.get("cosine_min")
    if cmin is not None and cosine < cmin:
        result["failures"].append("cosine %.6f < %s" % (cosine, cmin))

    shape = np.asarray(refs[0]).shape
    if is_classifier_like(shape):
        agree = []
        for ref, got in zip(refs, gots):
            agree.extend(list(np.argmax(ref, axis=-1) == np.argmax(got, axis=-1)))
        top1 = float(np.mean(agree)) if agree else 1.0
        result["top1_agreement"] = top1
        tmin = thresholds.get("top1_min")
        if tmin is not None and top1 < tmin:
            result["failures"].append("top-1 agreement %.3f < %s" % (top1, tmin))
    result["passed"] = not result["failures"]
    return result


def compare(reference, converted, thresholds):
    """reference/converted: {output name: [array per sample]}. Returns the parity section."""
    outputs = []
    for name in reference:
        if name not in converted:
            outputs.append({"name": name, "passed": False, "samples": len(reference[name]),
                            "failures": ["output missing from the converted model"],
                            "thresholds": dict((k, thresholds.get(k)) for k in THRESHOLD_KEYS)})
            continue
        outputs.append(compare_output(name, reference[name], converted[name], thresholds))
    return {"passed": all(o["passed"] for o in outputs), "outputs": outputs}


def describe_failures(parity):
    """One string per failing output, with every failing metric and its threshold."""
    lines = []
    for out in parity["outputs"]:
        if not out["passed"]:
            lines.append("output %r: %s" % (out["name"], "; ".join(out["failures"])))
    return lines
