//! `randaffine` (spec §4.2, §11.2): albumentations `Affine` on the source image and the mask, then
//! `ElasticTransform` on the mask only.
//!
//! The official code runs the elastic warp on image and mask for every frame and discards the image;
//! its field is the same for the whole clip. Here the field is generated once per clip and, since
//! both mask warps are nearest-neighbour, folded with the affine into one source-index map that
//! each frame's hull mask is gathered through.

use rand::Rng;

use super::warp::{warp_affine_linear_u8_view, warp_affine_nearest_index, Affine, Rect};
use super::{ImageU8, PlaneF64};

/// Parameters of the albumentations 1.1.0 `Affine(translate_percent={x: ±3 %, y: ±1.5 %},
/// scale=[0.95, 1/0.95])` (independent x/y scales, `keep_ratio=False`), drawn once per clip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineParams {
    pub translate_x: f64,
    pub translate_y: f64,
    pub scale_x: f64,
    pub scale_y: f64,
}

impl AffineParams {
    pub fn draw<R: Rng>(rng: &mut R, height: usize, width: usize) -> Self {
        let translate_x = rng.gen_range(-0.03..0.03) * width as f64;
        let translate_y = rng.gen_range(-0.015..0.015) * height as f64;
        let scale_x = rng.gen_range(0.95..1.0 / 0.95);
        let scale_y = rng.gen_range(0.95..1.0 / 0.95);
        Self {
            translate_x,
            translate_y,
            scale_x,
            scale_y,
        }
    }

    /// Source→destination matrix about the pixel centre (w/2 − 0.5, h/2 − 0.5), as albumentations
    /// composes it from skimage transforms (no rotation, no shear).
    pub fn matrix(&self, height: usize, width: usize) -> Affine {
        let cx = width as f64 / 2.0 - 0.5;
        let cy = height as f64 / 2.0 - 0.5;
        [
            [self.scale_x, 0.0, self.translate_x + cx - self.scale_x * cx],
            [0.0, self.scale_y, self.translate_y + cy - self.scale_y * cy],
        ]
    }
}

/// Elastic `alpha` of the official `randaffine` (its `sigma` = 7 is approximated by [`BOX_WIDTHS`]).
pub const ELASTIC_ALPHA: f64 = 50.0;

/// Box widths whose repeated application approximates a Gaussian of σ ≈ 7.16
/// (Σ (w² − 1)/12 = 51.33). The official field comes from numpy's `RandomState` and is not
/// portable anyway; three O(1) running-sum passes replace scipy's 57-tap Gaussian.
const BOX_WIDTHS: [usize; 3] = [15, 15, 13];

/// scipy-style `reflect` index (half-sample symmetric: `dcba|abcd|dcba`).
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m as usize
}

/// One running-mean pass of odd width `w` over every row (reflect border).
fn box_rows(field: &mut [f32], h: usize, w: usize, bw: usize, pad: &mut Vec<f32>) {
    let r = bw / 2;
    let inv = 1.0 / bw as f32;
    for y in 0..h {
        let row = &mut field[y * w..(y + 1) * w];
        pad.clear();
        if w > r + 1 {
            // dcba|abcd...wxyz|zyxw plus one spare sample for the last update.
            pad.extend(row[..r].iter().rev());
            pad.extend_from_slice(row);
            pad.extend(row[w - r - 1..].iter().rev());
        } else {
            pad.extend((0..w + 2 * r + 1).map(|i| row[reflect(i as i64 - r as i64, w)]));
        }
        let mut acc: f32 = pad[..bw].iter().sum();
        for (x, o) in row.iter_mut().enumerate() {
            *o = acc * inv;
            acc += pad[x + bw] - pad[x];
        }
    }
}

/// The same pass over every column, as a running sum of whole rows (cache-friendly).
fn box_cols(field: &mut [f32], h: usize, w: usize, bw: usize, src: &mut Vec<f32>) {
    let r = bw / 2;
    let inv = 1.0 / bw as f32;
    src.clear();
    src.extend_from_slice(field);
    let row = |y: i64| -> &[f32] {
        let y = reflect(y, h);
        &src[y * w..(y + 1) * w]
    };
    let mut acc = vec![0.0f32; w];
    for k in -(r as i64)..=(r as i64) {
        for (a, &v) in acc.iter_mut().zip(row(k)) {
            *a += v;
        }
    }
    for y in 0..h {
        for (o, &a) in field[y * w..(y + 1) * w].iter_mut().zip(&acc) {
            *o = a * inv;
        }
        let (add, sub) = (row(y as i64 + r as i64 + 1), row(y as i64 - r as i64));
        for ((a, &p), &m) in acc.iter_mut().zip(add).zip(sub) {
            *a += p - m;
        }
    }
}

fn smooth_field(field: &mut [f32], h: usize, w: usize) {
    let mut scratch = Vec::with_capacity(h * w);
    for &bw in &BOX_WIDTHS {
        box_rows(field, h, w, bw, &mut scratch);
        box_cols(field, h, w, bw, &mut scratch);
    }
}

/// Reflect-101 index (OpenCV `BORDER_REFLECT_101`).
fn reflect101(i: i64, n: usize) -> usize {
    let n = n as i64;
    if n == 1 {
        return 0;
    }
    let period = 2 * n - 2;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - m;
    }
    m as usize
}

/// The per-clip mask deformation: for each destination pixel, the index of the hull-mask pixel it
/// takes (affine nearest, then elastic nearest with reflect-101), or `None` for the zero border.
#[derive(Clone, Debug)]
pub struct MaskDeformation {
    pub height: usize,
    pub width: usize,
    source: Vec<Option<u32>>,
    affine: Affine,
}

impl MaskDeformation {
    /// Draws the elastic field (U(−1,1) per pixel, Gaussian-smoothed with σ ≈ 7, ×50, float32 maps) and
    /// composes it with the affine `params`.
    pub fn draw<R: Rng>(rng: &mut R, params: &AffineParams, height: usize, width: usize) -> Self {
        // Two 24-bit uniforms per 64-bit draw: the field is float32 like albumentations' maps.
        let noise = |rng: &mut R| -> Vec<f32> {
            let n = height * width;
            let mut v = Vec::with_capacity(n + 1);
            while v.len() < n {
                let bits = rng.next_u64();
                for part in [bits >> 40, (bits >> 16) & 0xFF_FFFF] {
                    v.push(part as f32 * (1.0 / 16_777_216.0) * 2.0 - 1.0);
                }
            }
            v.truncate(n);
            v
        };
        let mut dx = noise(rng);
        let mut dy = noise(rng);
        smooth_field(&mut dx, height, width);
        smooth_field(&mut dy, height, width);
        let affine = params.matrix(height, width);
        let aff_idx = warp_affine_nearest_index(&affine, height, width, height, width);
        let mut source = Vec::with_capacity(height * width);
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                let mx = x as f32 + dx[i] * ELASTIC_ALPHA as f32;
                let my = y as f32 + dy[i] * ELASTIC_ALPHA as f32;
                let sx = reflect101((mx as f64).round_ties_even() as i64, width);
                let sy = reflect101((my as f64).round_ties_even() as i64, height);
                source.push(aff_idx[sy * width + sx]);
            }
        }
        Self {
            height,
            width,
            source,
            affine,
        }
    }

    /// Deforms one frame's hull mask.
    pub fn apply_mask(&self, mask: &PlaneF64) -> PlaneF64 {
        let data = self
            .source
            .iter()
            .map(|s| s.map_or(0.0, |i| mask.data[i as usize]))
            .collect();
        PlaneF64 {
            height: self.height,
            width: self.width,
            data,
        }
    }

    /// The affine part on the source image (bilinear, constant 0 border).
    /// Only destination pixels where `needed` is non-zero are computed when it is given (the blend
    /// reads the source nowhere else); the rest stay 0.
    pub fn apply_image(&self, img: &ImageU8, needed: Option<&PlaneF64>) -> ImageU8 {
        let full = Rect {
            y0: 0,
            x0: 0,
            height: img.height,
            width: img.width,
        };
        warp_affine_linear_u8_view(
            img,
            full,
            &self.affine,
            img.height,
            img.width,
            needed.map(|p| p.data.as_slice()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_passes_approximate_gaussian_sigma_7() {
        // An impulse in the middle of a 1×257 line: the response's variance is Σ (w² − 1)/12.
        let w = 257;
        let mut line = vec![0.0f32; w];
        line[128] = 1.0;
        let mut pad = Vec::new();
        for &bw in &BOX_WIDTHS {
            box_rows(&mut line, 1, w, bw, &mut pad);
        }
        let mass: f64 = line.iter().map(|&v| v as f64).sum();
        let var: f64 = line
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 * (i as f64 - 128.0).powi(2))
            .sum::<f64>()
            / mass;
        assert!((mass - 1.0).abs() < 1e-5);
        assert!((var - 51.333).abs() < 0.01, "variance {var}");
    }

    #[test]
    fn padded_rows_match_reflect_indexing() {
        let (h, w) = (3, 40);
        let data: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 101) as f32).collect();
        let mut fast = data.clone();
        let mut pad = Vec::new();
        box_rows(&mut fast, h, w, 15, &mut pad);
        for y in 0..h {
            for x in 0..w {
                let want: f32 = (-7i64..=7)
                    .map(|k| data[y * w + reflect(x as i64 + k, w)])
                    .sum::<f32>()
                    / 15.0;
                assert!((fast[y * w + x] - want).abs() < 1e-3);
            }
        }
    }
}
