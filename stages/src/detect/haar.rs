//! OpenCV Haar cascade (Viola–Jones) face detector: the no-download fallback.

use std::path::Path;

use opencv::core::{Mat, Rect, Size, Vector};
use opencv::imgproc;
use opencv::objdetect::CascadeClassifier;
use opencv::prelude::*;

use super::{DetectError, Face, FaceDetector};
use crate::rgb::RgbView;

/// Where Debian's `opencv-data` installs the frontal-face cascade.
pub const DEBIAN_CASCADE: &str =
    "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";

/// `detectMultiScale` parameters (OpenCV defaults except `min_neighbors`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HaarParams {
    pub scale_factor: f64,
    pub min_neighbors: i32,
    pub min_size: i32,
}

impl Default for HaarParams {
    fn default() -> Self {
        Self {
            scale_factor: 1.1,
            min_neighbors: 5,
            min_size: 30,
        }
    }
}

pub struct HaarDetector {
    cascade: CascadeClassifier,
    params: HaarParams,
}

// SAFETY: a CascadeClassifier is used by one thread at a time (`&mut self`).
unsafe impl Send for HaarDetector {}

impl HaarDetector {
    pub fn load(path: &Path, params: HaarParams) -> Result<Self, DetectError> {
        let model_err = |reason: String| DetectError::Model {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(model_err("file not found".into()));
        }
        let s = path
            .to_str()
            .ok_or_else(|| model_err("path is not UTF-8".into()))?;
        let cascade = CascadeClassifier::new(s).map_err(|e| model_err(e.to_string()))?;
        if cascade.empty().unwrap_or(true) {
            return Err(model_err("not a cascade classifier".into()));
        }
        Ok(Self { cascade, params })
    }
}

impl FaceDetector for HaarDetector {
    fn detect(&mut self, img: RgbView<'_>) -> Result<Vec<Face>, DetectError> {
        let rgb = Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(
            img.height as i32,
            img.width as i32,
            img.data,
        )
        .map_err(DetectError::cv("wrap frame"))?;
        let mut gray = Mat::default();
        imgproc::cvt_color_def(&rgb, &mut gray, imgproc::COLOR_RGB2GRAY)
            .map_err(DetectError::cv("cvtColor"))?;
        let mut rects = Vector::<Rect>::new();
        let mut neighbours = Vector::<i32>::new();
        let p = self.params;
        self.cascade
            .detect_multi_scale2(
                &gray,
                &mut rects,
                &mut neighbours,
                p.scale_factor,
                p.min_neighbors,
                0,
                Size::new(p.min_size, p.min_size),
                Size::default(),
            )
            .map_err(DetectError::cv("detectMultiScale"))?;
        Ok(rects
            .iter()
            .zip(neighbours.iter())
            .map(|(r, n)| Face {
                x0: r.x as f32,
                y0: r.y as f32,
                x1: (r.x + r.width) as f32,
                y1: (r.y + r.height) as f32,
                score: n as f32,
                landmarks5: None,
            })
            .collect())
    }
}
