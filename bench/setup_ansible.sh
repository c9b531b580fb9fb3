#!/usr/bin/env bash
# ansible-core (pinned in requirements-ansible.txt) in its own venv, bench/.venv-ansible
# (git-ignored), for the export tests (tests/export) and the fleet benches. Idempotent.
# Exit 0 when ansible-playbook is usable.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv-ansible
PY="${PYTHON:-../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r ../requirements-ansible.txt
fi
out="$("$VENV/bin/ansible-playbook" --version)"
echo "${out%%$'\n'*}"
