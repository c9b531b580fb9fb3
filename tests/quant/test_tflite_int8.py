"""TF-Lite int8 (ai-edge-quantizer) through the same loop: per-tensor table from its validation
machinery, fallbacks as NO_QUANTIZE recipe entries, coral refusing fallbacks (the Edge TPU runs
integer ops only)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import EXAMPLES, run_cli

pytest.importorskip("ai_edge_quantizer")
FACTORY = Path(__file__).resolve().parent / "quant_torch.py"


def _build(source, profile, out, **kw):
    from packager.pipeline import BuildOptions, build

    return build(BuildOptions(source=str(source), profile=profile, out=out, force=True, **kw))


@pytest.mark.slow
def test_tflite_static_int8_falls_back_the_planted_conv(tmp_path):
    res = _build(f"{FACTORY}:sensitive_convnet", "raspberry-pi", tmp_path, precision="int8-static")
    q = res.manifest["quantization"]
    assert q["attempts"][0]["passed"] is False
    assert q["float_nodes"] and res.manifest["host_parity"]["passed"]
    assert any("Conv2d" in n or "conv2" in n for n in q["float_nodes"]), q["float_nodes"]
    assert q["recipe"]["calibration_method"] == "moving-average" and q["recipe"]["reduce_range"] is False
    plain = [a["recipe"]["calibration_method"] for a in q["attempts"] if not a["recipe"].get("float_nodes")]
    assert plain[0] == "moving-average" and set(plain) <= {"moving-average", "minmax"}   # the library's own first


@pytest.mark.slow
def test_coral_never_leaves_a_node_in_float_and_names_the_tensor(tmp_path):
    p = run_cli("build", f"{FACTORY}:sensitive_convnet", "--profile", "coral", "--out", tmp_path / "out", "--json",
                cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("edgepack: host parity failed")][0]
    assert "first diverging tensor: node '" in line and "2 recipes tried" in line
    assert "(fix: profile coral allows no node in float" in line and "x86-cpu-int8" in line, line
    d = json.loads(p.stdout)
    assert [a["recipe"]["calibration_method"] for a in d["attempts"]] == ["moving-average", "minmax"]
    assert d["diagnosis"]["kind"] == "tflite-int8"


@pytest.mark.slow
def test_diagnose_a_tflite_int8_source(tmp_path):
    p = run_cli("diagnose", f"{EXAMPLES}:tiny_cnn", "--profile", "raspberry-pi", "--precision", "int8-static",
                "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["diagnosis"]["covered"] and d["diagnosis"]["kind"] == "tflite-int8"
    ops = {r["op"] for r in d["diagnosis"]["rows"]}
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_coral_leaves_a_mixed_range_concat_as_a_float_tail(tmp_path):
    """Boxes in pixels and scores in [0, 1] under one int8 scale: the score rows fail the slice check.
    coral's tail_fallbacks lets the final Concat stay float (the Edge TPU leaves it to the CPU): the
    build passes, records the tail and hands the output over in float32; with tail_fallbacks 0 it is
    refused, naming the Concat."""
    from quant_models import profile_file

    res = _build(f"{FACTORY}:mixed_range_head", "coral", tmp_path / "tail")
    q = res.manifest["quantization"]
    assert q["attempts"][0]["passed"] is False
    assert q["attempts"][0]["outputs"]["output"]["worst_slice"]["cosine"] < 0.95, q["attempts"][0]
    assert q["float_tail"] >= 1 and q["recipe_label"].endswith(f"float tail of {q['float_tail']}")
    assert any("CONCATENATION" in op for op in q["edgetpu_compiler"]["cpu_tail"]), q["edgetpu_compiler"]
    assert q["io"]["output"]["dtype"] == "float32" and q["io"]["x"]["dtype"] == "int8", q["io"]
    assert res.manifest["host_parity"]["passed"]
    assert any("run on the CPU" in w for w in res.manifest["warnings"])

    prof = profile_file(tmp_path, "coral-notail", "extends: coral\nquantization: {tail_fallbacks: 0}\n")
    p = run_cli("build", f"{FACTORY}:mixed_range_head", "--profile", prof, "--out", tmp_path / "out", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert "(CONCATENATION)" in line and "tail_fallbacks > 0" in line, line


def test_tflite_minmax_calibration_is_the_union_of_every_samples_range():
    import numpy as np

    from packager.formats.base import QuantPlan
    from packager.formats.tflite.quantize import _union, recipes

    a = {"min": np.array([-1.0, 0.0]), "max": np.array([1.0, 2.0])}
    b = {"min": np.array([-3.0, 0.5]), "max": np.array([0.5, 4.0])}
    u = _union(_union({}, a), b)
    assert u["min"].tolist() == [-3.0, 0.0] and u["max"].tolist() == [1.0, 4.0]
    plan = QuantPlan(precision="int8", mode="static", calibration_method="auto")
    assert [p.calibration_method for p in recipes(plan)] == ["moving-average", "minmax"]
    assert [p.calibration_method for p in recipes(QuantPlan("int8", "static", calibration_method="minmax"))] == ["minmax"]
    assert len(recipes(QuantPlan("int8", "dynamic"))) == 1
