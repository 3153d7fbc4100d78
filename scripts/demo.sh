#!/usr/bin/env bash
# The main job on the embedded demo data: set up, build, preprocess the demo videos into face-crop
# shard stores, render self-blended training pairs from them, and name the output folder.
# (Training, evaluation and `detect` join this demo with issue 7.)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --bin fakestormer   # dev profile: dependencies are built optimised (Cargo.toml)
FS=./target/debug/fakestormer
OUT=runs/demo
rm -rf "$OUT"
$FS run specs/preprocess-demo.toml --out "$OUT/preprocess" --workers 2
$FS shards verify "$OUT/preprocess"
$FS synth preview --shards "$OUT/preprocess" --out "$OUT/synth-preview.png" --items 4
$FS synth dump --shards "$OUT/preprocess" --items 8 --seed 317 --out "$OUT/synth-batch.safetensors"
echo "demo output: $ROOT/$OUT (preprocess/report.json, preprocess/shards/, synth-preview.png, synth-batch.safetensors)"
