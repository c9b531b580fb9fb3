"""Keras `.keras` / TF SavedModel -> ONNX through tf2onnx (serving_default signature)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import ConversionError
from ..sources import SourceModel

log = logging.getLogger(__name__)


def convert(source: SourceModel, profile, out: Path):
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise ConversionError(f"Keras/SavedModel -> ONNX needs tensorflow and tf2onnx ({exc})",
                              "pip install -r requirements-tf.txt") from exc
    from .onnx import _carry_example_shapes, _opset, artifact_from_file

    opset = int(profile["opset"])
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(str(source.obj))
    fn = loaded.signatures["serving_default"]
    _, kw = fn.structured_input_signature
    names = [s.name for s in source.inputs]
    spec = [tf.TensorSpec(kw[n].shape, kw[n].dtype, name=n) for n in names]
    out_names = sorted(fn.structured_outputs)

    @tf.function(input_signature=spec)
    def call(*args):
        result = fn(**dict(zip(names, args)))
        return {k: tf.identity(result[k], name=k) for k in out_names}

    try:
        from ..convert.tflite import quiet_stdout
        with quiet_stdout():
            model_proto, _ = tf2onnx.convert.from_function(call, input_signature=spec, opset=opset,
                                                           output_path=None)
    except Exception as exc:
        raise ConversionError(f"SavedModel -> ONNX (tf2onnx) failed: {type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:300]}",
                              "use --format tflite (TFLiteConverter), or a lower --precision / opset") from exc
    import onnx

    # tf2onnx names outputs after the graph tensors: rename them to the signature's names.
    renames = {}
    for o, k in zip(model_proto.graph.output, out_names):
        renames[o.name] = k
    for node in model_proto.graph.node:
        node.output[:] = [renames.get(x, x) for x in node.output]
        node.input[:] = [renames.get(x, x) for x in node.input]
    for o in model_proto.graph.output:
        o.name = renames.get(o.name, o.name)
    for i in model_proto.graph.input:
        i.name = i.name.split(":")[0]
    for node in model_proto.graph.node:
        node.input[:] = [x.split(":")[0] if x.split(":")[0] in names and x.endswith(":0") else x for x in node.input]
    onnx.save_model(model_proto, str(out), save_as_external_data=False)
    art = artifact_from_file(out, precision="fp32")
    _carry_example_shapes(source, art)
    art.info = {"route": f"tf2onnx {tf2onnx.__version__} (serving_default)", "opset": _opset(model_proto),
                "seconds": round(time.perf_counter() - t0, 3)}
    return art
