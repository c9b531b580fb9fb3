#!/usr/bin/env bash
# The peer of item 4: ansible-core in its own venv (bench/.venv-ansible, git-ignored), so that it
# never mixes with edgepack's pinned set. Idempotent. Exit 0 when ansible-playbook is usable.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv-ansible
PY="${PYTHON:-../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "ansible-core==2.19.*"
fi
out="$("$VENV/bin/ansible-playbook" --version)"
echo "${out%%$'\n'*}"
