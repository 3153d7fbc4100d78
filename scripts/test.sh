#!/usr/bin/env bash
# The test suite: set up what the tests need, then every crate's tests, then the house checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# libnvrtc from PyPI (no GPU needed) for the CUDA compile test, if its setup provided one.
if [ -f .cache/nvrtc/env.sh ]; then . .cache/nvrtc/env.sh; fi
cargo test --workspace --no-fail-fast
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
