"""packager/quant: the build host's int8 decisions, the per-tensor table and the fallback order,
on data made in the test."""
from __future__ import annotations

import numpy as np
import pytest

from packager.formats.base import QuantPlan
from packager.quant import recipes, tensors
from packager.quant.tensors import Accumulator, Node


@pytest.mark.parametrize("flags, vnni, reduce", [
    ("fpu sse2 avx2 avx512f avx512_vnni", True, False),
    ("fpu sse2 avx2 avx_vnni", True, False),
    ("fpu sse2 avx2 fma", False, True),
])
def test_reduce_range_follows_the_build_hosts_vnni(tmp_path, monkeypatch, flags, vnni, reduce):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    monkeypatch.setattr(recipes.platform, "machine", lambda: "x86_64")
    cpu = recipes.host_cpu(info)
    assert cpu["vnni"] is vnni
    rr, why = recipes.resolve_reduce_range("auto", cpu)
    assert rr is reduce and ("VNNI" in why)
    assert recipes.resolve_reduce_range(True, cpu) == (True, "set by the profile")


def test_activation_type_follows_the_target_arch():
    x86 = {"arch": "x86_64", "vnni": True, "int8_flags": []}
    assert recipes.resolve_activation_type("auto", ("x86_64", "AMD64"), x86)[0] == "uint8"
    assert recipes.resolve_activation_type("auto", ("aarch64", "armv7l"), x86)[0] == "int8"
    assert recipes.resolve_activation_type("auto", (), x86)[0] == "uint8"          # no target: the build host
    assert recipes.resolve_activation_type("auto", (), {"arch": "aarch64"})[0] == "int8"
    assert recipes.resolve_activation_type("int8", ("x86_64",), x86) == ("int8", "set by the profile")


def test_arm_hosts_and_unreadable_cpuinfo_never_reduce_range(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n")
    monkeypatch.setattr(recipes.platform, "machine", lambda: "aarch64")
    cpu = recipes.host_cpu(info)
    assert cpu["vnni"] is None and "asimddp" in cpu["int8_flags"]
    assert recipes.resolve_reduce_range("auto", cpu)[0] is False
    assert recipes.host_cpu(tmp_path / "missing")["vnni"] is None


def test_recipe_labels_and_costly_calibration():
    plan = QuantPlan("int8", "static", "auto", calibration_method="minmax", op_types=("Conv", "MatMul"),
                     float_nodes=("n1", "n2"))
    assert recipes.label(plan) == "static, Conv/MatMul, per-channel, minmax, 2 float"
    assert recipes.label(plan.__class__(**{**plan.to_dict(), "activation_type": "uint8"})).endswith(
        "minmax, uint8 activations, 2 float")
    assert recipes.describe(plan)["float_nodes"] == ["n1", "n2"]
    assert not recipes.is_costly(plan)
    assert recipes.is_costly(QuantPlan("int8", "static", calibration_method="percentile"))
    assert recipes.label(QuantPlan("int8", "dynamic", per_channel=False)) == "dynamic, all ops, per-tensor"


def test_floor_follows_the_profiles_cosine():
    assert tensors.floor_db({"cosine_min": 0.98}) == pytest.approx(13.98, abs=0.01)
    assert tensors.floor_db({"cosine_min": 0.999}) == pytest.approx(26.99, abs=0.01)
    assert tensors.floor_db({}) == tensors.FLOOR_DB


def _chain(acc, rng, steps):
    """x -> a -> b -> c -> d, each step adding its own relative noise to a float signal."""
    x = rng.normal(0, 1, (1, 8, 16))
    ref = x
    got = x.copy()
    for name, noise in steps:
        ref = np.tanh(ref) * 2
        got = np.tanh(got) * 2 + rng.normal(0, noise, got.shape)
        acc.add(name, ref, got)


def test_the_first_diverging_tensor_and_the_fallback_order():
    rng = np.random.default_rng(0)
    acc = Accumulator()
    _chain(acc, rng, [("ta", 0.001), ("tb", 0.002), ("tc", 0.5), ("td", 0.01)])
    nodes = [Node("a", "Conv", ("x", "w"), ("ta",)), Node("b", "Conv", ("ta", "w"), ("tb",)),
             Node("c", "Mul", ("tb",), ("tc",)), Node("d", "Conv", ("tc", "w"), ("td",))]
    rows = tensors.table(nodes, acc)
    assert [r["tensor"] for r in rows] == ["ta", "tb", "tc", "td"]
    assert rows[0]["drop_db"] is None               # reads only the graph input and weights
    first = tensors.first_diverging(rows, 14.0)
    assert first["node"] == "c" and first["effective_sqnr_db"] < 14
    assert "first tensor under 14 dB" in first["why"]
    text = tensors.describe(first)
    assert "node 'c' (Mul)" in text and "tensor 'tc'" in text
    ranked = tensors.rank_nodes(nodes, rows, {"a", "b", "c", "d"}, set(), 14.0, until="tc")
    assert ranked[0]["node"] == "c" and "d" not in [r["node"] for r in ranked]   # nothing after the break
    # d reads the broken tensor too (its quantize/dequantize): without `until` it competes
    assert "d" in [r["node"] for r in tensors.rank_nodes(nodes, rows, {"a", "b", "c", "d"}, {"c"}, 14.0)]


def test_a_folded_producer_passes_its_error_to_the_node_before_it():
    """QDQ removes a ReLU after a Conv: the Conv's own output is never compared, the ReLU's is;
    the jump belongs to the Conv, the candidate that computed it."""
    rng = np.random.default_rng(1)
    acc = Accumulator()
    x = rng.normal(0, 1, (1, 4, 8, 8))
    acc.add("r1", np.maximum(x, 0), np.maximum(x, 0) + rng.normal(0, 0.001, x.shape))
    acc.add("r2", np.maximum(x, 0) * 2, rng.normal(0, 1, x.shape))         # conv2's output is garbage
    nodes = [Node("conv1", "Conv", ("x", "w1"), ("c1",)), Node("relu1", "Relu", ("c1",), ("r1",)),
             Node("conv2", "Conv", ("r1", "w2"), ("c2",)), Node("relu2", "Relu", ("c2",), ("r2",))]
    rows = tensors.table(nodes, acc)
    assert rows[1]["drop_db"] > 30                   # c2 was not compared: r1's SQNR carries over
    by = {r["tensor"]: r for r in rows}
    assert tensors.owners_of("r2", nodes, by, {"conv1", "conv2"}) == {"conv2"}
    ranked = tensors.rank_nodes(nodes, rows, {"conv1", "conv2"}, set(), 14.0, until="r2")
    assert ranked[0]["node"] == "conv2"


@pytest.mark.parametrize("axis", [1, -1])
def test_a_conv_whose_input_channels_span_a_wide_range_names_it_as_the_cause(axis):
    """int8 quantizes an activation tensor with one scale: a depthwise conv reading channels 1/80 as
    wide as the widest (PP-OCRv4 det's third conv) is where the error comes from, and the line says so."""
    rng = np.random.default_rng(4)
    widths = np.array([8.0, 4.0, 1.0, 0.1, 0.0])        # the last channel is dead: not the narrowest
    x = rng.uniform(-1, 1, (1, 5, 6, 6)) * widths[None, :, None, None]
    if axis == -1:
        x = np.moveaxis(x, 1, -1)                         # TF-Lite's NHWC
    acc = Accumulator(channel_axis=axis)
    acc.add("pad", x, x)
    acc.add("dw", x, x + rng.normal(0, 1.0, x.shape))
    nodes = [Node("pad", "PAD", ("x",), ("pad",)), Node("dw", "DEPTHWISE_CONV_2D", ("pad", "w"), ("dw",))]
    rows = tensors.table(nodes, acc)
    assert "input_channel_spread" not in rows[0]           # not a conv
    first = tensors.first_diverging(rows, 14.0)
    assert first["node"] == "dw" and 75 < first["input_channel_spread"] < 85
    assert "channels span" in tensors.describe(first)
    assert "input_channel_spread" in tensors.summary(rows, first)["first_diverging"]    # --json and the manifest
    weights = Accumulator(channel_axis=axis)                # only the data input counts, not the weights
    weights.add("w", x, x)
    weights.add("dw", x, x + rng.normal(0, 1.0, x.shape))
    rows = tensors.table([Node("dw", "DEPTHWISE_CONV_2D", ("x", "w"), ("dw",))], weights)
    assert "input_channel_spread" not in rows[0]
    plain = Accumulator()                                   # fp16, or a float comparison: no ranges kept
    plain.add("pad", x, x)
    plain.add("dw", x, x + rng.normal(0, 1.0, x.shape))
    first = tensors.first_diverging(tensors.table(nodes, plain), 14.0)
    assert "input_channel_spread" not in first and "channels span" not in tensors.describe(first)


def test_slices_of_rank3_tensors_count_unless_they_are_within_slice_atol():
    rng = np.random.default_rng(2)
    ref = np.concatenate([rng.uniform(0, 320, (1, 4, 50)), rng.uniform(0, 0.8, (1, 1, 50)),
                          rng.uniform(0, 0.01, (1, 1, 50))], axis=1)
    got = ref.copy()
    got[0, 4] = 0.0                                  # collapsed scores
    got[0, 5] = 0.0                                  # an absent class, off by < 0.01
    acc = Accumulator()
    acc.add("out", ref, got)
    m = acc.metrics("out", slice_atol=0.05)
    assert m["sqnr_db"] > 30 and m["worst_slice"]["index"] == 4 and m["effective_sqnr_db"] == 0.0
    assert acc.metrics("out", slice_atol=1.0).get("worst_slice") is None   # every slice within 1.0


def test_an_attention_mask_of_minus_inf_is_agreement_and_a_new_inf_is_broken():
    ref = np.array([[0.0, -np.inf, 1.0, 2.0]], np.float32)
    acc = Accumulator()
    acc.add("mask", ref, ref.copy())
    assert acc.metrics("mask")["sqnr_db"] == tensors.INF_DB and "nonfinite" not in acc.metrics("mask")
    acc.add("overflow", np.array([[1.0, 2.0]], np.float32), np.array([[1.0, np.inf]], np.float16))
    m = acc.metrics("overflow")
    assert m["nonfinite"] == 1 and m["sqnr_db"] == -tensors.INF_DB


def test_a_mask_of_float32_min_does_not_overflow_the_sums():
    big = np.finfo(np.float32).min
    ref = np.array([[0.0, big, 1.0, 2.0]], np.float32)
    acc = Accumulator()
    acc.add("mask", ref, ref.copy())
    assert acc.metrics("mask")["sqnr_db"] == tensors.INF_DB
    got = ref.copy()
    got[0, 1] = big * 0.999
    acc.add("close", ref, got)
    assert acc.metrics("close")["sqnr_db"] == pytest.approx(60.0, abs=0.1)


def test_a_float_tail_starts_at_the_first_diverging_tensor_and_stays_a_tenth_of_the_graph():
    from packager.quant.tail import tail_lengths

    assert tail_lengths(1, 4, 233) == [1, 2, 4]       # YOLOv8s: the output Concat, then longer tails
    assert tail_lengths(3, 4, 233) == [3, 4]
    assert tail_lengths(40, 4, 355) == [4]            # the tensor lies earlier: the longest tail once
    assert tail_lengths(None, 4, 100) == [1, 2, 4]
    assert tail_lengths(1, 4, 25) == [1, 2]           # at most a tenth of 25 ops
    assert tail_lengths(1, 4, 9) == [] and tail_lengths(1, 0, 500) == []


def test_the_cpu_tail_is_the_float_ops_after_the_last_integer_op():
    from packager.formats.tflite.quantize import cpu_tail

    ops = [("CONV_2D", "a", False), ("LOGISTIC", "b", False), ("CONCATENATION", "c", True), ("RESHAPE", "d", True)]
    assert cpu_tail(ops) == ["CONCATENATION", "RESHAPE"]
    mid = [("CONV_2D", "a", False), ("MUL", "b", True), ("CONV_2D", "c", False)]
    assert cpu_tail(mid) == []                         # a float op between integer ones is no tail
    assert cpu_tail([("CONV_2D", "a", False)]) == []
