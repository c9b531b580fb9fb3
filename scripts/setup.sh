#!/usr/bin/env bash
# Create .venv at the repository root with edgepack and everything the tests need.
# Idempotent: a second run only checks that things are in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Pinned set (see requirements.txt); torch==2.13.0 is the CPU build.
# One resolver pass for the base set and the TF-Lite/TensorFlow extras (clean `pip check`, measured).
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-tf.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
# onnx2tf (ONNX / TorchScript -> TF-Lite) in its own venv: it pins TensorFlow 2.19 and numpy 1.26.
PYTHON="$PY" scripts/setup-onnx2tf.sh

# The fleet tests start real OpenSSH daemons on 127.0.0.1: they need sshd.
if [ "${EDGEPACK_SKIP_SSHD_INSTALL:-0}" != "1" ] && ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
    # The package may start a system sshd; the tests start their own daemons.
    (service ssh stop || true) >/dev/null 2>&1
  else
    echo "setup: openssh-server missing and cannot be installed here (need root + apt-get); fleet tests will be skipped" >&2
  fi
fi

# The fleet tests' device with an old onnxruntime (the compatibility guard refuses it a bundle of
# opset 21): a venv from the system Python the loopback devices run, outside .venv.
if [ -x /usr/bin/python3 ] && [ ! -x .venv-device-old/bin/python3 ]; then
  /usr/bin/python3 -m venv --without-pip .venv-device-old
  .venv/bin/pip --disable-pip-version-check --python .venv-device-old/bin/python3 install -q \
    -r requirements-device-old.txt
fi

# `edgepack report` is tested in a real headless browser: Debian's chromium.
if [ "${EDGEPACK_SKIP_CHROMIUM_INSTALL:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "setup: chromium missing and cannot be installed here (need root + apt-get); the report's browser test will be skipped" >&2
  fi
fi

# Issue 12: the OCI tests start Debian's docker-registry (the CNCF distribution server) on
# 127.0.0.1 and make htpasswd files with apache2-utils; the Ansible export tests run ansible-core.
if [ "${EDGEPACK_SKIP_REGISTRY_INSTALL:-0}" != "1" ] && ! command -v docker-registry >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends docker-registry apache2-utils >/dev/null
    (service docker-registry stop || true) >/dev/null 2>&1  # the tests start their own
  else
    echo "setup: docker-registry missing and cannot be installed here; OCI tests will be skipped" >&2
  fi
fi
PYTHON="$PY" bash bench/setup_ansible.sh >/dev/null || echo "setup: ansible-core did not install; export tests will be skipped" >&2
