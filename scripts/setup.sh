#!/usr/bin/env bash
# Installs everything fakestormer and its tests need on a fresh Debian machine (idempotent; the
# second run is offline-fast): Debian packages, demo media, model files, test fixtures.
# Downloads are cached under .cache/ (git-ignored).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(libopencv-dev opencv-data clang libclang-dev pkg-config
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev libavdevice-dev
  libswresample-dev ffmpeg libdlib-data unzip bzip2 fonts-dejavu-core)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash scripts/fetch-demo-media.sh >/dev/null
# Per-component test assets (each script is idempotent and caches under .cache/).
for s in scripts/setup-*.sh; do
  echo "setup: $s" >&2
  bash "$s" >/dev/null
done
echo "setup: done" >&2
