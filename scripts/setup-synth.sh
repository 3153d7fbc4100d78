#!/usr/bin/env bash
# Setup for the SBV synthesis stage (stages/src/synth): system OpenCV (imgproc, imgcodecs) and the
# clang/libclang the `opencv` crate's binding generator needs. Idempotent: installs only what is
# missing. Also checks that the golden fixtures the parity tests read are reachable.
set -euo pipefail

need=()
pkg-config --exists opencv4 2>/dev/null || need+=(libopencv-dev)
command -v clang >/dev/null 2>&1 || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)

if ((${#need[@]})); then
    echo "setup-synth: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
echo "setup-synth: OpenCV $(pkg-config --modversion opencv4)"

root="$(cd "$(dirname "$0")/.." && pwd)"
fixtures="${FAKESTORMER_FIXTURES:-}"
if [ -z "$fixtures" ]; then
    # Same search as the tests: <repo>/../shared/fixtures, then any ancestor's shared/fixtures.
    dir="$root"
    while [ "$dir" != "/" ]; do
        dir="$(dirname "$dir")"
        if [ -d "$dir/shared/fixtures" ]; then fixtures="$dir/shared/fixtures"; break; fi
    done
fi
if [ -f "$fixtures/synth_primitives.safetensors" ] && [ -f "$fixtures/synth_primitives.json" ]; then
    echo "setup-synth: fixtures at $fixtures"
else
    echo "setup-synth: WARNING fixtures not found at $fixtures (set FAKESTORMER_FIXTURES); the synth parity tests will fail" >&2
fi
