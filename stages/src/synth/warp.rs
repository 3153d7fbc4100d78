//! Affine warps: the network-size transform of `get_center_scale` + `get_affine_transform`
//! (spec §11.2) and a bit-exact reproduction of OpenCV 4.10's fixed-point `warpAffine`
//! (fixtures README §3), which Debian's OpenCV 4.6 does not match for every rounding.

use opencv::core::Point2f;
use opencv::imgproc;
use opencv::prelude::*;

use super::{ImageU8, SynthError};

/// A 2×3 affine matrix mapping source to destination coordinates (OpenCV convention).
pub type Affine = [[f64; 3]; 2];

/// `get_center_scale(shape, aspect_ratio=1, pixel_std=200)` in float32 like the official numpy code.
pub fn center_scale(height: usize, width: usize) -> ([f32; 2], [f32; 2]) {
    let center = [(width as f32 - 1.0) * 0.5, (height as f32 - 1.0) * 0.5];
    let (mut h, mut w) = (height as f64, width as f64);
    if w > h {
        h = w;
    } else if w < h {
        w = h;
    }
    (center, [(w / 200.0) as f32, (h / 200.0) as f32])
}

/// `get_affine_transform(center, scale, rot=0, output_size=(out, out))`: three float32 point pairs
/// handed to `cv::getAffineTransform`, so the matrix carries the same ~1e-5 float32 error as the
/// official one (it decides some 224-pixel roundings).
pub fn network_transform(height: usize, width: usize, out: usize) -> Result<Affine, SynthError> {
    let (c, s) = center_scale(height, width);
    let src_w = s[0] * 200.0; // float32 array times int: float32
                              // `src_w - 1` on a numpy float32 scalar promotes to float64 (numpy 1.x scalar rules).
    let src_dir_y = (src_w as f64 - 1.0) * -0.5;
    let dst_half = (out as f32 - 1.0) * 0.5;
    let dst_dir_y = (out as f32 - 1.0) * -0.5;
    let src0 = [c[0], c[1]];
    let src1 = [(c[0] as f64 + 0.0) as f32, (c[1] as f64 + src_dir_y) as f32];
    let dst0 = [dst_half, dst_half];
    let dst1 = [dst_half, dst_half + dst_dir_y];
    let third = |a: [f32; 2], b: [f32; 2]| {
        let d = [a[0] - b[0], a[1] - b[1]];
        [b[0] - d[1], b[1] + d[0]]
    };
    let src2 = third(src0, src1);
    let dst2 = third(dst0, dst1);
    let p = |v: [f32; 2]| Point2f::new(v[0], v[1]);
    let m = imgproc::get_affine_transform_slice(
        [p(src0), p(src1), p(src2)],
        [p(dst0), p(dst1), p(dst2)],
    )?;
    let mut out_m = [[0.0; 3]; 2];
    for (r, row) in out_m.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = *m.at_2d::<f64>(r as i32, c as i32)?;
        }
    }
    Ok(out_m)
}

/// `cv::invertAffineTransform`.
pub fn invert_affine(m: &Affine) -> Affine {
    let d = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let a11 = m[1][1] * d;
    let a22 = m[0][0] * d;
    let a12 = -m[0][1] * d;
    let a21 = -m[1][0] * d;
    let b1 = -a11 * m[0][2] - a12 * m[1][2];
    let b2 = -a21 * m[0][2] - a22 * m[1][2];
    [[a11, a12, b1], [a21, a22, b2]]
}

const AB_BITS: i32 = 10;
const AB_SCALE: f64 = 1024.0;
const INTER_BITS: i32 = 5;

#[inline]
fn cv_round(v: f64) -> i64 {
    v.round_ties_even() as i64
}

/// `cv2.warpAffine(src, m, (out_w, out_h), INTER_LINEAR, BORDER_CONSTANT, 0)` on uint8, bit-exact
/// with OpenCV 4.10 (5-bit fractions, 15-bit weights; out-of-image neighbours read as 0).
pub fn warp_affine_linear_u8(src: &ImageU8, m: &Affine, out_h: usize, out_w: usize) -> ImageU8 {
    let full = Rect {
        y0: 0,
        x0: 0,
        height: src.height,
        width: src.width,
    };
    warp_affine_linear_u8_view(src, full, m, out_h, out_w, None)
}

/// A sub-rectangle of an image, used as the source of a warp as if it had been cropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub y0: usize,
    pub x0: usize,
    pub height: usize,
    pub width: usize,
}

/// [`warp_affine_linear_u8`] of `src` cropped to `view` (bit-identical to cropping first: pixels
/// outside the view read as the constant 0 border), computing only destination pixels where
/// `only` is non-zero (others stay 0) — the blend never reads the source where its mask is 0.
/// A view reaching outside the image is clipped to it.
pub fn warp_affine_linear_u8_view(
    src: &ImageU8,
    view: Rect,
    m: &Affine,
    out_h: usize,
    out_w: usize,
    only: Option<&[f64]>,
) -> ImageU8 {
    // Invalid arguments never panic: a view reaching outside the image is clipped to it, and an
    // `only` mask of the wrong length is ignored (every pixel is computed).
    let y0 = view.y0.min(src.height);
    let x0 = view.x0.min(src.width);
    let view = Rect {
        y0,
        x0,
        height: view.height.min(src.height - y0),
        width: view.width.min(src.width - x0),
    };
    let only = only.filter(|o| o.len() == out_h * out_w);
    match src.channels {
        1 => warp_linear::<1>(src, view, m, out_h, out_w, only),
        3 => warp_linear::<3>(src, view, m, out_h, out_w, only),
        c => warp_linear_dyn(src, view, m, out_h, out_w, c, only),
    }
}

/// Row-wise fixed-point increments of OpenCV's `WarpAffineInvoker`.
struct FixedRows {
    mi: Affine,
    adelta: Vec<i64>,
    bdelta: Vec<i64>,
}

impl FixedRows {
    fn new(m: &Affine, out_w: usize) -> Self {
        let mi = invert_affine(m);
        let adelta = (0..out_w)
            .map(|x| cv_round(mi[0][0] * x as f64 * AB_SCALE))
            .collect();
        let bdelta = (0..out_w)
            .map(|x| cv_round(mi[1][0] * x as f64 * AB_SCALE))
            .collect();
        Self { mi, adelta, bdelta }
    }

    fn row(&self, y: usize, round_delta: i64) -> (i64, i64) {
        let x0 = cv_round((self.mi[0][1] * y as f64 + self.mi[0][2]) * AB_SCALE) + round_delta;
        let y0 = cv_round((self.mi[1][1] * y as f64 + self.mi[1][2]) * AB_SCALE) + round_delta;
        (x0, y0)
    }
}

#[inline(always)]
fn bilinear_weights(fx: i32, fy: i32) -> [i32; 4] {
    [
        (32 - fx) * (32 - fy) * 32,
        fx * (32 - fy) * 32,
        (32 - fx) * fy * 32,
        fx * fy * 32,
    ]
}

fn warp_linear<const C: usize>(
    src: &ImageU8,
    view: Rect,
    m: &Affine,
    out_h: usize,
    out_w: usize,
    only: Option<&[f64]>,
) -> ImageU8 {
    let (sh, sw) = (view.height as i64, view.width as i64);
    let stride = src.width * C;
    let sd = &src.data[(view.y0 * src.width + view.x0) * C..];
    let mut out = ImageU8::new(out_h, out_w, C);
    let rows = FixedRows::new(m, out_w);
    // Axis-aligned matrices (all our warps) keep the source row pair and fy fixed along an
    // output row: rows fully inside take a branch-light loop; the rest the general one below.
    let axis_aligned = only.is_none() && rows.bdelta.iter().all(|&b| b == 0);
    for y in 0..out_h {
        let (x0, y0) = rows.row(y, 16);
        let orow = &mut out.data[y * out_w * C..(y + 1) * out_w * C];
        if axis_aligned {
            let ys = y0 >> (AB_BITS - INTER_BITS);
            let (yi, fy) = (ys >> INTER_BITS, (ys & 31) as i32);
            let xs_all = |x: usize| (x0 + rows.adelta[x]) >> (AB_BITS - INTER_BITS);
            let inside = |x: usize| {
                let xi = xs_all(x) >> INTER_BITS;
                xi >= 0 && xi + 1 < sw
            };
            if yi >= 0 && yi + 1 < sh && out_w > 0 && inside(0) && inside(out_w - 1) {
                let top = &sd[yi as usize * stride..(yi as usize + 1) * stride];
                let bot = &sd[(yi as usize + 1) * stride..(yi as usize + 2) * stride];
                for (x, dst) in orow.chunks_exact_mut(C).enumerate() {
                    let xs = xs_all(x);
                    let (xi, fx) = ((xs >> INTER_BITS) as usize * C, (xs & 31) as i32);
                    let (t, b) = (&top[xi..xi + 2 * C], &bot[xi..xi + 2 * C]);
                    for ch in 0..C {
                        let h0 = (32 - fx) * t[ch] as i32 + fx * t[C + ch] as i32;
                        let h1 = (32 - fx) * b[ch] as i32 + fx * b[C + ch] as i32;
                        dst[ch] = ((32 * ((32 - fy) * h0 + fy * h1) + (1 << 14)) >> 15) as u8;
                    }
                }
                continue;
            }
        }
        for x in 0..out_w {
            if let Some(o) = only {
                if o[y * out_w + x] == 0.0 {
                    continue;
                }
            }
            let xs = (x0 + rows.adelta[x]) >> (AB_BITS - INTER_BITS);
            let ys = (y0 + rows.bdelta[x]) >> (AB_BITS - INTER_BITS);
            let (xi, yi) = (xs >> INTER_BITS, ys >> INTER_BITS);
            let (fx, fy) = ((xs & 31) as i32, (ys & 31) as i32);
            let dst = &mut orow[x * C..(x + 1) * C];
            if xi >= 0 && yi >= 0 && xi + 1 < sw && yi + 1 < sh {
                let p00 = yi as usize * stride + xi as usize * C;
                let p10 = p00 + stride;
                // One bounds check for the whole 2×2 neighbourhood. Σ w·p with
                // w = (32−fx)(32−fy)·32, … factorises exactly in integers as
                // 32·((32−fy)·h0 + fy·h1) with h = (32−fx)·left + fx·right.
                let top = &sd[p00..p00 + 2 * C];
                let bot = &sd[p10..p10 + 2 * C];
                for ch in 0..C {
                    let h0 = (32 - fx) * top[ch] as i32 + fx * top[C + ch] as i32;
                    let h1 = (32 - fx) * bot[ch] as i32 + fx * bot[C + ch] as i32;
                    let s = 32 * ((32 - fy) * h0 + fy * h1);
                    dst[ch] = ((s + (1 << 14)) >> 15) as u8;
                }
            } else if xi >= -1 && yi >= -1 && xi < sw && yi < sh {
                let w = bilinear_weights(fx, fy);
                let px = |x: i64, y: i64, ch: usize| -> i32 {
                    if x >= 0 && y >= 0 && x < sw && y < sh {
                        sd[y as usize * stride + x as usize * C + ch] as i32
                    } else {
                        0
                    }
                };
                for (ch, d) in dst.iter_mut().enumerate() {
                    let s = w[0] * px(xi, yi, ch)
                        + w[1] * px(xi + 1, yi, ch)
                        + w[2] * px(xi, yi + 1, ch)
                        + w[3] * px(xi + 1, yi + 1, ch);
                    *d = ((s + (1 << 14)) >> 15).clamp(0, 255) as u8;
                }
            }
        }
    }
    out
}

fn warp_linear_dyn(
    src: &ImageU8,
    view: Rect,
    m: &Affine,
    out_h: usize,
    out_w: usize,
    c: usize,
    only: Option<&[f64]>,
) -> ImageU8 {
    // Rare channel counts: split into planes, warp each, interleave.
    let mut out = ImageU8::new(out_h, out_w, c);
    for ch in 0..c {
        let plane = ImageU8 {
            height: src.height,
            width: src.width,
            channels: 1,
            data: src.data.iter().skip(ch).step_by(c).copied().collect(),
        };
        let w = warp_linear::<1>(&plane, view, m, out_h, out_w, only);
        for (i, v) in w.data.into_iter().enumerate() {
            out.data[i * c + ch] = v;
        }
    }
    out
}

/// Source index (row-major, `y * src_w + x`) read by `warpAffine(..., INTER_NEAREST,
/// BORDER_CONSTANT)` for every destination pixel; `None` where the constant 0 border is read.
pub fn warp_affine_nearest_index(
    m: &Affine,
    src_h: usize,
    src_w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<Option<u32>> {
    let rows = FixedRows::new(m, out_w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for y in 0..out_h {
        let (x0, y0) = rows.row(y, 512);
        for x in 0..out_w {
            let xs = (x0 + rows.adelta[x]) >> AB_BITS;
            let ys = (y0 + rows.bdelta[x]) >> AB_BITS;
            out.push(
                (xs >= 0 && ys >= 0 && (xs as usize) < src_w && (ys as usize) < src_h)
                    .then(|| (ys as usize * src_w + xs as usize) as u32),
            );
        }
    }
    out
}
