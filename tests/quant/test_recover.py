"""The quantize -> parity -> recover loop on tiny ONNX models with a planted int8 weakness, through
the real pipeline (onnxruntime's quantizer, qdq_loss_debug pairing, the agent's parity code)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import quant_models as qm
from support import run_cli


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory):
    d = tmp_path_factory.mktemp("sensitive")
    return {"model": qm.sensitive_convnet(d / "sens.onnx"),
            "inputs": qm.samples_npz(d / "in.npz", "x", (1, 3, 16, 16), 8, seed=0),
            "calib": qm.samples_npz(d / "cal.npz", "x", (1, 3, 16, 16), 32, seed=1), "dir": d}


def _build(model, profile, inputs, calib, out, **kw):
    from packager.pipeline import BuildOptions, build

    return build(BuildOptions(source=str(model), profile=str(profile), inputs=inputs, calibration=calib,
                              out=out, force=True, **kw))


def test_a_sensitive_layer_is_left_in_float_and_the_manifest_says_so(sensitive, tmp_path):
    res = _build(sensitive["model"], "x86-cpu-int8", sensitive["inputs"], sensitive["calib"], tmp_path)
    q = res.manifest["quantization"]
    attempts = q["attempts"]
    assert attempts[0]["passed"] is False                     # every op int8: conv2's weights ruin it
    assert attempts[0]["score"] < 0.5
    assert attempts[-1]["passed"] is True
    assert "conv2" in q["float_nodes"]                        # the planted node, found by measurement
    assert set(q["float_nodes"]) <= {"conv2", "conv3"}        # and not much else
    assert "fallback: conv2" in attempts[1]["why"]            # the first fallback round named it first
    assert q["recipe"]["float_nodes"] == q["float_nodes"]
    cost = q["fallback_cost"]
    assert cost["full_int8_recipe"] == "static, all ops, per-channel, minmax, uint8 activations"   # x86 target
    assert cost["with_fallbacks_ms"] > 0 and cost["full_int8_ms"] > 0 and "extra_bytes" in cost
    assert q["host_latency"]["int8_ms"] == cost["with_fallbacks_ms"]   # one timing session for both
    assert res.manifest["host_parity"]["passed"]
    assert q["activation_type"] == "uint8" and "x86" in q["activation_type_why"]     # x86-cpu-int8 targets x86
    assert isinstance(q["reduce_range"], bool) and q["reduce_range_why"] and "int8_flags" in q["build_host_cpu"]
    th = res.manifest["parity"]["thresholds"]
    assert th["classifier_outputs"] == [] and th["slice_cosine_min"] == 0.95


def test_build_prints_the_recipes_and_what_the_float_nodes_cost(sensitive, tmp_path):
    p = run_cli("build", sensitive["model"], "--profile", "x86-cpu-int8", "--inputs", sensitive["inputs"],
                "--calibration", sensitive["calib"], "--out", tmp_path / "out", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "recipes  " in p.stdout and "measured in" in p.stdout
    assert "static, all ops, per-channel, minmax, uint8 activations" in p.stdout
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("float ")][0]
    assert "left in float" in line and "ms (" in line and "KiB vs full int8" in line and "conv2" in line
    assert "WORST SLICE" in p.stdout


def test_without_fallbacks_it_fails_naming_the_planted_node(sensitive, tmp_path):
    prof = qm.profile_file(tmp_path, "nofallback", "extends: x86-cpu-int8\nquantization: {max_fallbacks: 0}\n")
    p = run_cli("build", sensitive["model"], "--profile", prof, "--inputs", sensitive["inputs"],
                "--calibration", sensitive["calib"], "--out", tmp_path / "out", "--json", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("edgepack: host parity failed")]
    assert len(errors) == 1                                                    # ONE line
    line = errors[0]
    assert "first diverging tensor: node 'relu2' (Relu) (the quantizer folded it into 'conv2')" in line
    assert "output 'y': cosine" in line and "recipes tried (static, all ops, per-channel, minmax, uint8 activations:" in line
    assert "Traceback" not in p.stderr
    details = json.loads(p.stdout)                                             # --json: the whole table
    assert details["diagnosis"]["first_diverging"]["quantized_as"] == ["conv2"]
    assert [r["tensor"] for r in details["diagnosis"]["rows"]] == ["r1", "r2", "y"]
    assert len(details["attempts"]) >= 2 and not any(a.get("passed") for a in details["attempts"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())   # nothing half-written


def test_diagnose_prints_the_table_for_a_source(sensitive, tmp_path):
    prof = qm.profile_file(tmp_path, "nofb", "extends: x86-cpu-int8\nquantization: {max_fallbacks: 0, "
                                             "max_attempts: 1}\n")
    p = run_cli("diagnose", sensitive["model"], "--profile", prof, "--inputs", sensitive["inputs"],
                "--calibration", sensitive["calib"], cwd=tmp_path)
    assert p.returncode == 1
    assert "first    node 'relu2' (Relu) (the quantizer folded it into 'conv2')" in p.stdout
    assert "NODE" in p.stdout and "conv3" in p.stdout
    j = run_cli("diagnose", sensitive["model"], "--profile", prof, "--inputs", sensitive["inputs"],
                "--calibration", sensitive["calib"], "--json", cwd=tmp_path)
    d = json.loads(j.stdout)
    assert d["parity_passed"] is False and d["diagnosis"]["kind"] == "qdq"
    assert d["diagnosis"]["first_diverging"]["tensor"] == "r2"
    assert list(tmp_path.iterdir()) == [prof]                                  # diagnose writes nothing


def test_diagnose_a_bundle_rebuilds_its_source(sensitive, tmp_path):
    res = _build(sensitive["model"], "x86-cpu-int8", sensitive["inputs"], sensitive["calib"], tmp_path / "b")
    p = run_cli("diagnose", res.bundle, "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["bundle"] == str(res.bundle) and d["parity_passed"] is True and d["profile"] == "x86-cpu-int8"
    assert d["diagnosis"]["covered"] is True and d["diagnosis"]["tensors_compared"] >= 3
    assert d["float_nodes"] and "conv2" in d["float_nodes"]


def test_diagnose_a_bundle_whose_source_is_gone_shows_what_the_build_recorded(sensitive, tmp_path):
    import shutil

    src = tmp_path / "copy.onnx"
    shutil.copyfile(sensitive["model"], src)
    res = _build(src, "x86-cpu-int8", sensitive["inputs"], sensitive["calib"], tmp_path / "b")
    src.unlink()
    p = run_cli("diagnose", res.bundle, "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["diagnosis"]["covered"] is False and "not on this machine" in d["diagnosis"]["note"]
    assert d["float_nodes"] == res.manifest["quantization"]["float_nodes"] and len(d["attempts"]) >= 2


def test_collapsed_detector_scores_are_caught_and_recovered(tmp_path):
    """A real QDQ model whose score rows collapse: every op quantized, the head's Concat shares one
    scale between boxes in pixels and scores in [0, 1]."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    from agent import parity
    from packager.formats.onnx.quantize import _Reader
    import onnxruntime as ort

    model = qm.detector_head(tmp_path / "head.onnx")
    rng = np.random.default_rng(0)
    calib = [{"feat": rng.normal(0, 1, (8, 64)).astype(np.float32)} for _ in range(16)]
    feeds = [{"feat": rng.normal(0, 1, (8, 64)).astype(np.float32)} for _ in range(4)]
    q = tmp_path / "head.qdq.onnx"
    quantize_static(str(model), str(q), _Reader(calib), quant_format=QuantFormat.QDQ)
    run = lambda p: [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, f)[0] for f in feeds]
    ref, got = run(model), run(q)
    assert np.abs(np.concatenate([g[0, 4:] for g in got])).max() == 0.0       # every score rounds to 0
    out = parity.compare({"output0": ref}, {"output0": got}, {"cosine_min": 0.98, "slice_cosine_min": 0.95,
                                                            "slice_atol": 0.05})["outputs"][0]
    assert out["cosine"] > 0.999 and not out["passed"] and out["worst_slice"]["index"] >= 4

    np.savez(tmp_path / "in.npz", feat=np.stack([f["feat"] for f in feeds]))
    np.savez(tmp_path / "cal.npz", feat=np.stack([c["feat"] for c in calib]))
    res = _build(model, "x86-cpu-int8", tmp_path / "in.npz", tmp_path / "cal.npz", tmp_path / "out",
                 precision="int8-static")
    q = res.manifest["quantization"]
    first = q["attempts"][0]
    assert first["passed"] is False and first["outputs"]["output0"]["worst_slice"]["cosine"] < 0.5
    assert first["outputs"]["output0"]["cosine"] > 0.999
    assert q["float_nodes"] == ["head_concat"]          # the Concat that shared one scale, and only it
    assert res.manifest["host_parity"]["passed"]
    ws = res.manifest["host_parity"]["outputs"][0]["worst_slice"]
    assert ws["cosine"] > 0.95 or ws["within_slice_atol"]


def test_a_collapsed_concat_without_fallbacks_says_what_to_do(tmp_path):
    model = qm.detector_head(tmp_path / "head.onnx")
    qm.samples_npz(tmp_path / "in.npz", "feat", (8, 64), 4)
    qm.samples_npz(tmp_path / "cal.npz", "feat", (8, 64), 16, seed=1)
    prof = qm.profile_file(tmp_path, "allint8", "extends: x86-cpu-int8\nquantization: {max_fallbacks: 0, "
                                                "op_types: [MatMul, Mul, Add, Sigmoid, Concat, Unsqueeze]}\n")
    p = run_cli("build", model, "--profile", prof, "--precision", "int8-static", "--inputs", tmp_path / "in.npz",
                "--calibration", tmp_path / "cal.npz", "--out", tmp_path / "out", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert "node 'head_concat' (Concat)" in line and "worst slice" in line
    assert "(fix: a Concat joins values of different ranges" in line


def test_fp16_keeps_a_log_and_the_ops_that_compute_its_input_in_float(tmp_path):
    """log(x*x + 1e-10) on magnitudes down to 1e-7: float16 loses the epsilon and the small squares.
    The Log alone in float changes nothing (its input was made in float16); the fallback takes the
    Add and the Mul that compute it too, and no Cast to float16 sits between those float nodes."""
    import onnx

    model = qm.log_power_head(tmp_path / "logpow.onnx")
    inputs = qm.quiet_spectra_npz(tmp_path / "in.npz", "x", 64, 8)
    res = _build(model, "jetson", inputs, None, tmp_path / "b")
    q = res.manifest["quantization"]
    assert q["attempts"][0]["passed"] is False and q["attempts"][-1]["passed"] is True
    assert {"log", "add_eps", "square"} <= set(q["float_nodes"]), q["float_nodes"]
    assert "element-wise nodes that compute a log's or root's input" in q["attempts"][1]["why"]
    assert q["casts_removed_between_float_nodes"] >= 2
    graph = onnx.load(str(res.bundle / "model" / "model.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    log_in = producer[next(n for n in graph.node if n.name == "log").input[0]]
    assert log_in.name == "add_eps", log_in.name          # float straight from the Add, no Cast pair


@pytest.mark.parametrize("float_head", [True, False])
def test_a_signal_front_end_stays_float_as_a_head_when_fallbacks_do_not_recover(tmp_path, float_head):
    """10 log10(|D x|^2 + 1e-10) on inputs over 4 decades of loudness: the power spectrum fits no int8
    scale. One fallback cannot mend it; the float head (the worst node, the line of ops it feeds, all
    that computes them) can, and the network after it stays int8. Off in the profile: refused."""
    model = qm.spectral_front_end(tmp_path / "fe.onnx")
    inputs = qm.loudness_npz(tmp_path / "in.npz", "x", 64, 8, seed=0)
    calib = qm.loudness_npz(tmp_path / "cal.npz", "x", 64, 32, seed=1)
    prof = qm.profile_file(tmp_path, "fe", "extends: x86-cpu-int8\nquantization: {mode: static, max_fallbacks: 1, "
                                           f"op_types: [MatMul, Mul, Add, Relu], float_head: {str(float_head).lower()}}}\n")
    if not float_head:
        with pytest.raises(Exception) as e:
            _build(model, prof, inputs, calib, tmp_path / "b")
        assert "first diverging tensor: node 'power'" in str(e.value)
        return
    res = _build(model, prof, inputs, calib, tmp_path / "b")
    q = res.manifest["quantization"]
    assert [a["passed"] for a in q["attempts"]] == [False, False, True], q["attempts"]
    assert q["float_head"] == 5 and q["float_nodes"] == ["dct", "power", "add_eps", "log", "to_db"]
    assert "float head: 'power'" in q["attempts"][-1]["why"] and "up to 'to_db'" in q["attempts"][-1]["why"]
    assert q["recipe_label"].endswith("float head of 5")


def test_head_ancestors_and_the_line_downstream():
    from packager.quant.head import ancestors, downstream
    from packager.quant.tensors import Node

    nodes = [Node("a", "Conv", ("x",), ("ta",)), Node("b", "ReduceSum", ("ta",), ("tb",)),
             Node("side", "Relu", ("x",), ("ts",)), Node("c", "Log", ("tb",), ("tc",)),
             Node("d", "Mul", ("tc",), ("td",)), Node("e", "ReduceMin", ("td",), ("te",)),
             Node("f", "Sub", ("td", "te"), ("tf",))]
    assert ancestors("c", nodes) == ["a", "b", "c"]
    assert downstream("b", nodes) == ["c", "d"]       # td has two readers: the line ends at d
    assert downstream("e", nodes) == ["f"] and downstream("f", nodes) == []
