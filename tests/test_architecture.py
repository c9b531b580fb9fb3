"""The house rules of docs/ARCHITECTURE.md, checked: no import circle (imports inside functions
count; `if TYPE_CHECKING:` blocks do not), no module over ~400 lines but agent/device.py, profile
values read only through the typed Profile, and every format's facts in its backend."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in ("packager", "agent"):
        for path in (REPO / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, mods: dict) -> set[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names if a.name in mods)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                target = base + ("." + node.module if node.module else "")
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods}
            deps |= subs
            if len(subs) < len(node.names) and target in mods:
                deps.add(target)
    deps.discard(name)
    return deps


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_packager_or_agent():
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert _cycles(graph) == []


def test_the_circle_check_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_no_module_over_the_limit_but_the_device_file():
    big = {str(p.relative_to(REPO)): n for p in _modules().values()
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(big) <= {"agent/device.py"}, big


def test_the_agent_never_imports_the_packager():
    mods = _modules()
    for name, path in mods.items():
        if name.startswith("agent"):
            assert not any(d.startswith("packager") for d in _imports(name, path, mods)), name


def test_profile_values_are_read_through_the_typed_profile():
    pattern = re.compile(r"""(prof|profile)(\.data)?\[["']""")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "packager").rglob("*.py")
                 if p.name != "profiles.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_format_facts_live_in_the_backends():
    """Outside packager/formats, no code names a format's runtime or model file."""
    from packager import formats

    facts = set()
    for b in formats.all_backends():
        facts |= {f'"{b.model_file}"', f'"{b.runtime}"'}
    allowed = {"formats", "cli"}
    offenders = []
    for path in (REPO / "packager").rglob("*.py"):
        rel = path.relative_to(REPO / "packager").parts
        if rel[0] in allowed:
            continue
        text = path.read_text()
        offenders += [f"{path.name}: {f}" for f in facts if f in text]
    assert offenders == []
