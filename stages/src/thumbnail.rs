//! Coarse gray thumbnails of face crops, to notice when consecutive crops stop showing the
//! same thing (a scene cut or a lost track under landmark following).

use crate::rgb::RgbView;

/// Cells per side.
const CELLS: usize = 16;
/// Side of the pixel patch averaged at each cell centre.
const PATCH: usize = 4;

/// 16×16 cell means of the gray value (R+G+B)/3, each from a 4×4 patch at the cell centre
/// (256 × 16 pixel reads: cheap next to everything else done per crop).
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail([f32; CELLS * CELLS]);

impl Thumbnail {
    /// `None` for images smaller than the 16×16 grid of 4×4 patches.
    pub fn of(img: RgbView<'_>) -> Option<Self> {
        let (w, h) = (img.width as usize, img.height as usize);
        if w < CELLS * PATCH || h < CELLS * PATCH || img.data.len() < w * h * 3 {
            return None;
        }
        let mut t = [0f32; CELLS * CELLS];
        for (cy, row) in t.chunks_exact_mut(CELLS).enumerate() {
            let y0 = (2 * cy + 1) * h / (2 * CELLS) - PATCH / 2;
            for (cx, cell) in row.iter_mut().enumerate() {
                let x0 = (2 * cx + 1) * w / (2 * CELLS) - PATCH / 2;
                let mut sum = 0u32;
                for y in y0..y0 + PATCH {
                    let start = (y * w + x0) * 3;
                    sum += img.data[start..start + 3 * PATCH]
                        .iter()
                        .map(|&v| v as u32)
                        .sum::<u32>();
                }
                *cell = sum as f32 / (3 * PATCH * PATCH) as f32;
            }
        }
        Some(Self(t))
    }

    /// Mean absolute difference of the cells (0–255).
    pub fn diff(&self, other: &Thumbnail) -> f32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / (CELLS * CELLS) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images_do_not_differ_and_inverted_ones_do() {
        let (w, h) = (64u32, 80u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let inv: Vec<u8> = data.iter().map(|v| 255 - v).collect();
        let view = |d: &'_ [u8]| -> Thumbnail {
            Thumbnail::of(RgbView {
                width: w,
                height: h,
                data: d,
            })
            .unwrap()
        };
        let (a, b) = (view(&data), view(&inv));
        assert_eq!(a.diff(&a), 0.0);
        let d = a.diff(&b);
        assert!(d > 20.0, "{d}");
        let tiny = vec![0u8; 8 * 8 * 3];
        assert!(Thumbnail::of(RgbView {
            width: 8,
            height: 8,
            data: &tiny
        })
        .is_none());
    }
}
