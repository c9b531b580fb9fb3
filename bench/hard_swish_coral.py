"""Does one HARD_SWISH op save PP-OCRv4 rec x coral? (issue 10; docs/FORMATS.md, "Real models").

paddle2onnx writes hardswish as Add(x, 3) -> Clip(0, 6) -> Mul(x, .) -> Div(., 6): in full int8
TF-Lite each of those ops requantizes (the Mul's range grows with x squared). Written as ONNX
HardSwish (opset 14), onnx2tf's `x * relu6(x + 3) * 0.16666667` is what TF-Lite's converter fuses
into one HARD_SWISH op, whose int8 kernel keeps the intermediate values in higher precision.
This rewrites the model (a measurement, not a shipped pass), builds both graphs for the coral
profile through the CLI and prints every recipe's parity score.

    .venv/bin/python bench/hard_swish_coral.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "zoo"))
import zoo  # noqa: E402


def _const(values: dict, name: str, want: float) -> bool:
    a = values.get(name)
    return a is not None and a.size == 1 and abs(float(a.reshape(-1)[0]) - want) < 1e-6


def hardswish_at(div, producer: dict, uses: dict, values: dict):
    """(x, add, clip, mul) where `div` ends paddle2onnx's hardswish x * clip(x + 3, 0, 6) / 6 and its
    Add, Clip and Mul are each read once; else None. (dw_equalize_coral.py matches the same pattern.)"""
    if div.op_type != "Div" or not _const(values, div.input[1], 6.0):
        return None
    mul = producer.get(div.input[0])
    if mul is None or mul.op_type != "Mul":
        return None
    for xi, ci in ((0, 1), (1, 0)):
        clip = producer.get(mul.input[ci])
        add = producer.get(clip.input[0]) if clip is not None and clip.op_type == "Clip" else None
        x = mul.input[xi]
        if add is None or add.op_type != "Add" or add.input[0] != x or not _const(values, add.input[1], 3.0) \
                or not (_const(values, clip.input[1], 0.0) and _const(values, clip.input[2], 6.0)) \
                or any(uses[n.output[0]] != 1 for n in (add, clip, mul)):
            continue
        return x, add, clip, mul
    return None


def rewrite(src: Path, dst: Path) -> int:
    """x * clip(x + 3, 0, 6) / 6 -> HardSwish(x), at opset 14; returns how many were fused."""
    import onnx
    from onnx import helper, numpy_helper, version_converter

    m = version_converter.convert_version(onnx.load(str(src)), 14)
    g = m.graph
    values = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"}
    values.update({i.name: numpy_helper.to_array(i) for i in g.initializer})
    producer = {o: n for n in g.node for o in n.output}
    uses: dict[str, int] = {}
    for n in g.node:
        for x in n.input:
            uses[x] = uses.get(x, 0) + 1
    drop, fused = set(), {}
    for div in g.node:
        found = hardswish_at(div, producer, uses, values)
        if found:
            x, add, clip, mul = found
            drop |= {id(add), id(clip), id(mul)}
            fused[id(div)] = helper.make_node("HardSwish", [x], [div.output[0]], name=div.name + "/hard_swish")
    nodes = [fused.get(id(n), n) for n in g.node if id(n) not in drop]
    used = {x for n in nodes for x in n.input} | {o.name for o in g.output}
    nodes = [n for n in nodes if n.op_type != "Constant" or n.output[0] in used]   # the patterns' 0, 3, 6
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return len(fused)


def build(source: Path, out: Path, case: zoo.Case) -> list[tuple[str, float]]:
    argv = case.build_argv("coral", out, json=True)
    argv[1] = str(source)
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "edgepack"), *argv], capture_output=True, text=True,
                       env=case.env(), cwd=out.parent)
    text = p.stdout.strip()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return [("no JSON: " + p.stderr.strip().splitlines()[-1][:200], float("nan"))]
    attempts = doc.get("attempts") or (doc.get("manifest") or {}).get("quantization", {}).get("attempts") or []
    return [(a["label"], a.get("score", float("nan"))) for a in attempts]


def work_folder(description: str, prefix: str, *options: tuple) -> tuple[argparse.Namespace, Path]:
    """The command line of the coral measurements (this one, dw_equalize_coral, silero_split_state):
    `options` as (flags, argparse keywords), then --keep DIR, else a new temporary folder."""
    ap = argparse.ArgumentParser(description=description)
    for flags, kw in options:
        ap.add_argument(*flags, **kw)
    ap.add_argument("--keep", type=Path, default=None, help="folder for the rewritten graphs and the builds")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return a, work


def main() -> int:
    _, work = work_folder(__doc__.splitlines()[0], "hard-swish-")
    case = zoo.BY_NAME["ppocr-rec"]
    paths = case.resolve()
    original = Path(paths["source"])
    rewritten = work / "rec-hard-swish.onnx"
    n = rewrite(original, rewritten)
    import onnxruntime as ort
    x = {"x": np.load(paths["inputs"])["x"][:1].astype(np.float32)}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    diff = max(float(np.abs(r - s).max()) for r, s in zip(
        ort.InferenceSession(str(original), so).run(None, x), ort.InferenceSession(str(rewritten), so).run(None, x)))
    print(f"fused {n} hardswish patterns into HardSwish; max |diff| of the float outputs {diff:.2e}")
    for label, src in (("as exported", original), ("HardSwish", rewritten)):
        for recipe, score in build(src, work / label.replace(" ", "-"), case):
            print(f"{label:12s}  {recipe:55s}  score {score:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
