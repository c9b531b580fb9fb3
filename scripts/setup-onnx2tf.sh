#!/usr/bin/env bash
# Create .venv-onnx2tf/ at the repository root: an isolated venv for onnx2tf (ONNX -> TF-Lite).
# onnx2tf hard-pins tensorflow 2.19, numpy 1.26, onnx 1.19, onnxruntime 1.23 ... which cannot live
# beside the main .venv (tensorflow-cpu 2.21, numpy 2.4, onnx 1.23), so edgepack runs it as a
# subprocess from this venv (packager/formats/tflite/onnx2tf.py). Idempotent.
# Skip with EDGEPACK_SKIP_ONNX2TF=1 (the ONNX -> TF-Lite route then fails with this command).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
ONNX2TF_VERSION="1.29.24"

if [ "${EDGEPACK_SKIP_ONNX2TF:-0}" = "1" ]; then
  echo "setup-onnx2tf: skipped (EDGEPACK_SKIP_ONNX2TF=1)" >&2
  exit 0
fi
if [ ! -x .venv-onnx2tf/bin/python ]; then
  "$PY" -m venv .venv-onnx2tf
fi
# onnx2tf's own pins decide the rest (tensorflow==2.19.0, numpy==1.26.4, onnx==1.19.1, ...).
.venv-onnx2tf/bin/pip install -q --disable-pip-version-check "onnx2tf==${ONNX2TF_VERSION}"
