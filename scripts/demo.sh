#!/usr/bin/env bash
# The main job on the embedded demo data: set up, build, then
#   1. preprocess the demo videos into face-crop shard stores (first 128 consecutive frames),
#   2. train a small FakeSTormer on CPU for a few minutes on two identities (cap, carphone),
#      validating on a held-out third identity (franck),
#   3. evaluate the best weights on the held-out identity: its real clips against self-blended
#      fakes of the same clips (96 uniformly spaced frames → 24 clips each), AUC and friends,
#   4. run `detect` on one demo video with an explanation sheet,
#   5. render the training curves and a preview of the self-blended training pairs,
# and name the output folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --bin fakestormer   # dev profile: dependencies and the numeric crates are optimised (Cargo.toml)
FS=./target/debug/fakestormer
OUT=runs/demo
rm -rf "$OUT"
t0=$(date +%s)
$FS run specs/preprocess-demo-train.toml --out "$OUT/preprocess-train"
$FS shards verify "$OUT/preprocess-train"
$FS synth preview --shards "$OUT/preprocess-train" --out "$OUT/synth-preview.png" --items 4
$FS train specs/train-demo.toml --out "$OUT/train"
$FS plot "$OUT/train"
$FS eval --weights "$OUT/train/best.safetensors" --manifest data-manifests/demo-holdout.jsonl \
    --synthetic --frames 96 --out "$OUT/eval"
$FS detect .cache/media/franck.mp4 --weights "$OUT/train/best.safetensors" \
    --explain "$OUT/detect-franck.png" | tee "$OUT/detect.txt"
t1=$(date +%s)
echo
echo "demo finished in $((t1 - t0)) s (after setup and build)"
echo "demo output: $ROOT/$OUT"
echo "  preprocess-train/  shard stores + report.json     synth-preview.png  self-blended pairs"
echo "  train/             metrics.jsonl, report.json, best/final weights, plots/{loss,accuracy,lr}.png"
echo "  eval/              scores.csv, metrics.json (held-out AUC), roc.png"
echo "  detect.txt, detect-franck.png   fake probability per clip, explanation sheet"
