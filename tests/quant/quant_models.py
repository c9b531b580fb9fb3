"""Tiny ONNX models built in the test, each with a known int8 weakness (no file from elsewhere)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(graph, path: Path, opset: int = 17) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def sensitive_convnet(path: Path, channels: int = 8, size: int = 16, big: bool = False) -> Path:
    """x -> conv1 -> relu -> conv2 -> relu -> conv3 -> y (1, 4, size, size).

    conv2 is the planted bad node: conv1's output channel 0 is always 0 (a dead channel, bias -100
    before the ReLU), and conv2 holds a weight of 50 on that dead channel in every output channel.
    The weight multiplies zeros, so the float model does not care; int8 weights share one scale per
    output channel, so 50/127 becomes the step and every other weight of conv2 (~0.1) rounds to 0 or
    +-0.39: conv2's output is garbage. Leaving conv2 in float is the whole fix.
    big: wider layers, so the file is over 2 MB (onnxruntime's quantizer writes external data then)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 256 if big else channels
    w1 = rng.normal(0, 0.3, (c, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, c).astype(np.float32)
    w1[0] = 0.0
    b1[0] = -100.0                      # relu(conv1)[:, 0] == 0 always
    w2 = rng.normal(0, 0.1, (c, c, 3, 3)).astype(np.float32)
    w2[:, 0, 1, 1] = 50.0               # the planted outlier, on the dead channel
    b2 = rng.normal(0, 0.1, c).astype(np.float32)
    w3 = rng.normal(0, 0.3, (4, c, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3"], ["y"], name="conv3")]
    graph = helper.make_graph(nodes, "sensitive_convnet",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, size, size])], inits)
    return _save(graph, path)


def detector_head(path: Path, anchors: int = 64, classes: int = 2) -> Path:
    """A detector's last step: Concat(boxes in pixels, sigmoid(class logits)) -> (1, 4 + classes, anchors).
    Quantized as a whole, the Concat shares one int8 scale (~320/255) across boxes and scores: every
    score rounds to 0 while the boxes, and the whole-tensor cosine, hold (what YOLOv8's int8 does)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    wb = rng.normal(0, 1, (4, 8)).astype(np.float32)
    ws = rng.normal(0, 1, (classes, 8)).astype(np.float32)
    inits = [numpy_helper.from_array(wb, "wb"), numpy_helper.from_array(ws, "ws"),
             numpy_helper.from_array(np.array(80.0, np.float32), "stride"),
             numpy_helper.from_array(np.array(160.0, np.float32), "offset")]
    nodes = [helper.make_node("MatMul", ["wb", "feat"], ["b0"], name="box_mm"),
             helper.make_node("Mul", ["b0", "stride"], ["b1"], name="box_scale"),
             helper.make_node("Add", ["b1", "offset"], ["b2"], name="box_offset"),
             helper.make_node("Unsqueeze", ["b2", "axes"], ["boxes"], name="box_unsq"),
             helper.make_node("MatMul", ["ws", "feat"], ["s0"], name="cls_mm"),
             helper.make_node("Sigmoid", ["s0"], ["s1"], name="cls_sigmoid"),
             helper.make_node("Unsqueeze", ["s1", "axes"], ["scores"], name="cls_unsq"),
             helper.make_node("Concat", ["boxes", "scores"], ["output0"], name="head_concat", axis=1)]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axes"))
    graph = helper.make_graph(nodes, "detector_head",
                              [helper.make_tensor_value_info("feat", TensorProto.FLOAT, [8, anchors])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                                             [1, 4 + classes, anchors])], inits)
    return _save(graph, path)


def samples_npz(path: Path, name: str, shape: tuple, count: int, seed: int = 0) -> Path:
    """`count` whole samples of one input, stacked on a new first axis."""
    rng = np.random.default_rng(seed)
    np.savez(path, **{name: rng.normal(0, 1, (count, *shape)).astype(np.float32)})
    return path


def profile_file(tmp: Path, name: str, text: str) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(f"name: {name}\n" + text)
    return p


def shape_inference_stopper(path: Path, features: int = 600, width: int = 1000) -> Path:
    """x (batch, 600) -> MatMul (a 2.4 MB weight) -> com.microsoft ExpandDims -> Relu.
    onnxruntime runs it; its symbolic shape inference does not know ExpandDims and stops
    ("Incomplete symbolic shape inference"), and on the way out saves `sym_shape_infer_temp.onnx`
    with a uuid-named `.data` file of the weights into the current directory."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.normal(0, 0.05, (features, width)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
             helper.make_node("ExpandDims", ["y", "axis"], ["e"], name="expand", domain="com.microsoft"),
             helper.make_node("Relu", ["e"], ["out"], name="relu")]
    graph = helper.make_graph(nodes, "stopper", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, "batch", width])],
                              [w, numpy_helper.from_array(np.array(0, np.int32), "axis")])
    import onnx

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def log_power_head(path: Path, bins: int = 64, out: int = 8) -> Path:
    """y = MatMul(10 * log10(x * x + 1e-10), W): a spectrogram's log power (Basic Pitch's front end).
    In float16 the epsilon (under float16's smallest subnormal) and the small squares vanish."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w = rng.normal(0, 0.1, (bins, out)).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"], name="square"),
             helper.make_node("Add", ["sq", "eps"], ["pw"], name="add_eps"),
             helper.make_node("Log", ["pw"], ["ln"], name="log"),
             helper.make_node("Mul", ["ln", "db"], ["lg"], name="to_db"),
             helper.make_node("MatMul", ["lg", "w"], ["y"], name="proj")]
    inits = [numpy_helper.from_array(np.array([1e-10], np.float32), "eps"),
             numpy_helper.from_array(np.array([10 / np.log(10)], np.float32), "db"),
             numpy_helper.from_array(w, "w")]
    graph = helper.make_graph(nodes, "log_power", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, bins])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out])], inits)
    return _save(graph, path)


def quiet_spectra_npz(path: Path, name: str, bins: int, count: int, seed: int = 0) -> Path:
    """Magnitudes spread over 1e-7 .. 1 (log-uniform), as a spectrum of quiet and loud bins."""
    rng = np.random.default_rng(seed)
    np.savez(path, **{name: (10 ** rng.uniform(-7, 0, (count, 1, bins))).astype(np.float32)})
    return path


def spectral_front_end(path: Path, n: int = 64, hidden: int = 32, out: int = 4) -> Path:
    """A signal front end, then a small network: y = MatMul(Relu(MatMul(10 log10(|D x|^2 + 1e-10), W1)), W2)
    with D a cosine basis. On inputs whose loudness spans decades the power spectrum does not fit
    one int8 scale; the network after the log does."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    k = np.arange(n)
    basis = np.cos(np.pi * np.outer(k + 0.5, k) / n).astype(np.float32)
    w1 = rng.normal(0, 0.2, (n, hidden)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (hidden, out)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "basis"], ["spec"], name="dct"),
             helper.make_node("Mul", ["spec", "spec"], ["power"], name="power"),
             helper.make_node("Add", ["power", "eps"], ["power_eps"], name="add_eps"),
             helper.make_node("Log", ["power_eps"], ["ln"], name="log"),
             helper.make_node("Mul", ["ln", "db"], ["logpow"], name="to_db"),
             helper.make_node("MatMul", ["logpow", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["hr"], name="relu"),
             helper.make_node("MatMul", ["hr", "w2"], ["y"], name="fc2")]
    inits = [numpy_helper.from_array(basis, "basis"), numpy_helper.from_array(np.array([1e-10], np.float32), "eps"),
             numpy_helper.from_array(np.array([10 / np.log(10)], np.float32), "db"),
             numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
    graph = helper.make_graph(nodes, "front_end", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out])], inits)
    return _save(graph, path)


def loudness_npz(path: Path, name: str, n: int, count: int, seed: int = 0) -> Path:
    """Noise at loudness spread over 4 decades (quiet to loud), one level per sample."""
    rng = np.random.default_rng(seed)
    level = 10 ** rng.uniform(-4, 0, (count, 1, 1))
    np.savez(path, **{name: (level * rng.normal(0, 1, (count, 1, n))).astype(np.float32)})
    return path
