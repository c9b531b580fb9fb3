"""The runtime registry (agent/runtimes/__init__.py) and the interface every runtime shares."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import REPO, run_agent


def test_an_unknown_runtime_names_the_known_ones():
    from agent import runtimes

    with pytest.raises(runtimes.RuntimeMissing, match=r"does not know runtime 'coreml' \(knows: litert, "
                                                        r"onnxruntime, openvino, torch\)"):
        runtimes.create("coreml")


def test_a_runtime_module_is_imported_only_when_used():
    code = ("import json, sys; from agent import runtimes; assert 'litert' in runtimes.RUNTIMES; "
            "assert sorted(runtimes.RUNTIMES) == ['litert', 'onnxruntime', 'openvino', 'torch']; "
            "loaded = lambda: sorted(m for m in sys.modules if m.startswith('agent.runtimes.')); "
            "before = loaded(); runtimes.create('openvino'); "
            "print(json.dumps([before, loaded(), 'openvino' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == [["agent.runtimes.base"], ["agent.runtimes.base", "agent.runtimes.openvino_rt"],
                                       False]


def test_the_public_names_stay():
    from agent import runtimes
    from agent.runtimes import LiteRtRuntime, OnnxRuntime, OpenVinoRuntime, TorchRuntime
    from agent.runtimes.base import RuntimeLoadError, RuntimeMissing

    assert runtimes.RuntimeMissing is RuntimeMissing and runtimes.RuntimeLoadError is RuntimeLoadError
    assert runtimes.RUNTIMES["litert"] is LiteRtRuntime and callable(LiteRtRuntime.find)
    for name, cls in (("onnxruntime", OnnxRuntime), ("litert", LiteRtRuntime), ("torch", TorchRuntime),
                      ("openvino", OpenVinoRuntime)):
        rt = runtimes.create(name)
        assert type(rt) is cls and rt.name == name
        assert {"name", "version", "providers_requested", "providers_available", "providers_used", "provider",
                "fallbacks", "threads"} <= set(rt.describe())
    with pytest.raises(AttributeError):
        runtimes.NoSuchRuntime  # noqa: B018
    with pytest.raises(KeyError):
        runtimes.RUNTIMES["coreml"]


def test_runtime_modules_do_not_shadow_their_libraries():
    from agent.runtimes import REGISTRY

    libraries = {"onnxruntime", "torch", "openvino", "ai_edge_litert", "tflite_runtime", "tensorflow"}
    assert not {module for module, _ in REGISTRY.values()} & libraries


def test_installed_and_facts_list_every_runtime_here(bundles):
    from agent import runtimes

    found = runtimes.installed()
    assert {"onnxruntime", "litert", "torch", "openvino"} <= set(found)
    assert "CPU" in found["openvino"]["devices"] and found["openvino"]["version"].count(".") == 2
    proc = run_agent(bundles("mlp", "x86-cpu"), "facts", "--json")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["runtimes"]["openvino"] == found["openvino"]
    assert "CPUExecutionProvider" in facts["runtimes"]["onnxruntime"]["providers"]
