"""The agent package as a whole: Python 3.8 grammar, nothing heavy imported at start."""
from __future__ import annotations

import ast
import subprocess
import sys

from agent_support import AGENT
from support import REPO

HEAVY = ('onnxruntime', 'torch', 'tensorflow', 'ai_edge_litert', 'packager', 'onnx', 'openvino')


def test_every_agent_file_parses_with_python38_grammar():
    paths = sorted(AGENT.rglob("*.py"))
    assert AGENT / "runtimes" / "openvino_rt.py" in paths
    for path in paths:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


def test_agent_imports_no_runtime_at_start():
    code = ("import sys, agent.__main__, agent.selftest, agent.report, agent.manifest, agent.parity; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r "
            "or m.startswith('agent.runtimes.') and m != 'agent.runtimes.base'))" % (HEAVY,))
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
