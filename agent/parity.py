"""Compare a converted model's outputs with the original model's (numpy only, Python >= 3.8).

The packager's host parity check imports this module too, so host and device judge alike.

Thresholds (any may be None = not checked):
  atol, rtol          every element must satisfy |got - ref| <= atol + rtol * |ref| ...
  outside_share_max   ... except at most this share of the elements (fp16 of a 1.8-Mpixel
                      probability map put 0.17% of its pixels 0.01-0.08 off, cosine 1.0000)
  cosine_min          cosine similarity of the flattened output (all samples together)
  sample_cosine_min   the worst single sample's cosine (a sentence, an image); an output with one
                      number per sample (a probability) is held to slice_atol per sample instead
  slice_cosine_min    the worst slice along the output's channel axis (axis 1 of a rank >= 3
                      output: each row of a (batch, 4 + classes, anchors) detection tensor, each
                      time step of a (batch, steps, classes) sequence), all samples together. A
                      whole-tensor cosine dominated by large rows (boxes in pixels) cannot see small
                      rows (class scores in [0, 1]) collapse; this can.
  slice_atol          a slice also passes when every element is within slice_atol of the
                      reference: a row that is ~0 in the reference (a class absent from the image)
                      has no meaningful cosine
  top1_min            share of positions whose arg-max over the last axis agrees, for classifier
                      outputs only
  classifier_outputs  the outputs that are classifier scores (decided at build time: a Softmax /
                      LogSoftmax producer, or the profile's list). Absent (bundles built before it
                      existed): every (batch, classes) output is treated as one, as those builds did.
  slice_axis          the channel axis to slice (default: 1 for outputs of rank >= 3, none below)
  slice_axes          {output: axis} decided at build time for outputs whose batch axis is not the
                      first (a recurrent state [2, batch, 128] is sliced on axis 0: h and c apart)

The report is additive: a new key never replaces an old one (older readers keep working).
"""
import numpy as np

THRESHOLD_KEYS = ("atol", "rtol", "outside_share_max", "cosine_min", "sample_cosine_min", "slice_cosine_min",
                  "slice_atol", "top1_min")


def is_classifier_like(shape):
    """(batch, classes) with more than one class: a score per class (the rule before
    `classifier_outputs` existed)."""
    return len(shape) == 2 and shape[-1] is not None and shape[-1] > 1


def is_classifier(name, shape, thresholds):
    names = thresholds.get("classifier_outputs")
    if names is None:
        return is_classifier_like(shape)
    return name in names and len(shape) >= 1 and shape[-1] > 1


def _f(x):
    return None if x is None else float(x)


def cosine(a, b):
    """Cosine similarity of two float64 vectors; 1.0 when both are all zero, 0.0 when one is."""
    na = float(np.linalg.norm(a))
    nb = float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def slice_axis_of(shape, thresholds, name=None):
    axis = thresholds.get("slice_axis")
    if axis is None:
        per_output = thresholds.get("slice_axes") or {}
        if name in per_output and len(shape) >= 3:   # an output whose batch axis is not the first
            return int(per_output[name])
        return 1 if len(shape) >= 3 else None
    axis = int(axis)
    if axis < 0:
        axis += len(shape)
    return axis if 0 <= axis < len(shape) else None


def worst_slice(refs, gots, axis, thresholds):
    """The slices along `axis` (all samples together): the worst one and how many fail."""
    ref = np.concatenate([np.moveaxis(np.asarray(r, dtype=np.float64), axis, 0).reshape(
        np.shape(r)[axis], -1) for r in refs], axis=1)
    got = np.concatenate([np.moveaxis(np.asarray(g, dtype=np.float64), axis, 0).reshape(
        np.shape(g)[axis], -1) for g in gots], axis=1)
    cmin = thresholds.get("slice_cosine_min")
    satol = thresholds.get("slice_atol")
    worst, failed = None, 0
    for i in range(ref.shape[0]):
        c = cosine(ref[i], got[i])
        diff = float(np.max(np.abs(ref[i] - got[i]))) if ref.shape[1] else 0.0
        by_atol = satol is not None and diff <= satol
        ok = by_atol or cmin is None or c >= cmin
        if not ok:
            failed += 1
        entry = {"axis": axis, "index": i, "cosine": c, "max_abs": diff,
                 "ref_max_abs": float(np.max(np.abs(ref[i]))) if ref.shape[1] else 0.0,
                 "passed": ok, "within_slice_atol": by_atol}
        # the worst: a failing slice before a passing one, then the lowest cosine
        key = (ok, by_atol, c)
        if worst is None or key < (worst["passed"], worst["within_slice_atol"], worst["cosine"]):
            worst = entry
    return worst, failed, ref.shape[0]


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
    result.update(max_abs=max_abs, max_rel=max_rel, cosine=cosine(ref_all, got_all))

    atol = thresholds.get("atol")
    rtol = thresholds.get("rtol")
    if atol is not None or rtol is not None:
        allowed = (atol or 0.0) + (rtol or 0.0) * absref
        over = diff > allowed
        n_over = int(np.count_nonzero(over))
        result["elements_over_tolerance"] = n_over
        share_max = thresholds.get("outside_share_max")
        if n_over and share_max is not None and diff.size and n_over <= share_max * diff.size:
            result["elements_over_tolerance_allowed"] = True   # a small share, as the profile allows
        elif n_over:
            worst = int(np.argmax(diff - allowed))
            result["failures"].append(
                "%d of %d elements outside atol=%s + rtol=%s*|ref| (worst |diff| %.3g where "
                "|ref| %.3g)" % (n_over, diff.size, _f(atol), _f(rtol), diff[worst], absref[worst]))
    cmin = thresholds.get("cosine_min")
    if cmin is not None and result["cosine"] < cmin:
        result["failures"].append("cosine %.6f < %s" % (result["cosine"], cmin))

    if len(refs) > 1 and ref_all.size == len(refs):
        # one number per sample (a speech probability): its cosine is only its sign (0.015 against 0
        # scores 0, 0.73 against 1.0 scores 1), so each sample is held to slice_atol instead
        k = int(np.argmax(diff))
        result["worst_sample"] = {"index": k, "max_abs": float(diff[k]), "one_element": True}
        satol = thresholds.get("slice_atol")
        if thresholds.get("sample_cosine_min") is not None and satol is not None and diff[k] > satol:
            result["failures"].append("sample %d |diff| %.3g > slice_atol %s (one number per sample: "
                                      "judged by its difference, a cosine would be only its sign)"
                                      % (k, diff[k], satol))
    elif len(refs) > 1:
        per_sample = [cosine(np.asarray(r, dtype=np.float64).ravel(), np.asarray(g, dtype=np.float64).ravel())
                      for r, g in zip(refs, gots)]
        k = int(np.argmin(per_sample))
        result["worst_sample"] = {"index": k, "cosine": per_sample[k]}
        smin = thresholds.get("sample_cosine_min")
        if smin is not None and per_sample[k] < smin:
            result["failures"].append("sample %d cosine %.6f < %s" % (k, per_sample[k], smin))

    shape = np.asarray(refs[0]).shape
    axis = slice_axis_of(shape, thresholds, name)
    if axis is not None and shape[axis] > 1:
        worst, failed, count = worst_slice(refs, gots, axis, thresholds)
        result["worst_slice"] = worst
        result["slices"] = count
        result["slices_failed"] = failed
        if failed:
            result["failures"].append(
                "%d of %d slices along axis %d below slice cosine %s (worst: index %d, cosine %.6f, "
                "max |diff| %.3g where max |ref| %.3g)"
                % (failed, count, axis, thresholds.get("slice_cosine_min"), worst["index"], worst["cosine"],
                   worst["max_abs"], worst["ref_max_abs"]))

    if is_classifier(name, shape, thresholds):
        agree = []
        for ref, got in zip(refs, gots):
            agree.extend(list(np.ravel(np.argmax(ref, axis=-1) == np.argmax(got, axis=-1))))
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


def score(parity):
    """One number for "how close" (higher is better): the lowest cosine, worst sample or worst
    failing slice over the outputs; -1 when an output is missing or broken."""
    worst = 1.0
    for out in parity["outputs"]:
        if "cosine" not in out:
            return -1.0
        vals = [out["cosine"]]
        if "cosine" in out.get("worst_sample", {}):
            vals.append(out["worst_sample"]["cosine"])
        ws = out.get("worst_slice")
        if ws and not ws.get("within_slice_atol"):
            vals.append(ws["cosine"])
        if "top1_agreement" in out:
            vals.append(out["top1_agreement"])
        worst = min(worst, min(vals))
    return worst


def describe_failures(parity):
    """One string per failing output, with every failing metric and its threshold."""
    lines = []
    for out in parity["outputs"]:
        if not out["passed"]:
            lines.append("output %r: %s" % (out["name"], "; ".join(out["failures"])))
    return lines
