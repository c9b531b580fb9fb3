"""Would Silero VAD x coral pass if h and c had int8 scales of their own? (issue 10; docs/FORMATS.md,
"Real models"). A measurement, not a shipped pass: the answer is no.

The model takes its LSTM state as one tensor, `state` [2, batch, 128] (h in [-1, 1], c up to +-28), so a
full-int8 model quantizes both halves with one scale. This rewrites silero_vad.onnx so that h and c are
two graph inputs, `state_0` and `state_1` [batch, 128] (the If branches' `Gather(state, i)` become the
inputs themselves; `Shape(state)` becomes [2] + Shape(state_0)), splits the zoo's sample files the same
way, builds both graphs for the coral profile through the CLI and prints every recipe's parity score.

    .venv/bin/python bench/silero_split_state.py [--keep DIR]
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.hard_swish_coral import build, work_folder, zoo  # noqa: E402  (zoo: tests/zoo on the path)


def split_graph(src: Path, dst: Path, name: str = "state") -> int:
    """`name` [2, batch, 128] -> inputs name_0, name_1 [batch, 128]; returns the Gathers replaced."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    old = next(i for i in g.input if i.name == name)
    at = list(g.input).index(old)
    g.input.remove(old)
    for k in (1, 0):
        g.input.insert(at, helper.make_tensor_value_info(f"{name}_{k}", TensorProto.FLOAT, ["batch", 128]))
    replaced = 0

    def visit(graph, consts: dict) -> None:
        nonlocal replaced
        consts = {**consts, **{n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                               for n in graph.node if n.op_type == "Constant" and n.attribute[0].name == "value"
                               and len(n.attribute[0].t.dims) == 0}}
        nodes = []
        for n in graph.node:
            if n.op_type == "Gather" and n.input[0] == name and n.input[1] in consts:
                part = f"{name}_{int(consts[n.input[1]])}"
                nodes.append(helper.make_node("Identity", [part], list(n.output), name=n.name))
                replaced += 1
                continue
            if n.op_type == "Shape" and n.input[0] == name:   # [2] + Shape(h)
                two, rest = n.output[0] + "/two", n.output[0] + "/rest"
                nodes += [helper.make_node("Shape", [f"{name}_0"], [rest], name=n.name + "/rest"),
                          helper.make_node("Constant", [], [two],
                                           value=numpy_helper.from_array(np.array([2], np.int64))),
                          helper.make_node("Concat", [two, rest], list(n.output), axis=0, name=n.name)]
                continue
            for a in n.attribute:
                if a.g.node:
                    visit(a.g, consts)
            nodes.append(n)
        del graph.node[:]
        graph.node.extend(nodes)

    visit(g, {})
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return replaced


def split_data(src: str, dst: Path, name: str = "state") -> Path:
    d = dict(np.load(src))
    state = d.pop(name)                    # (samples, 2, batch, 128)
    d[f"{name}_0"], d[f"{name}_1"] = state[:, 0], state[:, 1]
    np.savez(dst, **d)
    return dst


def main() -> int:
    import onnxruntime as ort

    _, work = work_folder(__doc__.splitlines()[0], "silero-split-")
    case = zoo.BY_NAME["silero-vad"]
    paths = case.resolve()
    split = work / "silero_vad_split.onnx"
    n = split_graph(Path(paths["source"]), split)
    split_case = dataclasses.replace(case, inputs=str(split_data(paths["inputs"], work / "vad_inputs_split.npz")),
                                     calibration=str(split_data(paths["calibration"], work / "vad_calib_split.npz")))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    d = np.load(paths["inputs"])
    feed = {"input": d["input"][0], "sr": np.array(d["sr"][0])}
    a_out = ort.InferenceSession(paths["source"], so).run(None, {**feed, "state": d["state"][0]})
    halves = {"state_0": d["state"][0][0], "state_1": d["state"][0][1]}
    b_out = ort.InferenceSession(str(split), so).run(None, {**feed, **halves})
    diff = max(float(np.abs(x - y).max()) for x, y in zip(a_out, b_out))
    print(f"replaced {n} Gathers of the state by inputs state_0, state_1; max |diff| of the float outputs {diff:.2e}")
    for label, src, c in (("one state", Path(paths["source"]), case), ("h, c apart", split, split_case)):
        for recipe, score in build(src, work / label.replace(" ", "-").replace(",", ""), c):
            print(f"{label:11s}  {recipe:58s}  score {score:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
