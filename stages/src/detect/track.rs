//! Choosing one face per frame so that a video yields one identity, and following it between
//! full detections.

use super::{DetectError, Face, FaceDetector};
use crate::rgb::RgbView;

/// How to choose among the faces detected in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacePolicy {
    /// The face that best overlaps the previous frame's choice; the largest when there is none.
    Tracked,
    /// The largest box.
    Largest,
    /// The highest score.
    MostConfident,
    /// The official script's rule: scanning in detector order, take a face when its area AND its
    /// score both beat the best so far (not a true argmax of either).
    Official,
}

/// What happens on frames between full detections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Between {
    /// Re-locate the face near its previous box with the detector's cheap refine step.
    Refine,
    /// Keep the previous box (fastest; the align stage's landmarks then follow the face).
    Hold,
}

/// Per-video face following.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrackParams {
    pub policy: FacePolicy,
    /// Run the full detector on every k-th processed frame and only refine the previous face in
    /// between (1 = detect on every frame).
    pub detect_every: usize,
    /// Minimum IoU with the previous face for [`FacePolicy::Tracked`] to call it the same face.
    pub min_iou: f32,
    pub between: Between,
}

impl Default for TrackParams {
    fn default() -> Self {
        Self {
            policy: FacePolicy::Tracked,
            detect_every: 1,
            min_iou: 0.3,
            between: Between::Refine,
        }
    }
}

/// The face chosen for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameFace {
    pub face: Option<Face>,
    /// True when the full detector ran on this frame, false when the previous face was refined.
    pub detected: bool,
}

/// Counters for the run report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrackStats {
    pub frames: u64,
    pub full_detections: u64,
    pub refinements: u64,
    pub no_face: u64,
}

/// Follows one face through the frames of one video (create one per video).
#[derive(Debug, Clone)]
pub struct FaceTracker {
    params: TrackParams,
    last: Option<Face>,
    since_detect: usize,
    stats: TrackStats,
}

impl FaceTracker {
    pub fn new(params: TrackParams) -> Self {
        Self {
            params,
            last: None,
            since_detect: 0,
            stats: TrackStats::default(),
        }
    }

    pub fn stats(&self) -> TrackStats {
        self.stats
    }

    /// Chooses one of `faces` by the policy (using the previous choice for `Tracked`).
    pub fn choose(&self, faces: &[Face]) -> Option<Face> {
        let largest = || {
            faces
                .iter()
                .copied()
                .max_by(|a, b| a.area().total_cmp(&b.area()))
        };
        match self.params.policy {
            FacePolicy::Largest => largest(),
            FacePolicy::MostConfident => faces
                .iter()
                .copied()
                .max_by(|a, b| a.score.total_cmp(&b.score)),
            FacePolicy::Official => {
                let (mut best, mut best_area, mut best_score) = (None, 0.0f32, 0.0f32);
                for f in faces {
                    if f.area() > best_area && f.score > best_score {
                        best = Some(*f);
                        best_area = f.area();
                        best_score = f.score;
                    }
                }
                best
            }
            FacePolicy::Tracked => match &self.last {
                Some(prev) => faces
                    .iter()
                    .copied()
                    .map(|f| (f.iou(prev), f))
                    .filter(|(iou, _)| *iou >= self.params.min_iou)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, f)| f)
                    .or_else(largest),
                None => largest(),
            },
        }
    }

    /// The face of the next frame: a refinement of the previous face between full detections,
    /// a full detection every `detect_every` frames or whenever the face is lost.
    pub fn next(
        &mut self,
        detector: &mut dyn FaceDetector,
        img: RgbView<'_>,
    ) -> Result<FrameFace, DetectError> {
        self.stats.frames += 1;
        let due = self.since_detect + 1 >= self.params.detect_every.max(1);
        if let (false, Some(prev)) = (due, self.last) {
            let found = match self.params.between {
                Between::Refine => detector.refine(img, &prev)?,
                Between::Hold => Some(prev),
            };
            if let Some(f) = found {
                self.since_detect += 1;
                self.stats.refinements += 1;
                self.last = Some(f);
                return Ok(FrameFace {
                    face: Some(f),
                    detected: false,
                });
            }
        }
        let faces = detector.detect(img)?;
        self.stats.full_detections += 1;
        self.since_detect = 0;
        let face = self.choose(&faces);
        match face {
            Some(f) => self.last = Some(f),
            None => self.stats.no_face += 1,
        }
        Ok(FrameFace {
            face,
            detected: true,
        })
    }
}
