#!/usr/bin/env bash
# The test suite: set up what the tests need, then every crate's tests, then the house checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# libnvrtc and the CUDA headers from PyPI (no GPU needed) for the CUDA compile test.
eval "$(bash scripts/setup-nvrtc.sh)"
cargo test --workspace --no-fail-fast
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
