"""A quiet terminal and a clean working directory (issue 10, item 7).

Without --debug, stderr carries only edgepack's own lines: third-party log records (on the root
logger, as onnxruntime's quantizer logs), Python warnings, prints and C-level writes to fds 1/2 go
to the debug log. A build writes nothing outside --out and its temp folder, even where onnxruntime
writes into the current directory (sym_shape_infer_temp.onnx and a uuid-named .data file).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from badinput import cli

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "zoo"))

# onnxruntime's quantizer and friends, as they appeared relayed with edgepack's prefix before
RELAYED = re.compile(r"Please consider|Expected bias|to be an initializer|Quantization parameters for tensor|"
                     r"Inference failed or unsupported type|Loading weights|_pytree|Warning:|it/s\]")

NOISY = '''
import logging, os, sys, warnings
import torch


def noisy():
    os.write(2, b"C-LEVEL chatter on fd 2\\n")
    os.write(1, b"C-LEVEL chatter on fd 1\\n")
    print("PRINTED chatter")
    print("STDERR chatter", file=sys.stderr)
    logging.getLogger().warning("ROOT-LOGGER chatter")
    logging.getLogger("somelib").error("LIBRARY chatter")
    warnings.warn("DEPRECATED chatter", FutureWarning)
    torch.manual_seed(0)
    return torch.nn.Linear(4, 2).eval(), torch.randn(1, 4)
'''


def only_own_lines(stderr: str) -> list[str]:
    """The stderr lines that are not edgepack's own (empty when the terminal was quiet)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and (not ln.startswith("edgepack:") or RELAYED.search(ln))]


def leftover_temp(tmp_path: Path) -> list[str]:
    """What the build left in its TMPDIR (onnxruntime's `.ses` file and torch's torchinductor_<user>
    cache folder land in the build's own temp folder, so: nothing)."""
    return sorted(os.listdir(tmp_path / "systmp"))


def big_two_input_onnx(path: Path) -> Path:
    """A 2.4 MB model whose two inputs have different symbolic batch names: onnxruntime's symbolic
    shape inference (run by its quantizer's pre-processing) stops "incomplete" and then saves
    sym_shape_infer_temp.onnx with a uuid-named .data file into the current directory."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((768, 768)).astype(np.float32) * 0.03, "W")
    g = helper.make_graph([helper.make_node("MatMul", ["a", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
                          "two", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 768]),
                                  helper.make_tensor_value_info("b", TensorProto.FLOAT, ["M", 768])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 768])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    assert path.stat().st_size > 2_000_000
    return path


def test_third_party_output_goes_to_the_debug_log(tmp_path):
    (tmp_path / "noisy.py").write_text(NOISY)
    run = tmp_path / "cwd"
    run.mkdir()
    args = ("build", f"{tmp_path}/noisy.py:noisy", "--profile", "x86-cpu", "--out", tmp_path / "out", "--json")
    p = cli(tmp_path, *args, cwd=run)
    assert p.returncode == 0, p.stderr
    json.loads(p.stdout)                                   # stdout: the JSON and nothing else
    assert "chatter" not in p.stderr and "chatter" not in p.stdout
    assert only_own_lines(p.stderr) == [], p.stderr
    assert "edgepack: loading" in p.stderr                 # edgepack's own lines stay
    d = cli(tmp_path, "--debug", *args, "--force", cwd=run)
    assert d.returncode == 0, d.stderr
    json.loads(d.stdout)
    for word in ("C-LEVEL chatter on fd 2", "PRINTED", "STDERR", "ROOT-LOGGER", "LIBRARY", "DEPRECATED"):
        assert word in d.stderr, word                      # --debug shows every one of them
    assert list(run.iterdir()) == []


def test_int8_build_of_a_2mb_model_leaves_cwd_empty_and_stderr_quiet(tmp_path):
    model = big_two_input_onnx(tmp_path / "two.onnx")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "in.npz", a=rng.standard_normal((8, 1, 768)).astype(np.float32),
             b=rng.standard_normal((8, 1, 768)).astype(np.float32))
    run = tmp_path / "cwd"
    run.mkdir()
    p = cli(tmp_path, "build", model, "--profile", "x86-cpu-int8", "--out", tmp_path / "out",
            "--inputs", tmp_path / "in.npz", cwd=run)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(run)) == []                   # no sym_shape_infer_temp.onnx, no <uuid>.data
    assert leftover_temp(tmp_path) == []                   # the temp folder is gone too
    assert only_own_lines(p.stderr) == [], p.stderr
    assert (tmp_path / "out").is_dir() and len(os.listdir(tmp_path / "out")) == 1


def test_cwd_is_restored_after_an_interrupt(tmp_path, monkeypatch):
    """Steps run with the temp folder as cwd; Ctrl-C inside one still gives the caller's cwd back."""
    import tempfile

    from packager import pipeline

    seen = {}

    def interrupted(ctx, route):
        seen["cwd"] = os.getcwd()
        Path("left-by-a-converter.data").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_route", interrupted)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    (tmp_path / "systmp").mkdir()
    run = tmp_path / "cwd"
    run.mkdir()
    monkeypatch.chdir(run)
    with pytest.raises(KeyboardInterrupt):
        pipeline.build(pipeline.BuildOptions(source=f"{REPO}/examples/models.py:mlp", profile="x86-cpu",
                                             out=Path("out")))
    assert os.getcwd() == str(run)
    assert seen["cwd"] != str(run) and seen["cwd"].startswith(str(tmp_path / "systmp"))
    assert list(run.iterdir()) == [] and list((tmp_path / "systmp").iterdir()) == []


@pytest.mark.slow
def test_real_transformer_int8_build_is_quiet_and_clean(tmp_path):
    """The zoo's MiniLM factory (transformers' "Loading weights" bar, torch's _pytree log lines,
    ORT's quantizer) from an empty folder, int8, only --inputs: nothing but edgepack's lines."""
    import zoo

    case = zoo.BY_NAME["minilm-factory"]
    paths = case.resolve_or_skip()
    run = tmp_path / "cwd"
    run.mkdir()
    p = cli(tmp_path, "build", paths["source"], "--profile", "x86-cpu-int8", "--out", tmp_path / "out",
            "--inputs", paths["inputs"], "--calibration", paths["calibration"], cwd=run, env=case.env(),
            timeout=900)
    assert p.returncode == 0, p.stderr
    assert os.listdir(run) == [] and leftover_temp(tmp_path) == []
    assert only_own_lines(p.stderr) == [], p.stderr
