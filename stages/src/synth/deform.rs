//! `randaffine` (spec §4.2, §11.2): albumentations `Affine` on the source image and the mask, then
//! `ElasticTransform` on the mask only.
//!
//! The official code runs the elastic warp on image and mask for every frame and discards the image;
//! its field is the same for the whole clip. Here the field is generated once per clip and, since
//! both mask warps are nearest-neighbour, folded with the affine into one source-index map that
//! each frame's hull mask is gathered through.

use rand::Rng;

use super::warp::{warp_affine_linear_u8, warp_affine_nearest_index, Affine};
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

/// Elastic `alpha` and `sigma` of the official `randaffine`.
pub const ELASTIC_ALPHA: f64 = 50.0;
pub const ELASTIC_SIGMA: f64 = 7.0;

/// scipy `gaussian_filter1d` weights (truncate 4.0).
fn scipy_gaussian_weights(sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as i64;
    let mut w: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 * (x * x) as f64 / (sigma * sigma)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= s);
    w
}

/// scipy mode `reflect` (half-sample symmetric: `dcba|abcd|dcba`).
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m as usize
}

fn gaussian_filter_2d(src: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    let k = scipy_gaussian_weights(sigma);
    let r = (k.len() / 2) as i64;
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let mut acc = 0.0;
            for (t, &kv) in k.iter().enumerate() {
                acc += kv * row[reflect(x as i64 + t as i64 - r, w)];
            }
            tmp[y * w + x] = acc;
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        let o = &mut out[y * w..(y + 1) * w];
        for (t, &kv) in k.iter().enumerate() {
            let sy = reflect(y as i64 + t as i64 - r, h);
            for (a, &v) in o.iter_mut().zip(&tmp[sy * w..(sy + 1) * w]) {
                *a += kv * v;
            }
        }
    }
    out
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
    /// Draws the elastic field (U(−1,1) per pixel, scipy Gaussian σ = 7, ×50, float32 maps) and
    /// composes it with the affine `params`.
    pub fn draw<R: Rng>(rng: &mut R, params: &AffineParams, height: usize, width: usize) -> Self {
        let noise = |rng: &mut R| -> Vec<f64> {
            (0..height * width)
                .map(|_| rng.gen::<f64>() * 2.0 - 1.0)
                .collect()
        };
        let nx = noise(rng);
        let ny = noise(rng);
        let dx = gaussian_filter_2d(&nx, height, width, ELASTIC_SIGMA);
        let dy = gaussian_filter_2d(&ny, height, width, ELASTIC_SIGMA);
        let affine = params.matrix(height, width);
        let aff_idx = warp_affine_nearest_index(&affine, height, width, height, width);
        let mut source = Vec::with_capacity(height * width);
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                let mx = (x as f64 + (dx[i] * ELASTIC_ALPHA) as f32 as f64) as f32;
                let my = (y as f64 + (dy[i] * ELASTIC_ALPHA) as f32 as f64) as f32;
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
    pub fn apply_image(&self, img: &ImageU8) -> ImageU8 {
        warp_affine_linear_u8(img, &self.affine, img.height, img.width)
    }
}
