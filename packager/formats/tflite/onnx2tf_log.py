"""Read onnx2tf's own output: where a conversion stopped, and where its per-op check found the
first mismatch, as one line that names the ONNX node and its op (never a TF traceback's tail).

onnx2tf (1.29.24, utils/common_functions.print_node_info) prints `onnx_op_name: <node>` for every
node a failure unwinds through, innermost first; the exception it re-raises ends the child's
stderr. Its -cotof check prints one `onnx_output_name: <tensor> ... validate_result: Unmatched
max_abs_error: <x>` line per tensor, in graph order.
"""
from __future__ import annotations

import re
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
EXC = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)):\s*(.*)$")
# What TensorFlow's messages carry that says why: the line worth keeping after a generic head.
WHY = re.compile(r"Dimensions must be equal|must be >= 0|must be the output of|Found:|Incompatible shapes|"
                 r"cannot be broadcast|not supported|Unsupported|out of range|invalid|must have rank|"
                 r"has no attribute|Can't convert|ndims|Shapes .* are incompatible", re.I)


def clean(text: str) -> list[str]:
    return [ANSI.sub("", ln).rstrip() for ln in (text or "").splitlines()]


def nodes_of(graph_file: Path) -> tuple[dict, dict]:
    """{node name: op type} and {tensor name: (node name, op type)} of the graph onnx2tf converted."""
    import onnx

    try:
        model = onnx.load(str(graph_file), load_external_data=False)
    except Exception:
        return {}, {}
    by_node, by_tensor = {}, {}
    for n in model.graph.node:
        by_node[n.name] = n.op_type
        for o in n.output:
            by_tensor[o] = (n.name, n.op_type)
    return by_node, by_tensor


def _exception(lines: list[str]) -> str:
    """The last exception the child raised: its head line, plus the line that says why."""
    idx = [i for i, ln in enumerate(lines) if EXC.match(ln.strip())]
    if not idx:
        tail = [ln.strip() for ln in lines if ln.strip()]
        return tail[-1][:200] if tail else "no output"
    i = idx[-1]
    name, msg = EXC.match(lines[i].strip()).groups()
    text = f"{name.rsplit('.', 1)[-1]}: {msg}".strip()
    if not WHY.search(msg) or "Exception encountered when calling layer" in msg:
        for ln in lines[i + 1:i + 12]:
            s = ln.strip()
            if s.startswith("Call arguments received"):
                break
            if s and not s.startswith(("File ", "^", "~")):
                text += " " + s
                break
    return _cut(" ".join(text.split()), 240)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def failure(stdout: str, stderr: str, graph_file: Path, renamed: dict | None = None) -> str:
    """'stopped at ONNX node '<name>' (<op>): <exception>' from a failed onnx2tf run."""
    out, err = clean(stdout), clean(stderr)
    names = []
    for ln in out + err:
        m = re.search(r"onnx_op_name:\s*(\S+)", ln)
        if m:
            names.append(re.sub("^wa/", "/", m.group(1)))
    exc = _exception(err or out)
    by_node, _ = nodes_of(graph_file)
    back = renamed or {}
    missing = [m.group(1) for ln in out for m in [re.search(r"(\w+) OP is not yet implemented", ln)] if m]
    if missing:
        op = missing[0]
        nodes = [back.get(n, n) for n, t in by_node.items() if t == op]
        first = f" (node '{nodes[0]}'" + (f", first of {len(nodes)})" if len(nodes) > 1 else ")") if nodes else ""
        return f"onnx2tf has no converter for the ONNX op {op}{first}"
    if not names:
        return exc
    node = names[0]
    op = by_node.get(node)
    where = f"stopped at ONNX node '{back.get(node, node)}'" + (f" ({op})" if op else "")
    outer = [n for n in names[1:] if n != node]
    if outer:
        where += f" inside '{back.get(outer[-1], outer[-1])}'" + \
            (f" ({by_node[outer[-1]]})" if outer[-1] in by_node else "")
    return f"{where}: {exc}"


def first_unmatched(stdout: str, graph_file: Path, renamed: dict | None = None) -> str:
    """The first tensor in graph order that onnx2tf's -cotof check found unmatched, with its node."""
    _, by_tensor = nodes_of(graph_file)
    rows = []
    for ln in clean(stdout):
        m = re.search(r"onnx_output_name:\s*(\S+).*validate_result:\s*(Unmatched|Matches|Skipped)"
                      r"(?:.*max_abs_error:\s*([0-9.eE+-]+|nan|inf))?", ln)
        if m:
            rows.append((re.sub("^wa/", "/", m.group(1)), m.group(2), m.group(3)))
    if not rows:
        return "onnx2tf's per-op check (-cotof) did not run to the end (--debug logs its output)"
    for name, verdict, err in rows:
        if verdict == "Unmatched":
            node, op = by_tensor.get(name, (name, "?"))
            node = (renamed or {}).get(node, node)
            return (f"first ONNX node whose output differs (onnx2tf -cotof, atol 1e-4 + rtol 1e-3): '{node}' ({op}), "
                    f"tensor '{name}', max abs error {err}")
    return f"onnx2tf's per-op check (-cotof) matched all {len(rows)} tensors it compared; the difference is after them"


def runtime_error(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    ops = sorted(set(re.findall(r"\b(Flex\w+|tf\.\w+)", text)))
    if "Select TensorFlow op" in text or ops:
        return ("it needs Select TensorFlow (Flex) ops the builtin LiteRT interpreter lacks"
                + (f": {', '.join(ops[:6])}" if ops else ""))
    return _cut(text, 240)


def flex_error(text: str, graph_file: Path) -> str:
    """The TF-Lite converter's refusal of ops that need Flex, with the ONNX nodes behind them (the
    converter's locations read `model/<onnx2tf layer>/<TF op>@...`; a layer is named after its ONNX
    node or output tensor)."""
    ops = sorted(set(re.findall(r"'tf\.([A-Z]\w+)' op is neither", text)) or
                 set(re.findall(r"\btf\.([A-Z]\w+)", text)))
    flex = ", ".join(f"tf.{o}" for o in ops[:8]) or _cut(text, 200)
    by_node, by_tensor = nodes_of(graph_file)
    where = []
    for layer, tf_op in re.findall(r'"model/([^"@]+?)/(\w+)@', text):
        node = by_tensor.get(layer, (layer, by_node.get(layer)))
        item = f"'{node[0]}' ({node[1]})" if node[1] else None
        if tf_op in ops and item and item not in where:
            where.append(item)
    at = f" at ONNX node {', '.join(where[:4])}" if where else ""
    return (f"the model needs TensorFlow ops that TF-Lite's builtin ops lack (Select TF / Flex ops, which "
            f"the device's LiteRT does not ship): {flex}{at}")
