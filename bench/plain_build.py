"""The peer for item 3: a plain script doing only the conversion and quantization calls that
`edgepack build` makes for the same model and recipe (torch.onnx.export with the same options,
then onnxruntime's quant_pre_process + quantize_static / quantize_dynamic with the same settings).

    python bench/plain_build.py FACTORY OUT.onnx --precision fp32|int8 [--calibration FILE.npz]
"""
import argparse
import importlib.util
import sys
import time

T0 = time.perf_counter()


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("factory")
    p.add_argument("out")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    p.add_argument("--calibration")
    a = p.parse_args(argv)
    import numpy as np
    import torch

    path, name = a.factory.rsplit(":", 1)
    spec = importlib.util.spec_from_file_location("bench_models_plain", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, example = getattr(mod, name)()
    fp32 = a.out if a.precision == "fp32" else a.out + ".fp32.onnx"
    torch.onnx.export(model, (example,), fp32, input_names=["x"], output_names=["output"],
                      opset_version=17, dynamic_axes={"x": {0: "batch"}, "output": {0: "batch"}},
                      do_constant_folding=True, dynamo=False, external_data=False)
    if a.precision == "int8":
        import onnx
        from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                              quantize_dynamic, quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
        pre = a.out + ".pre.onnx"
        try:  # as edgepack does: pre-processing is an optimisation; skipped where it fails
            quant_pre_process(fp32, pre, skip_symbolic_shape=False)
        except Exception as exc:
            sys.stderr.write("pre-processing skipped: %r\n" % (exc,))
            pre = fp32
        ops = {n.op_type for n in onnx.load(fp32, load_external_data=False).graph.node}
        if ops & {"Conv", "ConvTranspose"}:
            with np.load(a.calibration) as d:
                arr = d["x"]
            samples = [{"x": arr[i]} for i in range(arr.shape[0])]
            it = iter(samples)

            class Reader:
                def get_next(self):
                    return next(it, None)

            quantize_static(pre, a.out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=False, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        else:
            quantize_dynamic(pre, a.out, per_channel=True, reduce_range=False, weight_type=QuantType.QInt8)
    sys.stderr.write("plain build %.3f s in process\n" % (time.perf_counter() - T0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
