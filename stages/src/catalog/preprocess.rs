//! `preprocess`: a manifest row in, the video's face crops stored (decode → detect/track → crop →
//! landmarks → shard store) and one small summary out for the `shard-store` sink to commit.
//!
//! Each item gets its own store (see [`super::shard_store`]), written by the one stage instance
//! that handles the item, so results are the same for any number of workers or processes.

use std::path::PathBuf;

use pipeline::manifest::ManifestRow;
use pipeline::{
    BuildContext, ParamProblem, Params, Stage, StageContext, StageError, ValidateContext,
};
use serde::{Deserialize, Serialize};

use super::shard_store::{is_done, staging_dir, store_dir, PreprocessedVideo};
use super::DecodeParams;
use crate::align::{BoxAdapter, ShapePredictor};
use crate::crop::{CropParams, Interpolation};
use crate::decode::DecodeOptions;
use crate::detect::{
    Between, FaceDetector, FacePolicy, HaarDetector, HaarParams, LostRule, Mtcnn, MtcnnParams,
    TrackParams,
};
use crate::lossless::ImageCodec;
use crate::preprocess::{
    preprocess_video, DlibLandmarker, Landmarker, PreprocessConfig, VideoItem, MTCNN_TO_DLIB,
};
use crate::shard::{ShardConfig, ShardReader, ShardWriter};

/// dlib's 68-point model from Debian `libdlib-data`.
pub const DEBIAN_PREDICTOR: &str = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";

/// Debian `opencv-data`'s frontal-face cascade, used when `model_dir` has none.
const DEBIAN_CASCADE: &str = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";

/// Every setting of the per-video chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessParams {
    /// Frame selection, as the `decode` stage: `first`, `uniform`, `every`, `all`.
    pub select: String,
    pub frames: usize,
    pub every: usize,
    /// FFmpeg decoder threads per stage worker.
    pub threads: usize,
    /// `mtcnn` (default) or `haar`.
    pub detector: String,
    /// Folder with `mtcnn/{pnet,rnet,onet}.onnx` (default: `stages::detect::default_model_dir()`).
    pub model_dir: Option<String>,
    /// MTCNN: smallest face side searched, pixels.
    pub min_face_size: f32,
    /// MTCNN: skip faces smaller than this fraction of the frame's short side (0 = off).
    pub min_face_fraction: f32,
    /// Full detection on every k-th selected frame, the face followed in between.
    pub detect_every: usize,
    /// `tracked`, `largest`, `most_confident` or `official`.
    pub policy: String,
    /// Between full detections: `landmarks` (follow the face with its landmarks and detect
    /// again when it looks lost), `refine` or `hold`.
    pub between: String,
    pub min_iou: f32,
    /// `between = "landmarks"`: detect again when the box implied by a frame's landmarks has
    /// IoU below this with the box it was cut from.
    pub lost_min_iou: f32,
    /// `between = "landmarks"`: detect again when consecutive crops' 16×16 gray thumbnails
    /// differ by more than this on average (0–255).
    pub lost_max_thumb_diff: f32,
    /// Box growth on each side, as a fraction of its width / height (official: 0.25).
    pub pad_x: f32,
    pub pad_y: f32,
    /// Crop side in pixels (official: 256).
    pub size: u32,
    /// `linear` (official) or `area`.
    pub interpolation: String,
    /// `med_pack` (fastest lossless, default), `med` (MED + zstd, smaller), `png` or `raw`.
    pub codec: String,
    /// zstd level of the `med` codec.
    pub zstd_level: i32,
    /// Compute dense landmarks with the dlib shape predictor.
    pub landmarks: bool,
    /// dlib `shape_predictor` file (68 or 81 points).
    pub predictor: String,
    /// OpenCV threads per worker (1: the engine already parallelises over videos).
    pub opencv_threads: usize,
}

impl Default for PreprocessParams {
    fn default() -> Self {
        let d = PreprocessConfig::default();
        let m = MtcnnParams::default();
        Self {
            select: "uniform".into(),
            frames: 32,
            every: 1,
            threads: 1,
            detector: "mtcnn".into(),
            model_dir: None,
            min_face_size: m.min_face_size,
            min_face_fraction: m.min_face_fraction,
            detect_every: d.track.detect_every,
            policy: "tracked".into(),
            between: "landmarks".into(),
            min_iou: d.track.min_iou,
            lost_min_iou: d.track.lost.min_iou,
            lost_max_thumb_diff: d.track.lost.max_thumb_diff,
            pad_x: d.crop.pad_x,
            pad_y: d.crop.pad_y,
            size: d.crop.out_width,
            interpolation: "linear".into(),
            codec: "med_pack".into(),
            zstd_level: 1,
            landmarks: true,
            predictor: DEBIAN_PREDICTOR.into(),
            opencv_threads: 1,
        }
    }
}

const DETECTORS: [&str; 2] = ["mtcnn", "haar"];
const POLICIES: [&str; 4] = ["tracked", "largest", "most_confident", "official"];
const BETWEEN: [&str; 3] = ["refine", "hold", "landmarks"];
const INTERPOLATIONS: [&str; 2] = ["linear", "area"];
const CODECS: [&str; 4] = ["med_pack", "med", "png", "raw"];

fn choice(p: &mut Vec<ParamProblem>, field: &str, value: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        p.push(
            ParamProblem::new(field, format!("unknown {field} `{value}`"))
                .hint(format!("one of: {}", allowed.join(", "))),
        );
    }
}

fn range<T: PartialOrd + std::fmt::Display>(
    p: &mut Vec<ParamProblem>,
    field: &str,
    v: T,
    lo: T,
    hi: T,
) {
    if !(v >= lo && v <= hi) {
        p.push(ParamProblem::new(
            field,
            format!("{v} is out of range {lo}..={hi}"),
        ));
    }
}

impl PreprocessParams {
    fn decode(&self) -> DecodeParams {
        DecodeParams {
            select: self.select.clone(),
            frames: self.frames,
            every: self.every,
            threads: self.threads,
        }
    }

    /// The chain settings (call after `validate`).
    pub fn config(&self) -> PreprocessConfig {
        PreprocessConfig {
            selection: self.decode().selection(),
            decode: DecodeOptions {
                threads: self.threads,
            },
            track: TrackParams {
                policy: match self.policy.as_str() {
                    "largest" => FacePolicy::Largest,
                    "most_confident" => FacePolicy::MostConfident,
                    "official" => FacePolicy::Official,
                    _ => FacePolicy::Tracked,
                },
                detect_every: self.detect_every,
                min_iou: self.min_iou,
                between: match self.between.as_str() {
                    "hold" => Between::Hold,
                    "landmarks" => Between::Landmarks,
                    _ => Between::Refine,
                },
                lost: LostRule {
                    min_iou: self.lost_min_iou,
                    max_thumb_diff: self.lost_max_thumb_diff,
                },
            },
            crop: CropParams {
                pad_x: self.pad_x,
                pad_y: self.pad_y,
                out_width: self.size,
                out_height: self.size,
                interpolation: if self.interpolation == "area" {
                    Interpolation::Area
                } else {
                    Interpolation::Linear
                },
            },
            codec: match self.codec.as_str() {
                "png" => ImageCodec::Png,
                "raw" => ImageCodec::Raw,
                "med_pack" => ImageCodec::MedPack,
                _ => ImageCodec::Med {
                    zstd_level: self.zstd_level,
                },
            },
        }
    }
}

impl Params for PreprocessParams {
    fn validate(&self, ctx: &ValidateContext) -> Vec<ParamProblem> {
        let mut p = self.decode().validate(ctx);
        choice(&mut p, "detector", &self.detector, &DETECTORS);
        choice(&mut p, "policy", &self.policy, &POLICIES);
        choice(&mut p, "between", &self.between, &BETWEEN);
        choice(
            &mut p,
            "interpolation",
            &self.interpolation,
            &INTERPOLATIONS,
        );
        choice(&mut p, "codec", &self.codec, &CODECS);
        range(&mut p, "min_face_size", self.min_face_size, 12.0, 4096.0);
        range(
            &mut p,
            "min_face_fraction",
            self.min_face_fraction,
            0.0,
            1.0,
        );
        range(&mut p, "detect_every", self.detect_every, 1, 10_000);
        range(&mut p, "min_iou", self.min_iou, 0.0, 1.0);
        range(&mut p, "lost_min_iou", self.lost_min_iou, 0.0, 1.0);
        range(
            &mut p,
            "lost_max_thumb_diff",
            self.lost_max_thumb_diff,
            0.0,
            255.0,
        );
        range(&mut p, "pad_x", self.pad_x, 0.0, 4.0);
        range(&mut p, "pad_y", self.pad_y, 0.0, 4.0);
        range(&mut p, "size", self.size, 16, 4096);
        range(&mut p, "zstd_level", self.zstd_level, 1, 22);
        range(&mut p, "opencv_threads", self.opencv_threads, 0, 64);
        p
    }
}

/// Why a stage instance could not be built (missing model files, ...).
fn missing(what: &str, path: &std::path::Path) -> String {
    format!(
        "{what} not found at {} (run scripts/setup-preprocess.sh, or set `model_dir` / \
         `predictor` in the spec, or FAKESTORMER_MODELS)",
        path.display()
    )
}

pub struct PreprocessStage {
    cfg: PreprocessConfig,
    detector: Box<dyn FaceDetector>,
    landmarker: Option<DlibLandmarker>,
    out: PathBuf,
}

impl PreprocessStage {
    pub fn new(p: &PreprocessParams, ctx: &BuildContext) -> Result<Self, String> {
        let resolve = |s: &str| {
            let path = std::path::Path::new(s);
            if path.is_absolute() {
                path.to_path_buf()
            } else {
                ctx.spec_dir.join(path)
            }
        };
        let model_dir = p
            .model_dir
            .as_deref()
            .map(resolve)
            .unwrap_or_else(crate::detect::default_model_dir);
        crate::detect::set_opencv_threads(p.opencv_threads);
        let (detector, adapter): (Box<dyn FaceDetector>, BoxAdapter) = if p.detector == "haar" {
            let mut path = model_dir.join("haarcascade_frontalface_default.xml");
            if !path.is_file() {
                path = PathBuf::from(DEBIAN_CASCADE);
            }
            if !path.is_file() {
                return Err(missing("Haar cascade", &path));
            }
            let d = HaarDetector::load(&path, HaarParams::default()).map_err(|e| e.to_string())?;
            (Box::new(d), BoxAdapter::HAAR_TO_DLIB)
        } else {
            let dir = model_dir.join("mtcnn");
            for f in ["pnet.onnx", "rnet.onnx", "onet.onnx"] {
                if !dir.join(f).is_file() {
                    return Err(missing("MTCNN model", &dir.join(f)));
                }
            }
            let params = MtcnnParams {
                min_face_size: p.min_face_size,
                min_face_fraction: p.min_face_fraction,
                ..MtcnnParams::default()
            };
            let d = Mtcnn::load(&dir, params).map_err(|e| e.to_string())?;
            (Box::new(d), MTCNN_TO_DLIB)
        };
        let landmarker = if p.landmarks {
            let path = resolve(&p.predictor);
            if !path.is_file() {
                return Err(missing("dlib shape predictor", &path));
            }
            let predictor = ShapePredictor::load(&path).map_err(|e| e.to_string())?;
            Some(DlibLandmarker::new(predictor, adapter))
        } else {
            None
        };
        Ok(Self {
            cfg: p.config(),
            detector,
            landmarker,
            out: ctx.out_dir.clone(),
        })
    }
}

impl Stage for PreprocessStage {
    type In = ManifestRow;
    type Out = PreprocessedVideo;

    fn process(
        &mut self,
        row: ManifestRow,
        ctx: &mut StageContext<'_, PreprocessedVideo>,
    ) -> Result<(), StageError> {
        let id = row.id.clone();
        let done = store_dir(&self.out, &id);
        // In an index-managed folder the index decides what is done (an existing store may be
        // stale); elsewhere a finished store is reused.
        if !pipeline::incremental::manages(&self.out) && is_done(&done, &id) {
            let stored = ShardReader::open(&done)
                .ok()
                .and_then(|r| r.video(&id).map(|v| v.frames.len() as u64))
                .unwrap_or(0);
            ctx.count("skipped_done", 1);
            ctx.emit(PreprocessedVideo {
                id,
                staged: None,
                frames_stored: stored,
                no_face: Vec::new(),
            });
            return Ok(());
        }
        let staged = staging_dir(&self.out, &id);
        if staged.exists() {
            std::fs::remove_dir_all(&staged)
                .map_err(|e| StageError::new(format!("cannot clear {}: {e}", staged.display())))?;
        }
        let item = VideoItem {
            video_id: id.clone(),
            path: ctx.item().path(),
            category: row
                .method
                .clone()
                .unwrap_or_else(|| if row.label == 0 { "real" } else { "fake" }.to_owned()),
            split: row.split.clone(),
        };
        let result = (|| {
            let mut writer = ShardWriter::open(
                &staged,
                ShardConfig {
                    codec: self.cfg.codec,
                    ..ShardConfig::default()
                },
            )?;
            let lm = self.landmarker.as_mut().map(|l| l as &mut dyn Landmarker);
            let outcome =
                preprocess_video(&item, &self.cfg, self.detector.as_mut(), lm, &mut writer)?;
            writer.finish()?;
            Ok::<_, crate::preprocess::PreprocessError>(outcome)
        })();
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staged);
                return Err(StageError::new(e.to_string()));
            }
        };
        ctx.count("frames_stored", outcome.frames_stored);
        ctx.count("no_face", outcome.no_face.len() as u64);
        ctx.count("frames_decoded", outcome.decode.frames_decoded);
        ctx.count("detector_calls", outcome.track.full_detections);
        ctx.count("refinements", outcome.track.refinements);
        for i in &outcome.no_face {
            ctx.skip(format!("frame {i}: no face"));
        }
        for i in &outcome.decode.missing {
            ctx.skip(format!(
                "frame {i} selected but never decoded (stream shorter than declared)"
            ));
        }
        if let Some(t) = &outcome.decode.truncated {
            ctx.skip(format!("stream truncated: {t}"));
        }
        ctx.emit(PreprocessedVideo {
            id,
            staged: Some(staged),
            frames_stored: outcome.frames_stored,
            no_face: outcome.no_face,
        });
        Ok(())
    }
}
