"""The per-tensor table: how far each intermediate tensor of a converted or quantized model is from
the float model's tensor of the same name, in graph order, and which nodes to leave in float.

Format-neutral: a backend captures the tensors (ONNX: packager/quant/onnx_tensors.py; TF-Lite:
packager/quant/tflite_tensors.py) and hands them to `Accumulator`; `table()` turns the sums into rows.

SQNR is onnxruntime's (qdq_loss_debug.compute_signal_to_quantization_noice_ratio):
20·log10(‖float‖ / ‖float − other‖), over all the samples compared. For tensors of rank 3
(batch, channels, positions) the worst slice along axis 1 counts too (a Concat of boxes in pixels and scores in [0, 1] keeps a high
whole-tensor SQNR while its score rows are gone); slices that are ~0 in the float model are skipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

EPS = float(np.finfo(float).eps)
INF_DB = 150.0          # the SQNR of an exact copy (graph inputs, untouched tensors)
FLOOR_DB = 20.0         # when the thresholds name no cosine
NOISE_DB = 20.0         # ordinary noise of one quantized node sits this far above the floor
MAX_VALUES = 1 << 20    # per tensor and sample; larger ones are compared on an evenly strided subset
SPREAD_X = 32.0         # a conv input whose widest channel is this many times its narrowest: named as the cause
CONV_OPS = ("Conv", "CONV_2D", "DEPTHWISE_CONV_2D")


def _f32(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == np.float32 else a.astype(np.float32)


def floor_db(thresholds: dict) -> float:
    """The SQNR an output needs to keep the profile's cosine: for small noise cosine ~ 1 - NSR/2,
    so cosine_min 0.98 needs 14 dB, 0.999 (fp16) 27 dB. A tensor under it already carries more
    error than the output may have: that is where the model broke."""
    c = thresholds.get("cosine_min")
    if c is None or c >= 1.0:
        return FLOOR_DB
    return round(-10.0 * math.log10(max(2.0 * (1.0 - c), 1e-15)), 2)


def sqnr_db(signal2: float, noise2: float) -> float:
    if not (math.isfinite(signal2) and math.isfinite(noise2)):
        return -INF_DB         # an overflow (Inf/NaN) somewhere in the tensor
    if noise2 <= 0.0:
        return INF_DB          # an exact copy (also of an all-zero tensor, which the bare formula calls 0 dB)
    signal = max(math.sqrt(max(signal2, 0.0)), EPS)
    noise = max(math.sqrt(max(noise2, 0.0)), EPS)
    return min(20.0 * math.log10(signal / noise), INF_DB)


@dataclass
class _Sums:
    ref2: float = 0.0
    got2: float = 0.0
    diff2: float = 0.0
    dot: float = 0.0
    max_abs: float = 0.0
    local_noise2: float = 0.0          # QDQ only: the tensor against its own quantize/dequantize
    local_ref2: float = 0.0
    slice_ref2: np.ndarray | None = None
    slice_diff2: np.ndarray | None = None
    slice_maxdiff: np.ndarray | None = None
    shape: tuple = ()
    strided: bool = False
    nonfinite: int = 0
    channel_max: np.ndarray | None = None   # max |float value| per channel of a 4-D tensor (int8 only)


@dataclass
class Accumulator:
    """Running sums per tensor name over samples (no tensor is kept after it is added).

    channel_axis: where an int8 comparison keeps each 4-D tensor's range per channel (1 for NCHW
    ONNX, -1 for NHWC TF-Lite; None: not kept). int8 quantizes an activation tensor with one scale,
    so a conv whose input channels span a wide range starves the narrow ones (`input_channel_spread`)."""

    sums: dict[str, _Sums] = field(default_factory=dict)
    channel_axis: int | None = None

    def add(self, name: str, ref, got, pre=None) -> None:
        ref = _f32(ref)
        got = _f32(got)
        if ref.shape != got.shape:
            if ref.size != got.size:
                return
            got = got.reshape(ref.shape)
        s = self.sums.setdefault(name, _Sums(shape=ref.shape))
        odd = ~(np.isfinite(ref) & np.isfinite(got))
        if odd.any():
            # the same -inf on both sides (an attention mask) is agreement; a new Inf/NaN (fp16
            # overflow) is counted and judges the tensor broken; neither enters the sums
            with np.errstate(invalid="ignore"):
                s.nonfinite += int((odd & ~(ref == got)).sum())
            ref = np.where(odd, 0.0, ref).astype(np.float32)
            got = np.where(odd, 0.0, got).astype(np.float32)
        if self.channel_axis is not None and ref.ndim == 4:
            axis = self.channel_axis % 4
            cm = np.abs(ref).max(axis=tuple(i for i in range(4) if i != axis))
            same = s.channel_max is not None and s.channel_max.shape == cm.shape
            s.channel_max = np.maximum(s.channel_max, cm) if same else cm
        d = ref - got
        if ref.ndim == 3 and ref.shape[1] > 1:   # (batch, channels, positions): rows of different meaning
            r = np.moveaxis(ref, 1, 0).reshape(ref.shape[1], -1)
            dd = np.moveaxis(d, 1, 0).reshape(ref.shape[1], -1)
            sr = np.einsum("ij,ij->i", r, r, dtype=np.float64)     # float64: no overflow
            sd = np.einsum("ij,ij->i", dd, dd, dtype=np.float64)
            sm = np.abs(dd).max(axis=1) if dd.shape[1] else np.zeros(len(sr))
            if s.slice_ref2 is None or s.slice_ref2.shape != sr.shape:
                s.slice_ref2, s.slice_diff2, s.slice_maxdiff = sr, sd, sm
            else:
                s.slice_ref2 = s.slice_ref2 + sr
                s.slice_diff2 = s.slice_diff2 + sd
                s.slice_maxdiff = np.maximum(s.slice_maxdiff, sm)
        r, g, dv = ref.ravel(), got.ravel(), d.ravel()
        if r.size > MAX_VALUES:                  # an evenly strided subset estimates the sums well
            step = -(-r.size // MAX_VALUES)
            r, g, dv = r[::step], g[::step], dv[::step]
            s.strided = True
        sums = [float(np.dot(r, r)), float(np.dot(g, g)), float(np.dot(dv, dv)), float(np.dot(r, g))]
        if not all(math.isfinite(v) for v in sums):   # float32 squares overflow past ~1.8e19 (finfo.min masks)
            r, g, dv = r.astype(np.float64), g.astype(np.float64), dv.astype(np.float64)
            sums = [float(np.dot(r, r)), float(np.dot(g, g)), float(np.dot(dv, dv)), float(np.dot(r, g))]
        s.ref2 += sums[0]
        s.got2 += sums[1]
        s.diff2 += sums[2]
        s.dot += sums[3]
        if dv.size:
            s.max_abs = max(s.max_abs, float(np.max(np.abs(dv))))
        if pre is not None:
            pre = _f32(pre).reshape(got.shape).ravel()
            if pre.size > MAX_VALUES:
                pre, gg = pre[::step], got.ravel()[::step]
            else:
                gg = got.ravel()
            e = pre - gg
            s.local_noise2 += float(np.dot(e, e))
            s.local_ref2 += float(np.dot(pre, pre))

    def channel_spread(self, name: str) -> float | None:
        """The widest channel's range over the narrowest live one's (channels ~0 in the float model
        are dead, not narrow), or None where the ranges were not kept."""
        s = self.sums.get(name)
        if s is None or s.channel_max is None or not s.channel_max.size:
            return None
        live = s.channel_max[s.channel_max > max(float(s.channel_max.max()) * 1e-6, EPS)]
        return float(live.max() / live.min()) if live.size > 1 else None

    def metrics(self, name: str, slice_atol: float | None = None) -> dict | None:
        """SQNR, cosine, max |diff|; the worst slice of a rank-3 tensor, skipping slices ~0 in the
        float model and slices within `slice_atol` everywhere (the parity check passes those too)."""
        s = self.sums.get(name)
        if s is None:
            return None
        prod = s.ref2 * s.got2
        cos = 1.0 if s.ref2 == 0 and s.got2 == 0 else (
            0.0 if not prod > 0 or not math.isfinite(prod) else s.dot / math.sqrt(prod))
        sq = -INF_DB if s.nonfinite else sqnr_db(s.ref2, s.diff2)
        out = {"sqnr_db": round(sq, 2), "cosine": round(cos, 6),
               "max_abs": float(f"{s.max_abs:.4g}"), "shape": list(s.shape)}
        if s.nonfinite:
            out["nonfinite"] = s.nonfinite
        eff = out["sqnr_db"]
        if s.slice_ref2 is not None:
            # slices ~0 in the float model (amplitude < 1e-6 of the largest slice) have no meaningful SQNR
            live = s.slice_ref2 > max(float(s.slice_ref2.max()) * 1e-12, EPS)
            if slice_atol is not None:
                live &= s.slice_maxdiff > slice_atol
            if live.any():
                per = [sqnr_db(r, d) for r, d, ok in zip(s.slice_ref2, s.slice_diff2, live) if ok]
                idx = [i for i, ok in enumerate(live) if ok]
                k = int(np.argmin(per))
                out["worst_slice"] = {"axis": 1, "index": idx[k], "sqnr_db": round(per[k], 2)}
                eff = min(eff, per[k])
        out["effective_sqnr_db"] = round(eff, 2)
        if s.local_ref2 > 0:
            out["own_qdq_sqnr_db"] = round(sqnr_db(s.local_ref2, s.local_noise2), 2)
        return out


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def table(nodes: list[Node], acc: Accumulator, slice_atol: float | None = None) -> list[dict]:
    """One row per compared tensor, in graph order, with the error its node added: drop_db = the
    worst SQNR among the node's inputs minus its output's SQNR. An input that was not compared
    (the quantizer folded it away: QDQ removes a ReLU after a Conv, so the Conv's own output no
    longer exists) takes the SQNR of what fed it, so the drop lands where the error appeared."""
    eff: dict[str, float] = {}
    exact: set[str] = set()   # graph inputs and constants: no error to start from
    rows = []
    produced = {t for n in nodes for t in n.outputs}
    for n in nodes:
        ins = [eff[i] for i in n.inputs if i in eff]
        base = min(ins) if ins else INF_DB
        reads_only_exact = not ins and all(i not in produced or i in exact for i in n.inputs)
        for t in n.outputs:
            m = acc.metrics(t, slice_atol)
            if m is None:
                if reads_only_exact:
                    exact.add(t)
                elif ins:
                    eff[t] = base          # not compared: carry what fed it
                continue
            eff[t] = m["effective_sqnr_db"]
            row = {"tensor": t, "node": n.name, "op": n.op, **m,
                   # None: the node reads only graph inputs and constants (nothing to drop from)
                   "drop_db": None if reads_only_exact else round(max(base - eff[t], 0.0), 2)}
            if not n.inputs:
                row["constant"] = True   # a Constant node's value, as the converted model stores it
            # the data input (input 0 of every conv op; the others are weights and bias)
            spread = acc.channel_spread(n.inputs[0]) if n.op in CONV_OPS and n.inputs else None
            if spread:
                row["input_channel_spread"] = round(spread, 1)
            rows.append(row)
    return rows


def first_diverging(rows: list[dict], floor: float) -> dict | None:
    """The first computed tensor in graph order under `floor` dB (floor_db); if none, the largest drop.
    Constants are skipped here (exporters put Constant nodes first, far from where they are read):
    one that the precision cannot hold shows as the drop of the node that reads it, and in
    summary()'s `constants_under_floor`."""
    for r in rows:
        if r.get("constant"):
            continue
        if r["effective_sqnr_db"] < floor:
            return {**r, "why": f"first tensor under {floor:g} dB (what the output's cosine_min needs)"}
    if not rows:
        return None
    worst = max((r for r in rows if not r.get("constant")), key=lambda r: r["drop_db"] or 0.0, default=None)
    if worst is None:
        return None
    return {**worst, "why": f"no tensor under {floor:g} dB; the largest single drop"} if worst["drop_db"] else None


JUMP_DB = 3.0     # a node whose tensor loses this much SQNR at once is where the error jumps


def owners_of(tensor: str, nodes: list[Node], compared: dict, candidates: set[str]) -> set[str]:
    """The candidate nodes a tensor's error belongs to: its producer, or, when the quantizer folded
    the producer away (QDQ removes a ReLU after a Conv), the candidates that fed it through tensors
    that were not compared."""
    producer = {t: n for n in nodes for t in n.outputs}
    todo, seen, found = [producer[tensor]] if tensor in producer else [], set(), set()
    while todo:
        n = todo.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        if n.name in candidates:
            found.add(n.name)
            continue
        todo += [producer[i] for i in n.inputs if i in producer and i not in compared]
    return found


def rank_nodes(nodes: list[Node], rows: list[dict], candidates: set[str], done: set[str], floor: float,
               until: str | None = None) -> list[dict]:
    """Nodes that can be left in float, in the order to try them.

    A node answers for the tensors it writes and the quantized tensors it reads (in QDQ a tensor's
    quantize/dequantize belongs to its producer and to every consumer). Its `jump` is the most SQNR
    one of those tensors loses at once, against the node's inputs, which are capped at the ordinary
    noise of a quantized node (floor + NOISE_DB), so a node reading exact graph inputs is judged like
    any other. Only nodes up to `until` (the first diverging tensor) compete: error injected before
    the break is what broke it, and is amplified by everything after (measured on PP-OCRv4 det: its
    first 4 convs in float lift cosine 0.79 -> 0.99; a later conv with a bigger drop changes nothing).
    Largest jump first."""
    cap = floor + NOISE_DB
    jump_of: dict[str, float] = {}
    for r in rows:
        base = INF_DB if r["drop_db"] is None else r["effective_sqnr_db"] + r["drop_db"]
        jump_of[r["tensor"]] = max(min(base, cap) - r["effective_sqnr_db"], 0.0)
    by_tensor = {r["tensor"]: r for r in rows}
    owners = {t: owners_of(t, nodes, by_tensor, candidates) for t in jump_of}
    last = len(nodes)
    if until is not None:
        last = next((i for i, n in enumerate(nodes) if until in n.outputs), len(nodes))
    ranked = []
    for order, n in enumerate(nodes[:last + 1]):
        if n.name not in candidates or n.name in done:
            continue
        mine = [t for t in n.outputs + n.inputs if t in jump_of]
        mine += [t for t, who in owners.items() if n.name in who]
        jump = max([jump_of.get(t, 0.0) for t in mine] + [0.0])
        if jump < JUMP_DB and until is not None:
            continue
        worst = min((by_tensor[t]["effective_sqnr_db"] for t in n.outputs if t in by_tensor), default=None)
        ranked.append({"node": n.name, "op": n.op, "jump_db": round(jump, 2), "order": order, "sqnr_db": worst})
    ranked.sort(key=lambda r: (-r["jump_db"], r["order"]))
    return ranked


# Ops that turn a small relative error of one input into a large one of their output (log of a
# power spectrum, a reciprocal, a root), with the input that matters, and the element-wise ops that
# compute such an input: Basic Pitch's `log(x * x + 1e-10)` in float16 loses its epsilon (under
# float16's smallest subnormal) and its small squares, so the Log alone in float changes nothing
# (measured: the worst sample stays at cosine 0.987; Square, Add and Log in float give 1.00000).
SENSITIVE_INPUT = {"Log": 0, "Reciprocal": 0, "Sqrt": 0, "Pow": 0, "Div": 1}
ELEMENTWISE = {"Add", "Sub", "Mul", "Abs", "Pow", "Max", "Min", "Clip", "Relu", "Neg"}
CHAIN_MAX = 3


def input_chain(name: str, nodes: list[Node], candidates: set[str]) -> list[str]:
    """For a node of SENSITIVE_INPUT, the element-wise candidates that compute its sensitive input,
    nearest first (at most CHAIN_MAX); [] for any other node."""
    by_name = {n.name: n for n in nodes}
    producer = {t: n for n in nodes for t in n.outputs}
    node = by_name.get(name)
    if node is None or node.op not in SENSITIVE_INPUT or len(node.inputs) <= SENSITIVE_INPUT[node.op]:
        return []
    chain: list[str] = []
    tensor = node.inputs[SENSITIVE_INPUT[node.op]]
    while len(chain) < CHAIN_MAX:
        up = producer.get(tensor)
        if up is None or up.op not in ELEMENTWISE or up.name not in candidates:
            break
        chain.append(up.name)
        fed = [t for t in up.inputs if t in producer]       # the computed input (not a constant)
        if len(fed) != 1:
            break
        tensor = fed[0]
    return chain


def summary(rows: list[dict], first: dict | None, floor: float | None = None, limit: int = 8) -> dict:
    """What the manifest, --json and the error line carry (the full table goes to --json/--debug)."""
    drops = sorted((r for r in rows if r["drop_db"]), key=lambda r: -r["drop_db"])[:limit]
    out = {"tensors_compared": len(rows), "first_diverging": _slim(first) if first else None,
           "largest_drops": [_slim(r) for r in drops]}
    if floor is not None:
        lost = [r for r in rows if r.get("constant") and r["sqnr_db"] < floor]
        if lost:
            out["constants_under_floor"] = [{"tensor": r["tensor"], "node": r["node"], "sqnr_db": r["sqnr_db"]}
                                            for r in lost[:limit]]
    return out


def _slim(r: dict) -> dict:
    keep = ("tensor", "node", "op", "sqnr_db", "effective_sqnr_db", "cosine", "drop_db", "worst_slice",
            "own_qdq_sqnr_db", "why", "quantized_as", "input_channel_spread")
    return {k: r[k] for k in keep if k in r}


def describe(first: dict | None) -> str:
    """'node X (Op), tensor T: SQNR a dB (cosine c), -d dB at this node' for the error line."""
    if not first:
        return "no intermediate tensor differs"
    ws = first.get("worst_slice")
    slice_txt = (f", worst slice {ws['index']} along axis {ws['axis']} {ws['sqnr_db']:g} dB" if ws and
                 ws["sqnr_db"] < first["sqnr_db"] else "")
    drop = (f", -{first['drop_db']:g} dB at this node" if first.get("drop_db") is not None
            else ", the first node after the inputs")
    folded = (f" (the quantizer folded it into {', '.join(repr(n) for n in first['quantized_as'])})"
              if first.get("quantized_as") else "")
    spread = first.get("input_channel_spread") or 0.0
    cause = (f"; its input's channels span {spread:g}x in range under one int8 scale, so the narrow ones keep "
             "a few levels, which the conv's weights amplify" if spread >= SPREAD_X else "")
    return (f"node '{first['node']}' ({first['op']}){folded}, tensor '{first['tensor']}': SQNR "
            f"{first['sqnr_db']:g} dB{slice_txt}, cosine {first['cosine']:.4f}{drop}{cause}")
