"""The peer for the real-model rows of item 3: the bare converter calls a user would make by hand for
the same route as `edgepack build`, on an ONNX file of the zoo, with edgepack's own choices given to it
(it does not search):

  --route tflite  fix the input sizes (onnxruntime's make_input_shape_fixed), onnxslim, then
                  onnx2tf.convert in .venv-onnx2tf (not_use_onnxsim, the same sample input)
  --route int8    fix the sizes, onnxslim, quant_pre_process(auto_merge), then quantize_static with the
                  recipe edgepack's manifest recorded (per-channel, activation type, op types, the nodes
                  it left in float)

    python bench/plain_real.py MODEL.onnx OUT --route tflite|int8 --shape NAME=1x3x320x320
           [--calibration FILE.npz] [--recipe JSON]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepared(src, shapes, work):
    import onnx
    import onnxslim
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    m = onnx.load(src)
    for name, shape in shapes.items():
        make_input_shape_fixed(m.graph, name, shape)
    fix_output_shapes(m)
    m = onnxslim.slim(m)
    out = os.path.join(work, "model.prep.onnx")
    onnx.save(m, out)
    return out


def tflite(model, out, shapes, inputs_npz, work):
    import numpy as np

    custom = []
    with np.load(inputs_npz) as d:
        for name, shape in shapes.items():
            p = os.path.join(work, f"{name}.npy")
            arr = d[name]
            np.save(p, arr[:1] if arr.ndim == len(shape) else arr[0])
            custom.append([name, p])
    kw = {"input_onnx_file_path": model, "output_folder_path": out, "not_use_onnxsim": True,
          "non_verbose": True, "custom_input_op_name_np_data_path": custom}
    # No network here: onnx2tf's sample-image download (unused when custom data is given) gets zeros,
    # as in edgepack's own child (a user online downloads a 4 MB file once instead)
    sys.path.insert(0, REPO)
    from packager.formats.tflite.onnx2tf import NO_DOWNLOAD
    code = "import json, sys, onnx2tf\n" + NO_DOWNLOAD + "\nonnx2tf.convert(**json.loads(sys.argv[1]))"
    py = os.path.join(REPO, ".venv-onnx2tf", "bin", "python")
    subprocess.run([py, "-c", code, json.dumps(kw)], check=True, cwd=work, stdout=subprocess.DEVNULL)


def int8(model, out, calib_npz, recipe, work, shapes):
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = os.path.join(work, "model.pre.onnx")
    quant_pre_process(model, pre, skip_symbolic_shape=False, auto_merge=True)
    with np.load(calib_npz) as d:
        # samples on axis 0: one batch element each when the array has the input's rank (edgepack's convention)
        samples = [{k: d[k][i:i + 1] if d[k].ndim == len(shapes.get(k, ())) else d[k][i] for k in d.files}
                   for i in range(len(d[d.files[0]]))]
    it = iter(samples)

    class Reader:
        def get_next(self):
            return next(it, None)

    act = QuantType.QUInt8 if recipe.get("activation_type") == "uint8" else QuantType.QInt8
    ops = recipe.get("op_types")
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=bool(recipe.get("per_channel", True)),
                    reduce_range=bool(recipe.get("reduce_range", False)), activation_type=act,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    op_types_to_quantize=ops if isinstance(ops, list) else None,
                    nodes_to_exclude=list(recipe.get("float_nodes") or []),
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--route", choices=["tflite", "int8"], required=True)
    p.add_argument("--shape", action="append", default=[])
    p.add_argument("--inputs")
    p.add_argument("--calibration")
    p.add_argument("--recipe", default="{}")
    a = p.parse_args(argv)
    shapes = {s.split("=")[0]: [int(x) for x in s.split("=")[1].split("x")] for s in a.shape}
    with tempfile.TemporaryDirectory(prefix="plain-real-") as work:
        model = prepared(a.model, shapes, work)
        if a.route == "tflite":
            tflite(model, a.out, shapes, a.inputs, work)
        else:
            int8(model, a.out, a.calibration, json.loads(a.recipe), work, shapes)
    sys.stderr.write("plain build %.3f s in process\n" % (time.perf_counter() - T0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
