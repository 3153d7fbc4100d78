#!/usr/bin/env bash
# Create the PyTorch CPU reference venv for the model benchmark (never a product dependency).
# Idempotent; everything lives under .cache/ (git-ignored). Usage: bash bench/setup-venv.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.cache/bench-venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "bench venv ready: $venv ($("$venv/bin/python" -c 'import torch; print(torch.__version__)'))"
    exit 0
fi
mkdir -p "$root/.cache"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
PIP_CACHE_DIR="$root/.cache/pip" "$venv/bin/python" -m pip install --quiet torch
"$venv/bin/python" -c "import torch; print('bench venv ready:', torch.__version__)"
