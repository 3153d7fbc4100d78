#!/usr/bin/env bash
# Model benchmark: Rust CPU backend vs the PyTorch CPU reference on the same machine, in the same
# run. Rust and PyTorch alternate per round so both see the same background load; the report
# keeps each side's fastest round (min is the robust estimate on a shared machine).
# Usage: bash bench/run.sh [--batch B] [--rounds R] [presets...]   (default: 2, 3, tiny small base)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
batch=2
rounds=3
presets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --batch) batch="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        *) presets+=("$1"); shift ;;
    esac
done
[ ${#presets[@]} -eq 0 ] && presets=(tiny small base)
bash bench/setup-venv.sh >&2
cargo build --release -p model --example bench_model >&2
fixtures="${FAKESTORMER_FIXTURES:-$root/../shared/fixtures}"
[ -d "$fixtures" ] || fixtures="$root/../../shared/fixtures"
py=".cache/bench-venv/bin/python"
$py -W ignore bench/torch_ref.py --check "$fixtures" --iters 0 2>/dev/null | head -1
echo "{\"cores\": $(nproc), \"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
for p in "${presets[@]}"; do
    for r in $(seq "$rounds"); do
        ./target/release/examples/bench_model --batch "$batch" --iters 1 "$p"
        $py -W ignore bench/torch_ref.py --batch "$batch" --iters 1 "$p" 2>/dev/null
    done
done
echo "{\"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
