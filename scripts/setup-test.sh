#!/usr/bin/env bash
# Everything the test suite needs besides scripts/setup.sh (which it runs first). Idempotent.
#   - Debian packages, installed in one apt pass as root (each test group skips, saying why, where
#     one is missing): openssh-server (the loopback fleet), chromium (the report's browser test),
#     docker-registry + apache2-utils (the OCI registry tests), espeak-ng (the zoo's sample speech);
#   - bench/.venv-ansible: ansible-core for the Ansible export tests (bench/setup_ansible.sh);
#   - .venv-device-old: a device venv with an old onnxruntime (the compatibility guard's test);
#   - .zoo/: the real-model zoo (scripts/setup-zoo.sh; skip with EDGEPACK_SKIP_ZOO=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/setup.sh

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
[ "${EDGEPACK_SKIP_SSHD_INSTALL:-0}" = "1" ] || have sshd || need+=(openssh-server)
[ "${EDGEPACK_SKIP_CHROMIUM_INSTALL:-0}" = "1" ] || have chromium || need+=(chromium)
[ "${EDGEPACK_SKIP_REGISTRY_INSTALL:-0}" = "1" ] || have docker-registry || need+=(docker-registry)
[ "${EDGEPACK_SKIP_REGISTRY_INSTALL:-0}" = "1" ] || have htpasswd || need+=(apache2-utils)
[ "${EDGEPACK_SKIP_ZOO:-0}" = "1" ] || have espeak-ng || need+=(espeak-ng)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # Packages that start a system service: the tests start their own, on 127.0.0.1.
    (service ssh stop || true) >/dev/null 2>&1
    (service docker-registry stop || true) >/dev/null 2>&1
  else
    echo "setup-test: ${need[*]} missing and cannot be installed here (need root + apt-get); their tests will be skipped" >&2
  fi
fi

# The fleet tests' device with an old onnxruntime (the compatibility guard refuses it a bundle of
# opset 21): a venv from the system Python the loopback devices run, outside .venv.
if [ -x /usr/bin/python3 ] && [ ! -x .venv-device-old/bin/python3 ]; then
  /usr/bin/python3 -m venv --without-pip .venv-device-old
  .venv/bin/pip --disable-pip-version-check --python .venv-device-old/bin/python3 install -q \
    -r requirements-device-old.txt
fi

PYTHON="$PY" bash bench/setup_ansible.sh >/dev/null || echo "setup-test: ansible-core did not install; export tests will be skipped" >&2

if [ "${EDGEPACK_SKIP_ZOO:-0}" != "1" ]; then
  bash scripts/setup-zoo.sh
fi
