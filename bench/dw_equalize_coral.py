"""Why PP-OCRv4 det/rec x coral lose it at their early depthwise convs, and what equalizing the
channels buys (issue 10; docs/FORMATS.md, "Real models"). A measurement, not a shipped pass.

1. Cause. A depthwise conv computes each output channel from one input channel, and PP-LCNet's
   depthwise weights give the small channels large gains. Under one int8 scale for the whole input
   tensor (what TF-Lite's int8 allows for activations), a channel whose range is 1/79 of the widest
   keeps a handful of levels, and the conv amplifies that rounding into its output. The script runs
   the float model on the calibration images, quantizes each early depthwise conv's input per tensor
   and per channel (min/max, int8) and prints the conv's output SQNR for both.
2. Remedy tried. Cross-layer equalization in the style of Nagel et al. (2019), carried through
   PP-LCNet's chain `Conv -> Mul(a1) -> Add(b1) -> hardswish -> Mul(a2) -> Add(b2) -> depthwise Conv`:
   the pointwise conv's output channel c is scaled by s_c, the chain's Adds become per-channel
   (s * b), hardswish's gate reads the unscaled value through a Mul by 1/s, and the depthwise
   weights are divided by s_c. Exact in float; s_c is as large as it can be without widening the
   range of any tensor on the chain (capped at --cap). Both graphs are then built for the coral
   profile through the CLI and every recipe's parity score is printed.

    .venv/bin/python bench/dw_equalize_coral.py [--cap 64] [--keep DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.hard_swish_coral import build, hardswish_at, work_folder, zoo  # noqa: E402  (zoo: tests/zoo on the path)

CASES = {"ppocr-det": "1,3,480,480", "ppocr-rec": "1,3,48,320"}


class Graph:
    """The slimmed ONNX graph with its initializers, producers and use counts."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.model, self.g = model, model.graph
        self.init = {i.name: numpy_helper.to_array(i) for i in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.uses: dict[str, int] = {}
        for n in self.g.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1

    def scalar(self, name: str) -> bool:
        return name in self.init and self.init[name].size == 1

    def attr(self, node, key, default=None):
        for a in node.attribute:
            if a.name == key:
                return list(a.ints) if a.ints else a.i
        return default

    def hardswish(self, div):
        """(its Add(u, 3), u) where `div` ends a hardswish of u (hard_swish_coral.hardswish_at) and u feeds
        nothing but that Add and the Mul; else None."""
        found = hardswish_at(div, self.producer, self.uses, self.init)
        if found is None or self.uses[found[0]] != 2:
            return None
        return found[1], found[0]

    def chain(self, dw):
        """(the group-1 Conv, [(kind, node)] in graph order) from which dw's input is computed
        through scalar Mul/Add/Div and hardswish only, each tensor read by the chain alone; else None."""
        cur, ops, shared = dw.input[0], [], False
        while True:
            if cur not in self.producer or (self.uses.get(cur, 0) != 1 and not shared):
                return None
            n, shared = self.producer[cur], False
            if n.op_type == "Conv" and self.attr(n, "group", 1) == 1:
                return n, ops[::-1]
            hardswish = self.hardswish(n)
            if hardswish is not None:
                add, cur = hardswish
                ops.append(("hardswish", (add, n)))
                shared = True          # u feeds the gate's Add and the Mul
            elif n.op_type in ("Mul", "Add") and len(n.input) == 2 and any(self.scalar(i) for i in n.input):
                ops.append((n.op_type, n))
                cur = next((i for i in n.input if not self.scalar(i)), None)
            elif n.op_type == "Div" and self.scalar(n.input[1]):
                ops.append(("Div", n))
                cur = n.input[0]
            else:
                return None

    def depthwise(self) -> list:
        """[(depthwise Conv, pointwise Conv, chain ops)] for every depthwise conv with such a chain."""
        found = []
        for n in self.g.node:
            w = self.init.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
            if w is not None and w.shape[1] == 1 and self.attr(n, "group", 1) == w.shape[0] > 1:
                c = self.chain(n)
                if c:
                    found.append((n, *c))
        return found


def chain_tensors(pw, ops) -> list[str]:
    return [pw.output[0]] + [(n[1] if kind == "hardswish" else n).output[0] for kind, n in ops]


def activations(model, names: list[str], xs: np.ndarray) -> list[dict]:
    import onnx
    import onnxruntime as ort
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in names)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [dict(zip(names, s.run(names, {"x": x[None]}))) for x in xs]


def fake_int8(a: np.ndarray) -> np.ndarray:
    """min/max int8 (asymmetric, zero included), as the calibration gives it, per tensor."""
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zero = np.round(-lo / scale) - 128
    return ((np.clip(np.round(a / scale) + zero, -128, 127) - zero) * scale).astype(np.float32)


def sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10((ref ** 2).sum() / max(((ref - got) ** 2).sum(), 1e-30)))


def cause(graph: Graph, found: list, acts: list[dict], first: int = 4) -> None:
    import torch
    import torch.nn.functional as F

    print("  depthwise conv   channels  widest/narrowest input  output SQNR: per-tensor int8 input | per-channel")
    for dw, _, _ in found[:first]:
        x = np.concatenate([a[dw.input[0]] for a in acts])
        w, b = graph.init[dw.input[1]], graph.init.get(dw.input[2]) if len(dw.input) > 2 else None
        pads = graph.attr(dw, "pads", [0, 0, 0, 0])

        def conv(a):
            return F.conv2d(torch.tensor(a, dtype=torch.float32), torch.tensor(w),
                            None if b is None else torch.tensor(b), stride=graph.attr(dw, "strides", [1, 1]),
                            padding=pads[:2], groups=w.shape[0]).numpy()
        per_channel = np.stack([fake_int8(x[:, c]) for c in range(x.shape[1])], axis=1)
        r = np.abs(x).max(axis=(0, 2, 3))
        print(f"  {dw.name:15s}  {w.shape[0]:8d}  {r.max() / max(r.min(), 1e-12):22.1f}  "
              f"{sqnr(conv(x), conv(fake_int8(x))):26.1f} dB | {sqnr(conv(x), conv(per_channel)):.1f} dB")


def equalize(graph: Graph, found: list, acts: list[dict], cap: float) -> list[float]:
    """Rewrite graph.model in place (module docstring, item 2); returns each conv's largest s."""
    from onnx import helper, numpy_helper

    ranges = {t: np.max([np.abs(a[t]).max(axis=(0, 2, 3)) for a in acts], axis=0)
              for dw, pw, ops in found for t in chain_tensors(pw, ops)}
    made = []

    def const(array, base: str) -> str:
        name = f"{base}/equalized{len(made)}"
        made.append(name)
        graph.g.initializer.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    largest = []
    for dw, pw, ops in found:
        s = np.full(graph.init[dw.input[1]].shape[0], cap)
        for t in chain_tensors(pw, ops):
            s = np.minimum(s, ranges[t].max() / np.maximum(ranges[t], 1e-12))
        s = np.maximum(s, 1.0)
        col = s.reshape(-1, 1, 1)
        w = graph.init[pw.input[1]]
        pw.input[1] = const(w * s.reshape(-1, *[1] * (w.ndim - 1)), pw.input[1])
        if len(pw.input) > 2 and pw.input[2]:
            pw.input[2] = const(graph.init[pw.input[2]] * s, pw.input[2])
        for kind, n in ops:
            if kind == "Add":
                i = 0 if graph.scalar(n.input[0]) else 1
                n.input[i] = const(graph.init[n.input[i]].reshape(()) * col, n.input[i])
            elif kind == "hardswish":   # the gate reads u itself: u = u' / s
                add = n[0]
                i = 0 if not graph.scalar(add.input[0]) else 1
                unscale = helper.make_node("Mul", [add.input[i], const(1.0 / col, add.name)],
                                           [add.name + "/unscaled"], name=add.name + "/unscale")
                add.input[i] = unscale.output[0]
                graph.g.node.insert(list(graph.g.node).index(add), unscale)
        dw.input[1] = const(graph.init[dw.input[1]] / s.reshape(-1, 1, 1, 1), dw.input[1])
        largest.append(float(s.max()))
    return largest


def main() -> int:
    import onnx
    import onnxruntime as ort
    import onnxslim

    cap = (("--cap",), {"type": float, "default": 64.0, "help": "largest channel scale (default 64)"})
    a, work = work_folder(__doc__.splitlines()[0], "dw-equalize-", cap)
    for name, shape in CASES.items():
        case = zoo.BY_NAME[name]
        paths = case.resolve()
        model = onnxslim.slim(onnx.load(paths["source"]), model_check=False, input_shapes=[f"x:{shape}"])
        plain = work / f"{name}-slim.onnx"
        onnx.save(model, str(plain))
        graph = Graph(model)
        found = graph.depthwise()
        xs = np.load(paths["calibration"])["x"][:16].astype(np.float32)
        names = sorted({dw.input[0] for dw, _, _ in found} | {t for _, pw, ops in found for t in chain_tensors(pw, ops)})
        acts = activations(model, names, xs)
        print(f"{name}: {len(found)} depthwise convs fed through a pointwise conv's chain")
        cause(graph, found, acts)
        largest = equalize(graph, found, acts, a.cap)
        onnx.checker.check_model(graph.model)
        equalized = work / f"{name}-equalized.onnx"
        onnx.save(graph.model, str(equalized))
        so = ort.SessionOptions()
        so.log_severity_level = 3
        x = {"x": xs[:1]}
        diff = max(float(np.abs(r - q).max()) for r, q in zip(
            ort.InferenceSession(str(plain), so).run(None, x), ort.InferenceSession(str(equalized), so).run(None, x)))
        print(f"  equalized {len(largest)} convs (largest s per conv {min(largest):.1f}-{max(largest):.1f}); "
              f"max |diff| of the float output {diff:.2e}")
        for label, src in (("as exported", plain), ("equalized", equalized)):
            for recipe, score in build(src, work / f"{name}-{label.replace(' ', '-')}", case):
                print(f"  {label:12s}  {recipe:62s}  score {score:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
