#!/usr/bin/env bash
# Quick start: set up .venv, build a bundle of the built-in example CNN for a profile and
# self-test it locally with the bundle's own agent. PROFILE=jetson bash scripts/demo.sh for another.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PROFILE="${PROFILE:-x86-cpu}"
OUT=".edgepack-demo/dist"
.venv/bin/edgepack build examples/models.py:tiny_cnn --profile "$PROFILE" --out "$OUT" --version demo --force
.venv/bin/edgepack selftest "$OUT/tiny_cnn-demo-$PROFILE"
