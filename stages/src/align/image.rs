//! Borrowed 8-bit grayscale image view and dlib's RGB→gray conversion.

use thiserror::Error;

/// Why a pixel buffer cannot be viewed as an image.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    /// The stride is smaller than the row width.
    #[error("stride {stride} is smaller than width {width}")]
    StrideTooSmall { width: usize, stride: usize },
    /// The buffer is shorter than `stride * (height - 1) + width`.
    #[error("buffer of {len} bytes too small for {width}x{height} with stride {stride}")]
    BufferTooSmall {
        len: usize,
        width: usize,
        height: usize,
        stride: usize,
    },
    /// An RGB buffer whose length is not `3 * width * height`.
    #[error("rgb buffer of {len} bytes does not hold {width}x{height} pixels")]
    RgbSize {
        len: usize,
        width: usize,
        height: usize,
    },
}

/// A borrowed row-major 8-bit grayscale image: `data[y * stride + x]`.
///
/// Taking a stride lets callers pass an OpenCV `Mat`'s buffer (or a sub-window of a
/// larger buffer) without copying. [`GrayImage::from_rgb`] views packed RGB bytes as gray,
/// converting only the pixels the predictor reads (a few thousand) instead of the image.
#[derive(Debug, Clone, Copy)]
pub struct GrayImage<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    stride: usize,
    /// 1: gray bytes; 3: RGB bytes turned gray on read by [`rgb_to_gray`]'s rule.
    channels: usize,
}

impl<'a> GrayImage<'a> {
    /// Views `data` as a `width`×`height` image with rows `stride` bytes apart.
    pub fn new(
        data: &'a [u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Self, ImageError> {
        if stride < width {
            return Err(ImageError::StrideTooSmall { width, stride });
        }
        let needed = if height == 0 || width == 0 {
            0
        } else {
            stride * (height - 1) + width
        };
        if data.len() < needed {
            return Err(ImageError::BufferTooSmall {
                len: data.len(),
                width,
                height,
                stride,
            });
        }
        Ok(Self {
            data,
            width,
            height,
            stride,
            channels: 1,
        })
    }

    /// Views tightly packed RGB (or BGR) bytes as the gray image [`rgb_to_gray`] would
    /// produce, pixel for pixel, without converting the whole image.
    pub fn from_rgb(rgb: &'a [u8], width: usize, height: usize) -> Result<Self, ImageError> {
        if rgb.len() != width * height * 3 {
            return Err(ImageError::RgbSize {
                len: rgb.len(),
                width,
                height,
            });
        }
        Ok(Self {
            data: rgb,
            width,
            height,
            stride: width * 3,
            channels: 3,
        })
    }

    /// Views a tightly packed buffer (`stride == width`).
    pub fn packed(data: &'a [u8], width: usize, height: usize) -> Result<Self, ImageError> {
        Self::new(data, width, height, width)
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Pixel at `(x, y)`, or `None` outside the image (dlib reads 0 there).
    #[inline]
    pub fn get(&self, x: i64, y: i64) -> Option<u8> {
        self.offset(x, y).map(|o| self.at(o))
    }

    /// Where pixel `(x, y)` starts in the buffer, or `None` outside the image. With
    /// [`Self::at`] this splits [`Self::get`] so a caller can locate many pixels first and
    /// have their cache lines loading while it computes the rest.
    #[inline]
    pub fn offset(&self, x: i64, y: i64) -> Option<usize> {
        (x >= 0 && y >= 0 && (x as u64) < self.width as u64 && (y as u64) < self.height as u64)
            .then(|| y as usize * self.stride + x as usize * self.channels)
    }

    /// The gray value of the pixel at `offset` (from [`Self::offset`]).
    #[inline]
    pub fn at(&self, offset: usize) -> u8 {
        if self.channels == 3 {
            let p = &self.data[offset..offset + 3];
            ((p[0] as u32 + p[1] as u32 + p[2] as u32) / 3) as u8
        } else {
            self.data[offset]
        }
    }

    /// Hints the CPU to load the pixel at `offset` (from [`Self::offset`]).
    #[inline]
    pub fn prefetch(&self, offset: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = self.data.get(offset) {
            // SAFETY: prefetching is only a hint and never faults; the address is inside
            // `data`. SSE is baseline on x86_64.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    (p as *const u8).cast(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = offset;
    }
}

/// Converts packed 3-channel bytes to grayscale with dlib's rule for `rgb_pixel` →
/// `unsigned char`: `(r + g + b) / 3`, integer division. The rule is symmetric in the
/// channels, so OpenCV's BGR order gives the same result.
///
/// This, not the luma weights OpenCV uses, is what dlib's predictor sees when Python
/// passes it an RGB array; using it keeps our landmarks identical to dlib's.
pub fn rgb_to_gray(
    rgb: &[u8],
    width: usize,
    height: usize,
    out: &mut Vec<u8>,
) -> Result<(), ImageError> {
    if rgb.len() != width * height * 3 {
        return Err(ImageError::RgbSize {
            len: rgb.len(),
            width,
            height,
        });
    }
    out.clear();
    out.extend(
        rgb.chunks_exact(3)
            .map(|p| ((p[0] as u32 + p[1] as u32 + p[2] as u32) / 3) as u8),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_is_integer_mean_of_channels() {
        let rgb = [255, 255, 254, 0, 1, 1, 10, 20, 31];
        let mut out = Vec::new();
        rgb_to_gray(&rgb, 3, 1, &mut out).unwrap();
        // 764/3 = 254.67 -> 254 (truncation, not rounding); 2/3 -> 0; 61/3 -> 20.
        assert_eq!(out, vec![254, 0, 20]);
    }

    #[test]
    fn rgb_view_reads_what_rgb_to_gray_writes() {
        let (w, h) = (7, 5);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 89 % 256) as u8).collect();
        let mut gray = Vec::new();
        rgb_to_gray(&rgb, w, h, &mut gray).unwrap();
        let (a, b) = (
            GrayImage::packed(&gray, w, h).unwrap(),
            GrayImage::from_rgb(&rgb, w, h).unwrap(),
        );
        for y in -1..=h as i64 {
            for x in -1..=w as i64 {
                assert_eq!(a.get(x, y), b.get(x, y), "({x}, {y})");
            }
        }
        assert!(GrayImage::from_rgb(&rgb[1..], w, h).is_err());
    }

    #[test]
    fn rejects_bad_geometry() {
        let buf = [0u8; 10];
        assert!(matches!(
            GrayImage::new(&buf, 4, 2, 3),
            Err(ImageError::StrideTooSmall { .. })
        ));
        assert!(matches!(
            GrayImage::new(&buf, 4, 3, 4),
            Err(ImageError::BufferTooSmall { .. })
        ));
        // Last row need not be padded to the stride.
        let img = GrayImage::new(&buf, 4, 2, 6).unwrap();
        assert_eq!(img.get(3, 1), Some(0));
        assert_eq!(img.get(4, 1), None);
        assert_eq!(img.get(-1, 0), None);
        let mut out = Vec::new();
        assert!(rgb_to_gray(&buf, 2, 2, &mut out).is_err());
    }
}
