"""ONNX file (and TorchScript .pt) -> TF-Lite through onnx2tf in its isolated venv (.venv-onnx2tf),
each bundle self-tested by its own agent in a subprocess."""
from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("ai_edge_litert")

from formats_helpers import EXAMPLES, REPO, build, selftest  # noqa: E402

from packager.formats.tflite import onnx2tf as onnx2tf_route  # noqa: E402
from packager.errors import ConversionError  # noqa: E402

sys.path.insert(0, str(REPO))
from examples.models import mlp  # noqa: E402

needs_venv = pytest.mark.skipif(not onnx2tf_route.python().exists(),
                                reason="no .venv-onnx2tf (run bash scripts/setup-onnx2tf.sh)")


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Every test converts for real: the conversion cache lives in the test's own folder."""
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """ONNX exports of examples/models.py tiny_cnn and mlp (edgepack's own ONNX route)."""
    root = tmp_path_factory.mktemp("onnx")
    files = {}
    for model in ("tiny_cnn", "mlp"):
        res = build(f"{EXAMPLES}:{model}", "x86-cpu", root / model)
        files[model] = res.bundle / "model" / "model.onnx"
    return files


def _check(res, precision, nhwc_input: bool):
    m = res.manifest
    assert m["format"] == "tflite" and m["precision"] == precision.split("-")[0]
    assert "onnx2tf" in m["conversion"]["route"]
    assert m["host_parity"]["passed"]
    assert m["conversion"]["static_shapes"] and m["conversion"]["toolchain"]["onnx2tf"]
    if nhwc_input:
        assert m["inputs"][0]["layout"] == "NHWC"
        assert m["conversion"]["layout_changes"]["x"]["perm"] == [0, 2, 3, 1]
        assert m["inputs"][0]["shape"] == [1, 32, 32, 3]
    report, code = selftest(res.bundle)
    assert code == 0, report["verdict"]
    assert report["parity"]["passed"]
    assert report["runtime"]["name"] == "litert"
    return report


# (model, profile, precision). Each build runs onnx2tf in a subprocess that imports TensorFlow 2.19:
# ~5 s on an idle 2-core host (measured), far more on a loaded one.
FAST = [("tiny_cnn", "raspberry-pi", "fp32"), ("mlp", "raspberry-pi", "int8")]
SLOW = [("tiny_cnn", "android", "fp16"), ("tiny_cnn", "raspberry-pi", "int8"),
        ("mlp", "raspberry-pi", "fp32"), ("mlp", "android", "fp16")]
CELLS = [pytest.param(*c, id="-".join(c)) for c in FAST] + \
        [pytest.param(*c, id="-".join(c), marks=pytest.mark.slow) for c in SLOW]


@needs_venv
@pytest.mark.parametrize("model,profile,precision", CELLS)
def test_onnx_to_tflite(tmp_path, onnx_files, model, profile, precision):
    res = build(onnx_files[model], profile, tmp_path, precision=precision)
    _check(res, precision, nhwc_input=model == "tiny_cnn")
    if precision == "int8":
        mode = res.manifest["quantization"]["mode"]
        assert mode == ("static" if model == "tiny_cnn" else "dynamic")


@needs_venv
@pytest.mark.slow
def test_onnx_to_tflite_nchw_kept_on_x86(tmp_path, onnx_files):
    """A profile without layout NHWC keeps the ONNX input's NCHW shape."""
    res = build(onnx_files["tiny_cnn"], "x86-cpu", tmp_path, format="tflite")
    m = res.manifest
    assert m["inputs"][0]["layout"] == "NCHW" and m["inputs"][0]["shape"] == [1, 3, 32, 32]
    assert not m["conversion"].get("layout_changes")
    _check(res, "fp32", nhwc_input=False)


@needs_venv
@pytest.mark.slow
def test_torchscript_to_tflite_via_onnx(tmp_path):
    model, _ = mlp()
    path = tmp_path / "mlp.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    res = build(path, "raspberry-pi", tmp_path / "out", input_shapes=["x=1x32"])
    _check(res, "fp32", nhwc_input=False)
    assert res.manifest["conversion"]["route"].startswith("torch.onnx.export")


def test_missing_venv_is_a_clear_error(tmp_path, onnx_files, monkeypatch):
    monkeypatch.setattr(onnx2tf_route, "VENV", tmp_path / "nowhere")
    with pytest.raises(ConversionError) as e:
        build(onnx_files["mlp"], "raspberry-pi", tmp_path / "out")
    assert "scripts/setup-onnx2tf.sh" in e.value.hint


@needs_venv
def test_child_cannot_reach_the_network_nor_download():
    """What runs before onnx2tf.convert in the child: sockets and name lookups fail, and onnx2tf's
    sample downloader (imported by name into onnx2tf.onnx2tf) no longer downloads."""
    import subprocess

    probe = r"""
import socket
for call in (lambda: socket.create_connection(("pypi.org", 443), timeout=2),
             lambda: socket.getaddrinfo("github.com", 443),
             lambda: socket.socket().connect(("127.0.0.1", 9))):
    try:
        call()
        raise SystemExit("network reachable")
    except OSError as exc:
        assert "network access is disabled" in str(exc), exc
import onnx2tf.onnx2tf as core
from onnx2tf.utils import common_functions as cf
for f in (core.download_test_image_data, cf.download_test_image_data):
    a = f()
    assert a.shape == (20, 128, 128, 3) and not a.any()
print("BLOCKED")
"""
    code = onnx2tf_route.GUARD + onnx2tf_route.NO_DOWNLOAD + probe
    proc = subprocess.run([str(onnx2tf_route.python()), "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=str(REPO / "tests"))
    assert proc.returncode == 0 and "BLOCKED" in proc.stdout, proc.stderr[-2000:]


def _graph(path, nodes, inits, out_shape=None, in_shape=(1, 8)):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@needs_venv
def test_a_failing_conversion_names_the_onnx_node_and_op(tmp_path):
    """onnx2tf 1.29.24 has no converter for CastLike: the error is one line naming the op and its
    first node, not the tail of a traceback; nothing is left in --out."""
    import numpy as np
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("CastLike", ["x", "half"], ["h"], name="to_half"),
             helper.make_node("CastLike", ["h", "single"], ["y"], name="to_single")]
    inits = [numpy_helper.from_array(np.array([1], np.float16), "half"),
             numpy_helper.from_array(np.array([1], np.float32), "single")]
    src = _graph(tmp_path / "castlike.onnx", nodes, inits, [1, 8])
    with pytest.raises(ConversionError) as e:
        build(src, "raspberry-pi", tmp_path / "out")
    msg = e.value.message
    assert "no converter for the ONNX op CastLike (node 'to_half', first of 2)" in msg, msg
    assert "Traceback" not in msg and "File \"" not in msg and len(msg) < 300
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@needs_venv
@pytest.mark.slow
def test_one_element_operands_keep_depthwise_convs_depthwise(tmp_path):
    """PP-LCNet's learnable affine block as paddle2onnx writes it (Mul/Add by [1] constants before a
    depthwise conv): onnx2tf 1.29.24 computes the affine ops channels-first between TRANSPOSEs and
    makes the depthwise conv a grouped CONV_2D; scalar-operands (0-d constants) avoids both. When
    onnx2tf handles [1] operands itself, the second half fails and the pass can go."""
    import numpy as np
    from onnx import helper, numpy_helper

    from packager.formats.tflite.quantize import op_kinds

    rng = np.random.default_rng(0)
    c = 16
    inits = [numpy_helper.from_array(rng.normal(size=(c, 3, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(c, 1, 3, 3)).astype(np.float32), "dw"),
             numpy_helper.from_array(rng.normal(size=(1, c, 1, 1)).astype(np.float32), "head"),
             numpy_helper.from_array(np.array([1.5], np.float32), "s"),
             numpy_helper.from_array(np.array([0.25], np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c0"], name="pw"),
             helper.make_node("Mul", ["s", "c0"], ["m"], name="lab_mul"),
             helper.make_node("Add", ["m", "b"], ["a"], name="lab_add"),
             helper.make_node("HardSwish", ["a"], ["r"], name="act"),
             helper.make_node("Conv", ["r", "dw"], ["d"], group=c, pads=[1, 1, 1, 1], strides=[2, 2], name="dwconv"),
             helper.make_node("Conv", ["d", "head"], ["y"], name="out")]
    src = _graph(tmp_path / "lab.onnx", nodes, inits, [1, 1, 20, 24], in_shape=(1, 3, 40, 48))
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(2, 3, 40, 48)).astype(np.float32))

    def ops(out, **kw):
        res = build(src, "raspberry-pi", tmp_path / out, inputs=tmp_path / "x.npz", **kw)
        assert res.manifest["host_parity"]["passed"]
        return [op for op, _, _ in op_kinds(res.bundle / "model" / "model.tflite")], res.manifest

    kinds, manifest = ops("with")
    assert "DEPTHWISE_CONV_2D" in kinds and "TRANSPOSE" not in kinds, kinds
    assert [p["changed"]["rewritten"] for p in manifest["conversion"]["passes"] if p["name"] == "scalar-operands"] == [2]
    kinds, _ = ops("without", profile_patch={"passes": {"scalar-operands": {"enabled": False}}})
    assert "DEPTHWISE_CONV_2D" not in kinds and "TRANSPOSE" in kinds, kinds


@needs_venv
@pytest.mark.slow
def test_a_depthwise_conv_with_strides_2_1_stays_depthwise_in_int8_tflite(tmp_path):
    """PP-OCR's height-only downsampling (a depthwise conv with strides (2, 1)): onnx2tf 1.29.24 writes
    it as a grouped CONV_2D, op version 6, which every CONV_2D of the model then carries (one opcode
    entry) and which needs TF-Lite 2.9; depthwise-strides makes it a DEPTHWISE_CONV_2D and a
    STRIDED_SLICE. When onnx2tf maps unequal strides itself, the second half fails and the pass can go."""
    import numpy as np
    from onnx import helper, numpy_helper

    from packager.formats.tflite.needs import min_runtime_version, op_versions
    from packager.formats.tflite.quantize import op_kinds

    rng = np.random.default_rng(0)
    c = 16
    inits = [numpy_helper.from_array(rng.normal(size=(c, 3, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(c, 1, 3, 3)).astype(np.float32), "dw"),
             numpy_helper.from_array(rng.normal(size=(4, c, 1, 1)).astype(np.float32), "head")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c0"], name="pw"),
             helper.make_node("Relu", ["c0"], ["r"], name="act"),
             helper.make_node("Conv", ["r", "dw"], ["d"], group=c, pads=[1, 1, 1, 1], strides=[2, 1], name="dwconv"),
             helper.make_node("Conv", ["d", "head"], ["y"], name="out")]
    src = _graph(tmp_path / "dw.onnx", nodes, inits, [1, 4, 8, 32], in_shape=(1, 3, 16, 32))
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(4, 3, 16, 32)).astype(np.float32))
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(16, 3, 16, 32)).astype(np.float32))

    def model(out, **kw):
        res = build(src, "coral", tmp_path / out, inputs=tmp_path / "x.npz", calibration=tmp_path / "calib.npz", **kw)
        assert res.manifest["host_parity"]["passed"]
        path = res.bundle / "model" / "model.tflite"
        return [op for op, _, _ in op_kinds(path)], op_versions(path), min_runtime_version(path), res.manifest

    kinds, versions, needs, manifest = model("with")
    assert "DEPTHWISE_CONV_2D" in kinds and "STRIDED_SLICE" in kinds and versions["CONV_2D"] == [1], (kinds, versions)
    assert [p["changed"]["rewritten"] for p in manifest["conversion"]["passes"] if p["name"] == "depthwise-strides"] == [1]
    kinds, versions, needs_without, _ = model("without", profile_patch={"passes": {"depthwise-strides": {"enabled": False}}})
    assert "DEPTHWISE_CONV_2D" not in kinds and versions["CONV_2D"] == [6], (kinds, versions)
    assert tuple(map(int, needs.split("."))) < (2, 9) <= tuple(map(int, needs_without.split("."))), (needs, needs_without)


@needs_venv
def test_a_channels_first_output_keeps_its_layout(tmp_path):
    """A [1, 4, H, W] output (a segmentation map): onnx2tf 1.29.24 gives it channels-last and has no option
    to keep it; the serving signature transposes it back, so the bundle gives the ONNX model's output."""
    import numpy as np
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(4, 8, 1, 1)).astype(np.float32), "head")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="act"),
             helper.make_node("Conv", ["r", "head"], ["y"], name="classes")]
    src = _graph(tmp_path / "seg.onnx", nodes, inits, [1, 4, 12, 20], in_shape=(1, 3, 12, 20))
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(2, 3, 12, 20)).astype(np.float32))
    res = build(src, "raspberry-pi", tmp_path / "out", inputs=tmp_path / "x.npz")
    assert res.manifest["host_parity"]["passed"]
    assert [o["shape"] for o in res.manifest["outputs"]] == [[1, 4, 12, 20]], res.manifest["outputs"]
    assert res.manifest["conversion"]["outputs_reshaped"] == [
        {"output": "y", "onnx2tf_shape": [1, 12, 20, 4], "shape": [1, 4, 12, 20], "by": "transpose"}]
    report, code = selftest(res.bundle)
    assert code == 0, report["verdict"]


def test_the_stopping_node_is_read_from_onnx2tf_output(tmp_path):
    """What onnx2tf 1.29.24 printed for PP-OCR's angle classifier (nodes named 'Softmax@0'), cut
    to its lines that matter: the innermost node, its op, and the line that says why."""
    from onnx import helper

    from packager.formats.tflite import onnx2tf_log

    src = _graph(tmp_path / "g.onnx", [helper.make_node("Softmax", ["x"], ["y"], name="Softmax_0")], [], [1, 8])
    stdout = ("\x1b[31mERROR:\x1b[0m The trace log is below.\nTraceback (most recent call last):\n"
              "  File \"onnx2tf/ops/Softmax.py\", line 55, in custom_tf_nn_softmax\n"
              "ValueError: Exception encountered when calling layer \"tf.nn.softmax\" (type TFOpLambda).\n\n"
              "'Softmax@0' is not a valid scope name.\n\nCall arguments received by layer:\n"
              "\x1b[31mERROR:\x1b[0m onnx_op_name: Softmax_0\n")
    stderr = stdout.split("ERROR:\x1b[0m onnx_op_name")[0].split("below.\n", 1)[1]
    text = onnx2tf_log.failure(stdout, stderr, src, {"Softmax_0": "Softmax@0"})
    assert text.startswith("stopped at ONNX node 'Softmax@0' (Softmax): ValueError: Exception encountered"), text
    assert "is not a valid scope name" in text


@needs_venv
def test_ops_that_need_flex_are_refused_naming_the_node(tmp_path):
    """Det has no TF-Lite builtin (tf.MatrixDeterminant is a Select-TF op the device's LiteRT lacks):
    edgepack converts with builtins only and says which node needs what."""
    import numpy as np
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("Reshape", ["x", "shape"], ["m"], name="to_matrices"),
             helper.make_node("Det", ["m"], ["y"], name="determinant")]
    src = _graph(tmp_path / "det.onnx", nodes, [numpy_helper.from_array(np.array([2, 2, 2], np.int64), "shape")], [2])
    with pytest.raises(ConversionError) as e:
        build(src, "raspberry-pi", tmp_path / "out")
    msg = e.value.message
    assert "Flex" in msg and "tf.MatrixDeterminant" in msg and "'determinant' (Det)" in msg, msg


@needs_venv
def test_symbolic_sizes_are_prepared_and_the_second_profile_hits_the_cache(tmp_path):
    """A graph with symbolic H/W (foldable shape arithmetic) converts after static-shapes and simplify;
    android then reuses raspberry-pi's float conversion from the cache."""
    sys.path.insert(0, str(REPO / "tests" / "passes"))
    from passes_support import foldable_graph

    src = foldable_graph(tmp_path / "m.onnx")
    shape = ["x=1x3x16x16"]
    first = build(src, "raspberry-pi", tmp_path / "a", input_shapes=shape)
    conv = first.manifest["conversion"]
    assert [p["name"] for p in conv["passes"]] == ["static-shapes", "simplify"]
    assert conv["cache"] == "miss" and conv["check"]["passed"]
    assert conv["onnx2tf_options"]["not_use_onnxsim"] is True
    report, code = selftest(first.bundle)
    assert code == 0 and report["parity"]["passed"]
    second = build(src, "android", tmp_path / "b", input_shapes=shape)
    assert second.manifest["conversion"]["cache"] == "hit"
    assert second.manifest["conversion"]["cache_key"] == conv["cache_key"]
    report, code = selftest(second.bundle)
    assert code == 0, report["verdict"]


def test_the_first_unmatched_tensor_is_read_from_onnx2tf_cotof_output(tmp_path):
    """onnx2tf's -cotof lines (as 1.29.24 prints them, colours included) -> node and op."""
    from onnx import helper

    from packager.formats.tflite import onnx2tf_log

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="first"), helper.make_node("Sigmoid", ["a"], ["y"], name="second")]
    src = _graph(tmp_path / "g.onnx", nodes, [], [1, 8])
    out = ("\x1b[32mINFO:\x1b[0m \x1b[32monnx_output_name\x1b[0m: a \x1b[32mshape\x1b[0m: (1, 8) dtype: float32 "
           "\x1b[32mvalidate_result\x1b[0m: \x1b[7m\x1b[32m Matches \x1b[0m\n"
           "INFO: onnx_output_name: y shape: (1, 8) dtype: float32 validate_result:  Unmatched  max_abs_error: 0.25\n")
    text = onnx2tf_log.first_unmatched(out, src)
    assert "'second' (Sigmoid)" in text and "0.25" in text


@needs_venv
@pytest.mark.slow
def test_a_tflite_that_misses_the_thresholds_runs_onnx2tf_own_check(tmp_path):
    """A profile that allows no difference at all: the TF-Lite model (float rounding apart from
    onnxruntime) fails edgepack's check, onnx2tf runs again with -cotof, and the build fails (exit 1)
    saying what its per-op check found."""
    sys.path.insert(0, str(REPO / "tests" / "passes"))
    from passes_support import foldable_graph

    from packager.errors import CheckFailed

    prof = tmp_path / "exact.yaml"
    prof.write_text("extends: raspberry-pi\nname: exact\nparity: {fp32: {atol: 0.0, rtol: 0.0}}\n")
    src = foldable_graph(tmp_path / "m.onnx")
    with pytest.raises(CheckFailed) as e:
        build(src, str(prof), tmp_path / "out", input_shapes=["x=1x3x16x16"])
    msg = e.value.message
    assert msg.startswith("onnx2tf's TF-Lite differs from the ONNX graph on the reference input (output 'y'"), msg
    assert "onnx2tf" in msg and "-cotof" in msg, msg
    assert e.value.exit_code == 1


def test_onnx2tf_options_follow_the_graph():
    """-b only for a batch still symbolic, pseudo operators only for ops the graph has (in the lower
    case onnx2tf's ops look for), never onnx2tf's own onnxsim step."""
    from types import SimpleNamespace

    import numpy as np

    from packager.formats import Artifact, Format
    from packager.specs import TensorSpec

    ctx = SimpleNamespace(example={"ids": np.zeros((1, 32), np.int64), "img": np.zeros((1, 3, 8, 8), np.float32)},
                          layout={"img": {"perm": [0, 2, 3, 1]}})
    static = Artifact(Format.ONNX, REPO / "m.onnx", (TensorSpec("ids", "int64", [1, 32]),
                                                     TensorSpec("img", "float32", [1, 3, 8, 8])), ())
    kw = onnx2tf_route.options(ctx, static, {"MatMul", "Conv"})
    assert kw == {"non_verbose": True, "not_use_onnxsim": True}
    dynamic = static.replace(inputs=(TensorSpec("ids", "int64", ["batch", 32]),
                                     TensorSpec("img", "float32", ["batch", 3, 8, 8])))
    kw = onnx2tf_route.options(ctx, dynamic, {"Erf", "MatMul"})
    assert kw["batch_size"] == 1 and kw["replace_to_pseudo_operators"] == ["erf"]
    assert "keep_ncw_or_nchw_or_ncdhw_input_names" not in kw      # img turns NHWC, ids is 2-D


def test_onnx2tf_leaves_recurrent_state_untouched_and_unrolls_the_rnn():
    """A 3-D input that feeds no convolution (Silero's state [2, batch, 128]) keeps its layout
    absolutely (-kat); transposed to 'NWC' its slices reached the LSTM as (hidden, batch). A 3-D
    signal into a Conv1d keeps only its signature (-kt). A graph with an LSTM is unrolled (-eru):
    no WHILE, which ai-edge-quantizer cannot calibrate and the Edge TPU cannot run."""
    from types import SimpleNamespace

    import numpy as np

    from packager.formats import Artifact, Format
    from packager.specs import TensorSpec

    ctx = SimpleNamespace(example={"state": np.zeros((2, 1, 128), np.float32), "audio": np.zeros((1, 1, 640), np.float32)},
                          layout={})
    art = Artifact(Format.ONNX, REPO / "m.onnx", (TensorSpec("state", "float32", [2, 1, 128]),
                                                  TensorSpec("audio", "float32", [1, 1, 640])), ())
    kw = onnx2tf_route.options(ctx, art, {"Conv", "Gather", "LSTM"}, {"state": {"Gather"}, "audio": {"Conv"}})
    assert kw["keep_shape_absolutely_input_names"] == ["state"]
    assert kw["keep_ncw_or_nchw_or_ncdhw_input_names"] == ["audio"]
    assert kw["enable_rnn_unroll"] is True
    kw = onnx2tf_route.options(ctx, art, {"Conv"}, {"state": {"Conv"}, "audio": {"Conv"}})
    assert "keep_shape_absolutely_input_names" not in kw and "enable_rnn_unroll" not in kw
    assert kw["keep_ncw_or_nchw_or_ncdhw_input_names"] == ["state", "audio"]
