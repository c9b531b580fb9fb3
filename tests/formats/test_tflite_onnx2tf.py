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
