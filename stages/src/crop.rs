//! Face crops in the official convention (`package_utils/images_crop.py`, spec §5.1): the face box
//! grown by 25% of its width (left and right) and height (top and bottom), clipped to the frame,
//! resized to 256×256 with bilinear interpolation without keeping the aspect ratio.

use opencv::core::{Mat, Size, Vec3b};
use opencv::imgproc;
use opencv::prelude::*;

use crate::detect::Face;
use crate::rgb::{RgbImage, RgbView};

/// Resampling filter for the crop resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// `cv2.INTER_LINEAR` (official).
    Linear,
    /// `cv2.INTER_AREA`.
    Area,
}

/// Crop geometry (defaults = official).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CropParams {
    /// Fraction of the box width added on the left and on the right.
    pub pad_x: f32,
    /// Fraction of the box height added above and below.
    pub pad_y: f32,
    pub out_width: u32,
    pub out_height: u32,
    pub interpolation: Interpolation,
}

impl Default for CropParams {
    fn default() -> Self {
        Self {
            pad_x: 0.25,
            pad_y: 0.25,
            out_width: 256,
            out_height: 256,
            interpolation: Interpolation::Linear,
        }
    }
}

/// The frame rectangle a crop was cut from: columns `x0..x1`, rows `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CropRegion {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl CropRegion {
    /// The padded, clipped region for `face` in a `width`×`height` frame; `None` if it is empty.
    /// Coordinates are truncated to integers like the official `int(...)` casts.
    pub fn for_face(face: &Face, width: u32, height: u32, p: &CropParams) -> Option<Self> {
        let (w, h) = (face.width(), face.height());
        if !(w > 0.0 && h > 0.0) {
            return None;
        }
        let x0 = ((face.x0 - p.pad_x * w).max(0.0)) as i32;
        let y0 = ((face.y0 - p.pad_y * h).max(0.0)) as i32;
        let x1 = ((face.x1 + p.pad_x * w).min(width as f32)) as i32;
        let y1 = ((face.y1 + p.pad_y * h).min(height as f32)) as i32;
        (x1 > x0 && y1 > y0).then_some(Self { x0, y0, x1, y1 })
    }

    pub fn width(&self) -> i32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> i32 {
        self.y1 - self.y0
    }

    /// Maps a frame point into crop pixel coordinates, consistent with the resize's pixel-centre
    /// geometry (`x' = (x − x0 + ½)·sx − ½`).
    pub fn to_crop(&self, p: [f32; 2], params: &CropParams) -> [f32; 2] {
        let sx = params.out_width as f32 / self.width() as f32;
        let sy = params.out_height as f32 / self.height() as f32;
        [
            (p[0] - self.x0 as f32 + 0.5) * sx - 0.5,
            (p[1] - self.y0 as f32 + 0.5) * sy - 0.5,
        ]
    }

    /// Inverse of [`CropRegion::to_crop`].
    pub fn to_frame(&self, p: [f32; 2], params: &CropParams) -> [f32; 2] {
        let sx = params.out_width as f32 / self.width() as f32;
        let sy = params.out_height as f32 / self.height() as f32;
        [
            (p[0] + 0.5) / sx - 0.5 + self.x0 as f32,
            (p[1] + 0.5) / sy - 0.5 + self.y0 as f32,
        ]
    }
}

/// Why a crop failed.
#[derive(Debug, thiserror::Error)]
pub enum CropError {
    #[error("crop region {region:?} lies outside the {width}x{height} frame")]
    OutOfFrame {
        region: CropRegion,
        width: u32,
        height: u32,
    },
    #[error("OpenCV error while cropping: {0}")]
    OpenCv(String),
}

/// A face crop and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceCrop {
    pub image: RgbImage,
    pub region: CropRegion,
}

/// Cuts `region` out of `frame` and resizes it to the output size.
pub fn crop_region(
    frame: RgbView<'_>,
    region: CropRegion,
    p: &CropParams,
) -> Result<RgbImage, CropError> {
    if region.x0 < 0
        || region.y0 < 0
        || region.x1 > frame.width as i32
        || region.y1 > frame.height as i32
        || region.width() <= 0
        || region.height() <= 0
    {
        return Err(CropError::OutOfFrame {
            region,
            width: frame.width,
            height: frame.height,
        });
    }
    let cv = |e: opencv::Error| CropError::OpenCv(e.to_string());
    let src =
        Mat::new_rows_cols_with_bytes::<Vec3b>(frame.height as i32, frame.width as i32, frame.data)
            .map_err(cv)?;
    let roi = Mat::roi(
        &src,
        opencv::core::Rect::new(region.x0, region.y0, region.width(), region.height()),
    )
    .map_err(cv)?;
    let mut out = Mat::default();
    let interp = match p.interpolation {
        Interpolation::Linear => imgproc::INTER_LINEAR,
        Interpolation::Area => imgproc::INTER_AREA,
    };
    imgproc::resize(
        &roi,
        &mut out,
        Size::new(p.out_width as i32, p.out_height as i32),
        0.0,
        0.0,
        interp,
    )
    .map_err(cv)?;
    let data = out.data_bytes().map_err(cv)?.to_vec();
    Ok(RgbImage::new(p.out_width, p.out_height, data).expect("resize output has the asked size"))
}

/// The official crop of `face` from `frame`; `None` when the padded box misses the frame.
pub fn crop_face(
    frame: RgbView<'_>,
    face: &Face,
    p: &CropParams,
) -> Result<Option<FaceCrop>, CropError> {
    let Some(region) = CropRegion::for_face(face, frame.width, frame.height, p) else {
        return Ok(None);
    };
    Ok(Some(FaceCrop {
        image: crop_region(frame, region, p)?,
        region,
    }))
}
