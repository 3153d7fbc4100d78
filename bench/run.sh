#!/usr/bin/env bash
# Model benchmark: Rust CPU backend vs the PyTorch CPU reference, same run, same machine.
# Usage: bash bench/run.sh [--batch B] [--iters N] [presets...]   (default: --batch 2 --iters 3 tiny small base)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash bench/setup-venv.sh >&2
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--batch 2 --iters 3 tiny small base)
cargo build --release -p model --example bench_model >&2
fixtures="${FAKESTORMER_FIXTURES:-$root/../shared/fixtures}"
[ -d "$fixtures" ] || fixtures="$root/../../shared/fixtures"
nproc >&2
./target/release/examples/bench_model "${args[@]}"
.cache/bench-venv/bin/python -W ignore bench/torch_ref.py --check "$fixtures" "${args[@]}" 2>/dev/null
