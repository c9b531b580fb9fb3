"""A float head: every node that computes the first diverging tensor (its ancestors in the graph, from
the inputs on) left in float, the rest quantized. Models that start with a signal front end (an STFT,
a CQT, a log-mel spectrogram) hold values there that no int8 scale and no float16 can: Basic Pitch's
CQT spans 1e-14 .. 1 and ends in log(x * x + 1e-10). No fallback of a few nodes mends that (measured:
16 fallbacks leave its int8 at sample cosine 0.84); its front end in float and the network after it
in int8 gives 0.9996.

recover.py tries it after the fallbacks, before histogram calibration and a float tail, when the
profile's `quantization.float_head` is on. Each round takes, of the tensors under the SQNR floor that
the head does not yet compute, the one whose node loses the most at once (Basic Pitch int8: the CQT's
ReduceSum, -38.6 dB; float16: the Mul after its Log, -36.4 dB), and adds that node and everything that
computes it; the next round measures again (a tensor that leaves the head is still quantized for its
readers, so the break moves down the graph). The head may hold at most HEAD_SHARE of the nodes the
quantizer touched: past that, the model would be a float model with a quantized tail.
Edge TPU profiles keep it off: the compiler maps ops from the graph's start up to the first one it
cannot take, so a float head would leave the whole model to the CPU.
"""
from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger(__name__)

HEAD_SHARE = 0.75            # of the nodes the quantizer (or float16 converter) touched
HEAD_ROUNDS = 3              # each round: the ancestors of the attempt's first diverging tensor
# ops a front end's values flow through on one line (a power spectrum -> log -> dB); the head follows
# them on from the worst node while each tensor has one reader: a tensor leaving the head is quantized
# for its reader, so stopping at the worst node only moves the break one op down
CHAIN_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Log", "Abs", "Neg", "Reshape", "Transpose",
             "Squeeze", "Unsqueeze", "ReduceSum", "Identity",
             "ADD", "SUB", "MUL", "DIV", "POW", "SQRT", "LOG", "ABS", "NEG", "RESHAPE", "TRANSPOSE", "SQUEEZE",
             "EXPAND_DIMS", "SUM", "SQUARE"}
CHAIN_MAX = 8


def ancestors(name: str, nodes) -> list[str]:
    """`name` and every node that computes one of its inputs, transitively, in graph order."""
    producer = {t: n for n in nodes for t in n.outputs}
    by_name = {n.name: n for n in nodes}
    seen, todo = set(), [by_name[name]] if name in by_name else []
    while todo:
        n = todo.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        todo += [producer[t] for t in n.inputs if t in producer]
    return [n.name for n in nodes if n.name in seen]


def downstream(name: str, nodes) -> list[str]:
    """The CHAIN_OPS nodes that read `name`'s output one after another, each tensor read once."""
    readers: dict[str, list] = {}
    for n in nodes:
        for t in n.inputs:
            readers.setdefault(t, []).append(n)
    by_name = {n.name: n for n in nodes}
    chain, node = [], by_name.get(name)
    while node is not None and len(chain) < CHAIN_MAX and len(node.outputs) == 1:
        nxt = readers.get(node.outputs[0], [])
        if len(nxt) != 1 or nxt[0].op not in CHAIN_OPS:
            break
        node = nxt[0]
        chain.append(node.name)
    return chain


def recover(s, best):
    """s: recover's search, best: its best trial -> (the passing trial or None, the best trial)."""
    plain = dataclasses.replace(best.plan, float_nodes=(), float_tail=0, float_head=0)
    current, head = best, ()
    for _ in range(HEAD_ROUNDS):
        cap_info = s.table(current)
        target = _target(cap_info, set(head)) if cap_info else None
        if target is None:
            log.info("no float head: no diverging tensor outside the head")
            break
        end = ([target["node"]] + downstream(target["node"], cap_info["nodes"]))[-1]
        grown = tuple(dict.fromkeys(head + tuple(ancestors(end, cap_info["nodes"]))))
        touched = [n for n in grown if n in cap_info["candidates"]]
        if len(touched) > HEAD_SHARE * len(cap_info["candidates"]):
            log.info("no float head through %s: it would hold %d of the %d nodes quantized (at most %.0f %%)",
                     target["node"], len(touched), len(cap_info["candidates"]), HEAD_SHARE * 100)
            break
        head = grown
        plan = dataclasses.replace(plain, float_nodes=head, float_head=len(head))
        trial, best = s.step(plan, f"float head: '{target['node']}' ({target['op']}, -{target['drop_db']:g} dB "
                                   f"at once), the line of ops it feeds up to '{end}', and all that computes them "
                                   f"({len(head)} nodes, {len(touched)} of them quantized before)", best)
        if trial is None:
            break
        if trial.parity["passed"]:
            return trial, best
        current = trial
    return None, best


def _target(cap_info: dict, head: set[str]) -> dict | None:
    """The row under the floor, outside the head, whose node loses the most SQNR at once."""
    floor = cap_info["floor_db"]
    rows = [r for r in cap_info["rows"] if r["node"] not in head and r.get("drop_db")
            and r["effective_sqnr_db"] < floor]
    return max(rows, key=lambda r: r["drop_db"], default=None)
