"""The LiteRT runtime (agent/runtimes/litert.py): delegates that are absent fall back quietly."""
from __future__ import annotations

import subprocess
import sys

from agent_support import selftest
from support import REPO


def test_a_gpu_delegate_that_is_absent_falls_back_with_a_clean_stderr(bundles):
    """android asks for [gpu, xnnpack]: without the GPU delegate LiteRT's half-made Delegate used to
    print 'Exception ignored in: <function Delegate.__del__>' and a traceback on every self-test."""
    proc, report = selftest(bundles("mlp", "android"))
    assert proc.returncode == 0, report["verdict"]
    rt = report["runtime"]
    assert rt["name"] == "litert" and rt["providers_requested"] == ["gpu", "xnnpack"]
    assert rt["providers_used"] == ["cpu (xnnpack)"]
    assert any(f.startswith("gpu delegate not available on this device (") for f in rt["fallbacks"]), rt
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert "INFO: Created TensorFlow Lite XNNPACK delegate" not in proc.stderr, proc.stderr


def test_load_delegate_of_an_absent_library_leaves_nothing_on_stderr():
    code = ("import gc; from agent.runtimes import litert; mod = litert.LiteRtRuntime.find()[0]; "
            "d, why = litert.load_delegate(mod, ('libedgepack-no-such-delegate.so', 'libnot-this-either.so')); "
            "gc.collect(); print(d, why)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("None libnot-this-either.so: cannot open shared object file"), proc.stdout
    assert proc.stderr == ""
