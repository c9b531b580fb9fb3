"""int8 that recovers and says where it broke (docs/QUANTIZATION.md).

  recipes.py         the build host's decisions (reduce_range from VNNI) and how recipes are named
  recover.py         quantize -> host parity -> fall back the most harmful nodes to float, bounded
  tensors.py         the per-tensor table: SQNR / cosine per tensor, the first diverging one, ranking
  onnx_tensors.py    ONNX: capture intermediate tensors of two models with the same tensor names
  tflite_tensors.py  TF-Lite: the same with ai-edge-quantizer's validation machinery
  scratch.py         the sandbox third-party quantizers run in (their cwd, their log lines)

Nothing is imported here: the backends import the capture modules lazily.
"""
