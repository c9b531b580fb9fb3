#!/usr/bin/env bash
# Set up (scripts/setup-test.sh: .venv, the Debian packages, the zoo ...) and run the test suite.
# Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test.sh
exec .venv/bin/python -m pytest -q "$@"
