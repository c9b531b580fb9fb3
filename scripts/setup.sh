#!/usr/bin/env bash
# Create .venv at the repository root with edgepack and its pinned stack, and .venv-onnx2tf.
# What only the tests need (Debian packages, the zoo, ...) is scripts/setup-test.sh.
# Idempotent: a second run only checks that things are in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Pinned set (see requirements.txt); torch==2.13.0 is the CPU build.
# One resolver pass for the base set and the TF-Lite/TensorFlow extras (clean `pip check`, measured),
# their dependencies held at the tested versions by constraints.txt.
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-tf.txt -c constraints.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
# onnx2tf (ONNX / TorchScript -> TF-Lite) in its own venv: it pins TensorFlow 2.19 and numpy 1.26.
PYTHON="$PY" scripts/setup-onnx2tf.sh
