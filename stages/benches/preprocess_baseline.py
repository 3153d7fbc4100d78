#!/usr/bin/env python3
"""Peer baseline for the preprocess benchmark: the recipe most users run today.

OpenCV decode -> dlib HOG frontal face detector (upsample 1, like the official landmark script)
-> largest face -> 25% padded crop resized to 256x256 (INTER_LINEAR) -> dlib 68-point shape
predictor on the crop -> PNG write per frame, landmarks JSON per video.
Needs the venv made by `scripts/setup-preprocess.sh --baseline` (dlib-bin,
opencv-python-headless, numpy) and Debian libdlib-data.

usage: preprocess_baseline.py [--frames 256] [--upsample 1] [--repeat 1] VIDEO...
prints one JSON line (frames, faces, seconds, fps, peak_rss_mib).
"""
import argparse, json, os, resource, shutil, sys, tempfile, time

import cv2
import dlib

PREDICTOR = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--upsample", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("videos", nargs="+")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(PREDICTOR)
    out = tempfile.mkdtemp(prefix="fakestormer-baseline-")
    n = faces = 0
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for r in range(a.repeat):
        for vi, path in enumerate(a.videos):
            vdir = os.path.join(out, f"{r}_{vi}")
            os.makedirs(vdir)
            cap = cv2.VideoCapture(path)
            lms = []
            for i in range(a.frames):
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                rects = det(gray, a.upsample)
                if len(rects) == 0:
                    continue
                rc = max(rects, key=lambda q: q.width() * q.height())
                h, w = frame.shape[:2]
                bw, bh = rc.right() - rc.left(), rc.bottom() - rc.top()
                x0 = max(0, int(rc.left() - 0.25 * bw)); y0 = max(0, int(rc.top() - 0.25 * bh))
                x1 = min(w, int(rc.right() + 0.25 * bw)); y1 = min(h, int(rc.bottom() + 0.25 * bh))
                crop = cv2.resize(frame[y0:y1, x0:x1], (256, 256), interpolation=cv2.INTER_LINEAR)
                sx, sy = 256.0 / (x1 - x0), 256.0 / (y1 - y0)
                box = dlib.rectangle(int((rc.left() - x0) * sx), int((rc.top() - y0) * sy),
                                     int((rc.right() - x0) * sx), int((rc.bottom() - y0) * sy))
                shape = pred(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), box)
                cv2.imwrite(os.path.join(vdir, f"{i:03d}.png"), crop)
                lms.append({"file_name": f"{i:03d}.png",
                            "orig_lms": [[p.x, p.y] for p in shape.parts()]})
                faces += 1
            cap.release()
            with open(os.path.join(vdir, "landmarks.json"), "w") as f:
                json.dump({"data": lms}, f)
    secs = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    shutil.rmtree(out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"mode": "python-dlib-baseline", "upsample": a.upsample, "repeat": a.repeat,
                      "videos": len(a.videos) * a.repeat, "frames": n, "faces": faces,
                      "seconds": round(secs, 3), "fps": round(n / secs, 2),
                      "cpu_s": round(cpu, 2), "frames_per_cpu_s": round(n / cpu, 2),
                      "peak_rss_mib": round(peak, 1)}))


if __name__ == "__main__":
    sys.exit(main())
