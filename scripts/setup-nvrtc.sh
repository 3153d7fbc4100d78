#!/usr/bin/env bash
# Installs NVRTC 13 (libnvrtc) and the CUDA 13 runtime headers (cuda_bf16.h, cuda_fp16.h) from PyPI
# wheels into .cache/nvrtc/ so the NVRTC compile test (kernels/tests/nvrtc_compile.rs) can run on a
# machine without a CUDA toolkit or GPU. Idempotent: re-running with the cache present does nothing.
# Prints the environment variables the test needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/nvrtc"
NVRTC_VER="13.0.88"
RUNTIME_VER="13.0.96"
mkdir -p "$CACHE/wheels"

fetch_wheel() { # $1 = package, $2 = version, $3 = marker file inside the unzipped tree
  local pkg="$1" ver="$2" marker="$3"
  if [ -e "$CACHE/$marker" ]; then return 0; fi
  local py="${PYTHON:-python3}"
  "$py" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --python-version 3.11 --dest "$CACHE/wheels" "$pkg==$ver"
  local whl
  whl="$(ls "$CACHE"/wheels/"${pkg//-/_}"-"$ver"-*.whl | head -n1)"
  "$py" - "$whl" "$CACHE" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  test -e "$CACHE/$marker" || { echo "setup-nvrtc: $marker missing after unpacking $whl" >&2; exit 1; }
}

fetch_wheel nvidia-cuda-nvrtc "$NVRTC_VER" nvidia/cu13/lib/libnvrtc.so.13
fetch_wheel nvidia-cuda-runtime "$RUNTIME_VER" nvidia/cu13/include/cuda_bf16.h

echo "export LD_LIBRARY_PATH=$CACHE/nvidia/cu13/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
echo "export FAKESTORMER_CUDA_INCLUDE=$CACHE/nvidia/cu13/include"
