"""A float tail: the last ops of the graph (in execution order) left in float, what an Edge TPU does
with every op after its first unsupported one (the compiler runs them on the CPU). recover.py tries it
last, when no fully integer recipe holds the thresholds and `quantization.tail_fallbacks` > 0; the
backend's full-int8 check (formats/tflite/quantize.py) allows float only after the last integer op.
"""
from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger(__name__)

TAIL_SHARE = 10             # a float tail holds at most 1/TAIL_SHARE of the graph's ops


def tail_lengths(from_first: int | None, cap: int, total: int) -> list[int]:
    """How many ops at the graph's end a float tail tries, in order: from the first diverging tensor
    to the end, then twice as many ... up to the cap (and a tenth of the graph's `total` ops, so the
    accelerator keeps the model); only the cap when that tensor lies earlier."""
    cap = min(cap, total // TAIL_SHARE)
    if cap <= 0:
        return []
    n = min(cap, max(1, from_first or 1))
    out = [n]
    while n < cap:
        n = min(cap, n * 2)
        out.append(n)
    return out


def recover(s, best):
    """s: recover's search, best: its best trial -> (the passing trial or None, the best trial)."""
    cap_info = s.table(best)
    if cap_info is None:
        return None, best
    order = [n.name for n in cap_info["nodes"]]
    first = (cap_info["first"] or {}).get("node")
    from_first = len(order) - order.index(first) if first in order else None
    lengths = tail_lengths(from_first, s.profile.quantization.tail_fallbacks, len(order))
    if not lengths:
        log.info("no float tail: %d ops, a tail may hold at most a tenth of them", len(order))
    where = (f"the first diverging tensor is {from_first} ops from the end" if from_first
             else "no diverging tensor named")
    for n in lengths:
        tail = order[-n:]
        plan = dataclasses.replace(best.plan, float_nodes=tuple(dict.fromkeys(best.plan.float_nodes + tuple(tail))),
                                   float_tail=n)
        trial, best = s.step(plan, f"float tail: the last {n} ops ({where}; tail_fallbacks "
                                   f"{s.profile.quantization.tail_fallbacks})", best)
        if trial is None:
            break
        if trial.parity["passed"]:
            return trial, best
    return None, best
