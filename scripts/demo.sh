#!/usr/bin/env bash
# The main job on the embedded demo data: set up, build, run the demo pipeline, name the output.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --bin fakestormer   # dev profile: dependencies are built optimised (Cargo.toml)
./target/debug/fakestormer run specs/demo-decode.toml --out runs/demo-decode
echo "demo output: $ROOT/runs/demo-decode (report.json and one JSON per video)"
