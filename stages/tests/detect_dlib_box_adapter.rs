//! MTCNN boxes → the boxes dlib's 68-point model expects, fitted against dlib's HOG boxes in
//! the align golden fixture, and the landmarks the chain gets through that adapter.

mod common_fixtures;
mod common_media;
use common_fixtures::{lms68, FIXTURE_CROP_XYXY};
use common_media::media;
use stages::align::ShapePredictor;
use stages::align::{BoxAdapter, DlibRect};
use stages::crop::{crop_region, CropParams, CropRegion};
use stages::decode::{FrameSelection, VideoDecoder};
use stages::detect::{default_model_dir, load_detector, DetectorKind};
use stages::preprocess::MTCNN_TO_DLIB;
use stages::preprocess::{DlibLandmarker, Landmarker};
use std::collections::BTreeMap;

fn golden() -> serde_json::Value {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/align/dlib_golden.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn mtcnn_to_dlib_adapter_refits_from_golden_boxes() {
    // dlib HOG boxes on every 10th frame of the three demo videos (haar_pairs carries them);
    // every 3rd one keeps the test short.
    let g = golden();
    let mut wanted: BTreeMap<String, Vec<(u64, DlibRect)>> = BTreeMap::new();
    for p in g["haar_pairs"]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .step_by(3)
    {
        let b: Vec<i64> = p["dlib_box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        wanted
            .entry(p["source"].as_str().unwrap().to_string())
            .or_default()
            .push((
                p["frame"].as_u64().unwrap(),
                DlibRect::new(b[0], b[1], b[2], b[3]),
            ));
    }
    let mut det = load_detector(DetectorKind::Mtcnn, &default_model_dir()).unwrap();
    let mut pairs = Vec::new();
    for (src, frames) in &wanted {
        let mut it = frames.iter().peekable();
        VideoDecoder::open(media(src))
            .unwrap()
            .decode(FrameSelection::EveryKth(10), |f| {
                while let Some((fi, rect)) = it.peek() {
                    if *fi > f.index {
                        break;
                    }
                    if *fi == f.index {
                        let faces = det.detect(f.view()).unwrap();
                        let d = stages::detect::Face {
                            x0: rect.left as f32,
                            y0: rect.top as f32,
                            x1: (rect.right + 1) as f32,
                            y1: (rect.bottom + 1) as f32,
                            score: 1.0,
                            landmarks5: None,
                        };
                        if let Some(m) = faces.iter().max_by(|a, b| a.iou(&d).total_cmp(&b.iou(&d)))
                        {
                            if m.iou(&d) > 0.3 {
                                let xywh = [
                                    m.x0 as f64,
                                    m.y0 as f64,
                                    m.width() as f64,
                                    m.height() as f64,
                                ];
                                pairs.push((xywh, *rect));
                            }
                        }
                    }
                    it.next();
                }
                it.peek().is_some()
            })
            .unwrap();
    }
    assert!(pairs.len() > 200, "{} pairs", pairs.len());
    let fit = BoxAdapter::fit(&pairs).unwrap();
    eprintln!("{} pairs, fit {fit:?}", pairs.len());
    // The constant was fitted on this data: medians move by well under 1% of the box size
    // when frames are added or removed.
    for (a, b) in [
        (fit.dx, MTCNN_TO_DLIB.dx),
        (fit.dy, MTCNN_TO_DLIB.dy),
        (fit.sw, MTCNN_TO_DLIB.sw),
        (fit.sh, MTCNN_TO_DLIB.sh),
    ] {
        assert!(
            (a - b).abs() < 0.01,
            "fit {fit:?} vs constant {MTCNN_TO_DLIB:?}"
        );
    }
    // Adapted MTCNN boxes land on dlib's boxes (measured median IoU 0.83, against 0.71 for
    // the raw boxes; dlib's boxes are integer and jitter frame to frame).
    let median_iou = |a: &BoxAdapter| {
        let mut ious: Vec<f64> = pairs
            .iter()
            .map(|([x, y, w, h], d)| a.apply(*x, *y, *w, *h).iou(d))
            .collect();
        ious.sort_by(f64::total_cmp);
        ious[ious.len() / 2]
    };
    let (adapted, raw) = (
        median_iou(&MTCNN_TO_DLIB),
        median_iou(&BoxAdapter::IDENTITY),
    );
    eprintln!("median IoU adapted {adapted:.3}, raw {raw:.3}");
    assert!(
        adapted > 0.8 && adapted > raw + 0.05,
        "adapted {adapted}, raw {raw}"
    );
}

#[test]
fn chain_landmarks_from_mtcnn_boxes_match_dlib_on_fixture_crops() {
    // The fixture's 68 points come from dlib's own HOG box on the official crop of franck.mp4
    // frames 50..53. Ours: MTCNN box on the frame → crop coordinates → MTCNN_TO_DLIB →
    // the Rust predictor on the same crop.
    let predictor = ShapePredictor::load("/usr/share/dlib/shape_predictor_68_face_landmarks.dat")
        .expect("Debian libdlib-data provides the 68-point model");
    let mut lm = DlibLandmarker::new(predictor, MTCNN_TO_DLIB);
    let mut det = load_detector(DetectorKind::Mtcnn, &default_model_dir()).unwrap();
    let (frames, _) = VideoDecoder::open(media("franck.mp4"))
        .unwrap()
        .decode_all(FrameSelection::FirstN(54))
        .unwrap();
    let [x0, y0, x1, y1] = FIXTURE_CROP_XYXY;
    let region = CropRegion { x0, y0, x1, y1 };
    let p = CropParams::default();
    for t in 0..4 {
        let f = &frames[50 + t];
        let face = det.detect(f.view()).unwrap()[0];
        let crop = crop_region(f.view(), region, &p).unwrap();
        let a = region.to_crop([face.x0, face.y0], &p);
        let b = region.to_crop([face.x1, face.y1], &p);
        let ours = lm.landmarks(crop.view(), [a[0], a[1], b[0], b[1]]).unwrap();
        let theirs = lms68(t);
        let eye = |pts: &[[f32; 2]], r: std::ops::Range<usize>| {
            let n = r.len() as f32;
            let s = pts[r]
                .iter()
                .fold([0.0, 0.0], |s, q| [s[0] + q[0], s[1] + q[1]]);
            [s[0] / n, s[1] / n]
        };
        let (l, r) = (eye(&theirs, 36..42), eye(&theirs, 42..48));
        let iod = ((l[0] - r[0]).powi(2) + (l[1] - r[1]).powi(2)).sqrt();
        let err = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt())
            .sum::<f32>()
            / 68.0
            / iod;
        eprintln!("frame {}: mean error {:.2}% IOD", 50 + t, err * 100.0);
        // A different (adapted) box: the cascade converges to nearly the same shape. dlib's
        // integer rounding alone is up to 0.7 px ≈ 0.6% IOD here.
        assert!(err < 0.05, "frame {}: {err}", 50 + t);
    }
}
