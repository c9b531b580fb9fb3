"""Quantization writes nothing into the user's current directory and keeps onnxruntime's chatter
("Please consider to run pre-processing", "Expected bias ... to be an initializer") off stderr."""
from __future__ import annotations

import logging
import os

import quant_models as qm
from support import run_cli

THIRD_PARTY = ("Please consider", "pre-processing skipped", "to be an initializer", "Quantization parameters for tensor",
               "sym_shape_infer", "WARNING:root")


def test_an_int8_build_of_a_big_model_from_an_empty_folder_leaves_it_empty(tmp_path):
    """onnxruntime's own pre-processing, run bare on this model from this folder, leaves
    sym_shape_infer_temp.onnx and a 2.4 MB uuid .data file here (checked below); the build must not."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = qm.shape_inference_stopper(tmp_path / "big.onnx")
    assert model.stat().st_size > 2 * 2 ** 20
    bare = tmp_path / "bare"
    bare.mkdir()
    old = os.getcwd()
    os.chdir(bare)
    try:
        try:
            quant_pre_process(str(model), str(tmp_path / "pre.onnx"), skip_symbolic_shape=False, auto_merge=True)
        except Exception:  # noqa: BLE001 - "Incomplete symbolic shape inference": the point of this model
            pass
    finally:
        os.chdir(old)
    assert "sym_shape_infer_temp.onnx" in os.listdir(bare)     # the tool really does write there

    inputs = qm.samples_npz(tmp_path / "in.npz", "x", (1, 600), 4)
    cwd = tmp_path / "empty"
    cwd.mkdir()
    p = run_cli("build", model, "--profile", "x86-cpu-int8", "--inputs", inputs, "--out", tmp_path / "dist", cwd=cwd)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(cwd)) == []
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("edgepack") for ln in lines), lines
    assert not [ln for ln in lines if any(t in ln for t in THIRD_PARTY)], lines
    p = run_cli("--debug", "build", model, "--profile", "x86-cpu-int8", "--inputs", inputs, "--out",
                tmp_path / "dist", "--force", cwd=cwd)
    assert "Incomplete symbolic shape inference" in p.stderr     # with --debug the reason is there
    assert sorted(os.listdir(cwd)) == []


def test_the_sandbox_demotes_root_logger_records_and_restores_the_cwd(tmp_path, caplog):
    from packager.quant.scratch import sandbox

    before = os.getcwd()
    with caplog.at_level(logging.DEBUG):
        with sandbox(tmp_path) as scratch:
            assert os.getcwd() == str(scratch)
            (scratch / "sym_shape_infer_temp.onnx").write_text("x")     # what the tools leave behind
            logging.warning("Expected bias 'b' to be an initializer")  # the root logger, as ORT does
            print("progress 50%")
    assert os.getcwd() == before and not scratch.exists()
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("packager.quant.scratch", logging.DEBUG, "[third-party] Expected bias 'b' to be an initializer") in records
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("progress 50%" in m for _, _, m in records)
