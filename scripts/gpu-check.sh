#!/usr/bin/env bash
# CUDA backend device check.
#
#   scripts/gpu-check.sh --build   (here, with Rust) builds the check binary from kernels/ + model/,
#                                  strips it and copies it with CUDA headers to .cache/gpu-bin/.
#   scripts/gpu-check.sh           (on the lent GPU machine: driver, NVRTC 13, PyTorch; no Rust,
#                                  no network) runs .cache/gpu-bin/gpu_check and the PyTorch eager
#                                  reference bench/torch_train_step.py, printing one report. < 6 minutes.
#
# Carry `.cache/gpu-bin` to the GPU machine (tracked files such as bench/torch_train_step.py travel with
# the working tree). Options for the run: GPU_CHECK_ARGS="--skip-base" etc. are passed to the
# binary; TORCH_REF_ARGS to the PyTorch reference; SKIP_TORCH=1 skips it.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/gpu-bin"

if [ "${1:-}" = "--build" ]; then
  set -e
  cd "$ROOT"
  cargo bench -p kernels --bench gpu_check --no-run 2>&1 | tail -n 3
  exe="$(ls -t target/release/deps/gpu_check-* | grep -v '\.d$' | head -n1)"
  mkdir -p "$BIN_DIR"
  strip -o "$BIN_DIR/gpu_check.tmp" "$exe" && mv "$BIN_DIR/gpu_check.tmp" "$BIN_DIR/gpu_check"
  # NVRTC needs cuda_bf16.h/cuda_fp16.h; ship the PyPI runtime headers in case the GPU machine
  # has no toolkit include directory (scripts/setup-nvrtc.sh downloads them).
  if [ ! -f .cache/nvrtc/nvidia/cu13/include/cuda_bf16.h ]; then ./scripts/setup-nvrtc.sh >/dev/null; fi
  rm -rf "$BIN_DIR/include" && cp -r .cache/nvrtc/nvidia/cu13/include "$BIN_DIR/include"
  # The golden fixtures of the official model (the device machine has no ../shared).
  fx="${FAKESTORMER_FIXTURES:-$ROOT/../shared/fixtures}"
  rm -rf "$BIN_DIR/fixtures" && mkdir -p "$BIN_DIR/fixtures"
  for f in tiny_weights tiny_io tiny_grads; do cp "$fx/$f.safetensors" "$BIN_DIR/fixtures/"; done
  echo "dynamic dependencies of gpu_check (expect only glibc/libgcc_s):"
  ldd "$BIN_DIR/gpu_check" | sed 's/^/  /'
  du -sh "$BIN_DIR"
  echo "carry: .cache/gpu-bin    run: scripts/gpu-check.sh"
  exit 0
fi

start=$(date +%s)
# On the lent machine $OUT comes back to the caller: keep the full log there (the reply itself
# only holds the last 12,000 characters of output).
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
  exec > >(tee "$OUT/gpu-check.log") 2>&1
fi
export PYTHONUNBUFFERED=1
if [ ! -x "$BIN_DIR/gpu_check" ]; then
  echo "gpu-check: $BIN_DIR/gpu_check missing: run scripts/gpu-check.sh --build on the build machine and carry .cache/gpu-bin" >&2
  exit 2
fi

# Locate libnvrtc, libcublas and cuda_bf16.h: system toolkit first, then the NVIDIA PyPI wheels
# PyTorch installs (site-packages/nvidia/**/lib and include).
PY="$(command -v python3 || command -v python || true)"
lib_dirs=()
# The driver's own folder on the lent machines (libcuda.so.1), in case it is not on the loader path.
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$d" ] && lib_dirs+=("$d"); done
inc_dir="${FAKESTORMER_CUDA_INCLUDE:-}"
for d in ${CUDA_HOME:+$CUDA_HOME} ${CUDA_PATH:+$CUDA_PATH} /usr/local/cuda /usr/local/cuda-13* /usr/local/cuda-12*; do
  [ -d "$d" ] || continue
  for l in "$d/lib64" "$d/lib" "$d/targets/x86_64-linux/lib"; do [ -d "$l" ] && lib_dirs+=("$l"); done
  if [ -z "$inc_dir" ] && [ -f "$d/include/cuda_bf16.h" ]; then inc_dir="$d/include"; fi
done
if [ -n "$PY" ]; then
  site_dirs="$("$PY" - <<'PY' 2>/dev/null
import site, sys
paths = set(site.getsitepackages() + [site.getusersitepackages()])
try:
    import torch, os
    paths.add(os.path.dirname(os.path.dirname(torch.__file__)))
except Exception:
    pass
print("\n".join(sorted(paths)))
PY
)"
  while IFS= read -r sp; do
    [ -d "$sp/nvidia" ] || continue
    while IFS= read -r f; do lib_dirs+=("$(dirname "$f")"); done < <(find "$sp/nvidia" -maxdepth 4 \( -name 'libnvrtc.so*' -o -name 'libcublas.so*' -o -name 'libnccl.so*' \) 2>/dev/null)
    if [ -z "$inc_dir" ]; then
      h="$(find "$sp/nvidia" -maxdepth 4 -name cuda_bf16.h 2>/dev/null | head -n1)"
      [ -n "$h" ] && inc_dir="$(dirname "$h")"
    fi
    [ -d "$sp/torch/lib" ] && lib_dirs+=("$sp/torch/lib")
  done <<< "$site_dirs"
fi
if [ -z "$inc_dir" ] && [ -f "$BIN_DIR/include/cuda_bf16.h" ]; then inc_dir="$BIN_DIR/include"; fi
if [ -z "$inc_dir" ]; then
  echo "gpu-check: no directory with cuda_bf16.h found (set FAKESTORMER_CUDA_INCLUDE)" >&2
  exit 2
fi
uniq_dirs="$(printf '%s\n' "${lib_dirs[@]}" | awk 'NF && !seen[$0]++' | paste -sd: -)"
export LD_LIBRARY_PATH="${uniq_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FAKESTORMER_CUDA_INCLUDE="$inc_dir"

echo "# FakeSTormer CUDA device check — $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/# GPU: /'
echo "# headers: $FAKESTORMER_CUDA_INCLUDE"
echo "# libnvrtc: $(for d in ${uniq_dirs//:/ }; do ls "$d"/libnvrtc.so* 2>/dev/null; done | head -n1)"
echo "# libcublas: $(for d in ${uniq_dirs//:/ }; do ls "$d"/libcublas.so* 2>/dev/null; done | head -n1)"

# shellcheck disable=SC2086
timeout 230 "$BIN_DIR/gpu_check" ${GPU_CHECK_ARGS:-}
rc=$?
[ $rc -eq 124 ] && echo "gpu-check: gpu_check exceeded 230 s and was stopped" >&2

if [ "${SKIP_TORCH:-0}" != "1" ]; then
  if [ -n "$PY" ] && [ -f "$ROOT/bench/torch_train_step.py" ]; then
    echo
    echo "## PyTorch eager reference (bench/torch_train_step.py), same architecture and SAM step"
    # shellcheck disable=SC2086
    timeout 120 "$PY" "$ROOT/bench/torch_train_step.py" ${TORCH_REF_ARGS:-} || echo "gpu-check: torch reference failed or timed out (rc $?)" >&2
  else
    echo "gpu-check: python3 or bench/torch_train_step.py missing; PyTorch comparison skipped" >&2
  fi
fi
echo
echo "# gpu-check finished in $(( $(date +%s) - start )) s, gpu_check exit status $rc"
exit $rc
