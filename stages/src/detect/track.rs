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
    /// Follow the face with its landmarks: each frame's box is derived from the previous
    /// frame's landmarks (the chain calls [`FaceTracker::follow`]), and a frame whose own
    /// landmarks disagree with that box ([`LostRule`]) is detected again at once. Without
    /// landmarks it behaves as `Hold`.
    Landmarks,
}

/// When a face followed by its landmarks counts as lost, so that the frame is detected again.
///
/// A frame's crop is cut around the box predicted from the previous frame's landmarks; the
/// landmarks found in that crop give a refitted box. While the predictor sits on the face the
/// two agree closely (IoU ≥ 0.93 on all 768 followed frames of the demo videos, thumbnail
/// difference ≤ 14, median 1.6; see docs/benchmarks.md); when the face moved further than the
/// box can absorb, left the frame, or a scene cut put something else there, the landmarks
/// slide, shrink or grow and the boxes part (IoU 0.62 at a cut between two demo videos). A cut
/// that leaves a face-like shape in place is caught by the appearance test: the crops of
/// consecutive frames are aligned on the face, so their coarse gray thumbnails differ little
/// unless the content changed (40 at that cut). The defaults leave a wide margin both ways.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LostRule {
    /// Re-detect when IoU(predicted box, refitted box) falls below this.
    pub min_iou: f32,
    /// Re-detect when the mean absolute difference of the 16×16 gray thumbnails of this and the
    /// previous crop exceeds this (0–255 scale).
    pub max_thumb_diff: f32,
}

impl Default for LostRule {
    fn default() -> Self {
        Self {
            min_iou: 0.7,
            max_thumb_diff: 24.0,
        }
    }
}

impl LostRule {
    /// Whether the face followed into `predicted` (refitted to `refit` by its landmarks,
    /// `thumb_diff` from the previous crop) must be detected again. Non-finite or empty boxes
    /// count as lost.
    pub fn is_lost(&self, predicted: &Face, refit: &Face, thumb_diff: Option<f32>) -> bool {
        let finite = [refit.x0, refit.y0, refit.x1, refit.y1]
            .iter()
            .all(|v| v.is_finite());
        if !finite || refit.area() <= 0.0 || predicted.area() <= 0.0 {
            return true;
        }
        // NaN counts as lost.
        let iou = refit.iou(predicted);
        if iou.is_nan() || iou < self.min_iou {
            return true;
        }
        thumb_diff.is_some_and(|d| d.is_nan() || d > self.max_thumb_diff)
    }
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
    /// For [`Between::Landmarks`]: when a followed face counts as lost.
    #[serde(default)]
    pub lost: LostRule,
}

impl Default for TrackParams {
    fn default() -> Self {
        Self {
            policy: FacePolicy::Tracked,
            detect_every: 1,
            min_iou: 0.3,
            between: Between::Landmarks,
            lost: LostRule::default(),
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
    /// Frames detected again because the face followed by its landmarks looked lost.
    #[serde(default)]
    pub lost: u64,
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
                Between::Hold | Between::Landmarks => Some(prev),
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
        self.detect_now(detector, img)
    }

    /// Runs the full detector on this frame now (restarting the `detect_every` count).
    pub fn detect_now(
        &mut self,
        detector: &mut dyn FaceDetector,
        img: RgbView<'_>,
    ) -> Result<FrameFace, DetectError> {
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

    /// Sets the face the next frame starts from (its box derived from this frame's landmarks
    /// under [`Between::Landmarks`]).
    pub fn follow(&mut self, face: Face) {
        self.last = Some(face);
    }

    /// Records that the followed face was lost on this frame; call before
    /// [`FaceTracker::detect_now`], which re-detects it.
    pub fn mark_lost(&mut self) {
        self.stats.lost += 1;
        self.stats.refinements = self.stats.refinements.saturating_sub(1);
    }
}
