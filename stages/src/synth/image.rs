//! Owned image buffers (row-major, interleaved channels) and the zero-copy bridge to OpenCV `Mat`s.
//!
//! The synthesis keeps its own buffers so that plain-Rust kernels (fixed-point warps, LUTs, blends)
//! work on slices, and only borrows a `Mat` header around them when an OpenCV primitive is called.

use opencv::core::{Mat, MatTraitConst, CV_8U};
use opencv::prelude::*;

use super::SynthError;

/// An 8-bit image, H×W×C interleaved (RGB for colour images).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageU8 {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// A single-channel float64 plane, H×W (masks, blend weights).
#[derive(Clone, Debug, PartialEq)]
pub struct PlaneF64 {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f64>,
}

impl ImageU8 {
    pub fn new(height: usize, width: usize, channels: usize) -> Self {
        Self {
            height,
            width,
            channels,
            data: vec![0; height * width * channels],
        }
    }

    /// Wraps existing bytes; errors if the length does not match the shape.
    pub fn from_vec(
        height: usize,
        width: usize,
        channels: usize,
        data: Vec<u8>,
    ) -> Result<Self, SynthError> {
        if data.len() != height * width * channels {
            return Err(SynthError::BadInput(format!(
                "image buffer has {} bytes, expected {}x{}x{}",
                data.len(),
                height,
                width,
                channels
            )));
        }
        Ok(Self {
            height,
            width,
            channels,
            data,
        })
    }

    /// Sub-rectangle copy `[y0, y0+h) × [x0, x0+w)`.
    pub fn crop(&self, y0: usize, x0: usize, h: usize, w: usize) -> Self {
        let c = self.channels;
        let mut out = Self::new(h, w, c);
        for y in 0..h {
            let src = ((y0 + y) * self.width + x0) * c;
            out.data[y * w * c..(y + 1) * w * c].copy_from_slice(&self.data[src..src + w * c]);
        }
        out
    }

    /// Column mirror (`img[:, ::-1]`).
    pub fn hflip(&self) -> Self {
        let c = self.channels;
        let mut out = Self::new(self.height, self.width, c);
        for y in 0..self.height {
            for x in 0..self.width {
                let s = (y * self.width + (self.width - 1 - x)) * c;
                let d = (y * self.width + x) * c;
                out.data[d..d + c].copy_from_slice(&self.data[s..s + c]);
            }
        }
        out
    }

    /// Borrows an OpenCV header over this buffer (no copy). The `Mat` must not outlive `self`.
    pub(crate) fn as_mat(&self) -> Result<Mat, SynthError> {
        // SAFETY: the header points into `self.data`, which outlives every use inside this crate
        // (the Mat is dropped before the buffer is touched again) and OpenCV only reads it.
        let typ = opencv::core::CV_MAKETYPE(CV_8U, self.channels as i32);
        let m = unsafe {
            Mat::new_rows_cols_with_data_unsafe_def(
                self.height as i32,
                self.width as i32,
                typ,
                self.data.as_ptr() as *mut std::ffi::c_void,
            )
        }?;
        Ok(m)
    }

    /// Mutable OpenCV header over this buffer (no copy), usable as an output array of the same
    /// size and type. The `Mat` must not outlive the borrow.
    pub(crate) fn as_mat_mut(&mut self) -> Result<Mat, SynthError> {
        let typ = opencv::core::CV_MAKETYPE(CV_8U, self.channels as i32);
        // SAFETY: the header points into `self.data`, exclusively borrowed for the Mat's use;
        // OpenCV writes in place because callers only pass it where size and type match.
        let m = unsafe {
            Mat::new_rows_cols_with_data_unsafe_def(
                self.height as i32,
                self.width as i32,
                typ,
                self.data.as_mut_ptr() as *mut std::ffi::c_void,
            )
        }?;
        Ok(m)
    }

    /// Copies an 8-bit OpenCV matrix into an owned image.
    pub(crate) fn from_mat(m: &Mat) -> Result<Self, SynthError> {
        if m.depth() != CV_8U {
            return Err(SynthError::OpenCv(format!(
                "expected 8-bit Mat, got depth {}",
                m.depth()
            )));
        }
        let cont;
        let m = if m.is_continuous() {
            m
        } else {
            cont = m.try_clone()?;
            &cont
        };
        let data = m.data_bytes()?.to_vec();
        Self::from_vec(
            m.rows() as usize,
            m.cols() as usize,
            m.channels() as usize,
            data,
        )
    }
}

impl PlaneF64 {
    pub fn new(height: usize, width: usize) -> Self {
        Self {
            height,
            width,
            data: vec![0.0; height * width],
        }
    }

    pub fn max(&self) -> f64 {
        self.data.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    pub fn crop(&self, y0: usize, x0: usize, h: usize, w: usize) -> Self {
        let mut out = Self::new(h, w);
        for y in 0..h {
            let src = (y0 + y) * self.width + x0;
            out.data[y * w..(y + 1) * w].copy_from_slice(&self.data[src..src + w]);
        }
        out
    }
}

impl From<opencv::Error> for SynthError {
    fn from(e: opencv::Error) -> Self {
        SynthError::OpenCv(e.to_string())
    }
}
