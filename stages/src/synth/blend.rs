//! Blending of the self-blended image (spec §4.3 steps 9–11): the soft blend mask of
//! `get_blend_mask`, `dynamic_blend`, and the Face-X-ray boundary map 4m(1−m).
//!
//! The float64 resize and Gaussian blur are plain Rust reproductions of OpenCV 4.10's arithmetic
//! (fixtures README §3): resize with float32 source coordinates/weights, Gaussian kernels from the
//! fixed small tables for σ = 0 and k ≤ 9, separable filtering with reflect-101 borders.

use super::warp::Rect;
use super::{ImageU8, PlaneF64, SynthError};

/// Parameters of `get_blend_mask` / `dynamic_blend`, drawn once per clip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlendParams {
    /// Resized mask height (`size_h`) and width (`size_w`).
    pub size_h: usize,
    pub size_w: usize,
    /// First blur: odd kernel, σ = 0 (OpenCV automatic).
    pub kernel_1: usize,
    /// Second blur: odd kernel with σ = `sigma_2`.
    pub kernel_2: usize,
    pub sigma_2: f64,
    /// r in I_fake = r·m·S + (1 − r·m)·I.
    pub blend_ratio: f64,
}

/// `cv2.resize(src, (w, h), INTER_LINEAR)` on float64 with OpenCV's float32 coordinates and weights.
pub fn resize_linear_f64(src: &PlaneF64, out_h: usize, out_w: usize) -> PlaneF64 {
    let taps = |ssize: usize, dsize: usize| -> Vec<(usize, usize, f64, f64)> {
        // OpenCV: scale_x = 1 / inv_scale_x with inv_scale_x = dsize / ssize.
        let scale = 1.0 / (dsize as f64 / ssize as f64);
        (0..dsize)
            .map(|d| {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let mut s = f.floor() as i64;
                let mut fr = f - s as f32;
                if s < 0 {
                    s = 0;
                    fr = 0.0;
                }
                if s >= ssize as i64 - 1 {
                    s = ssize as i64 - 1;
                    fr = 0.0;
                }
                let s = s as usize;
                let s1 = (s + 1).min(ssize - 1);
                (s, s1, (1.0f32 - fr) as f64, fr as f64)
            })
            .collect()
    };
    let xt = taps(src.width, out_w);
    let yt = taps(src.height, out_h);
    // Horizontal pass for every source row that is referenced, then vertical.
    let mut rows = vec![0.0f64; src.height * out_w];
    for y in 0..src.height {
        let s = &src.data[y * src.width..(y + 1) * src.width];
        if s.iter().all(|&v| v == 0.0) {
            continue; // stays 0 (0·a0 + 0·a1)
        }
        let d = &mut rows[y * out_w..(y + 1) * out_w];
        for (o, &(x0, x1, a0, a1)) in d.iter_mut().zip(&xt) {
            *o = s[x0] * a0 + s[x1] * a1;
        }
    }
    let mut out = PlaneF64::new(out_h, out_w);
    for (y, &(y0, y1, b0, b1)) in yt.iter().enumerate() {
        let r0 = &rows[y0 * out_w..(y0 + 1) * out_w];
        let r1 = &rows[y1 * out_w..(y1 + 1) * out_w];
        for ((o, &a), &b) in out.data[y * out_w..(y + 1) * out_w]
            .iter_mut()
            .zip(r0)
            .zip(r1)
        {
            *o = a * b0 + b * b1;
        }
    }
    out
}

/// `cv::getGaussianKernel(k, sigma, CV_64F)` as OpenCV 4.x computes it (`getGaussianKernelBitExact`):
/// fixed tables for σ ≤ 0 and k ≤ 9, otherwise σ = 0.15·k + 0.35 (σ ≤ 0), half-kernel
/// exponentials normalised by 1 / (2·Σ half + 1) and mirrored, so the kernel is exactly symmetric.
pub fn gaussian_kernel(ksize: usize, sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 {
        let table: Option<&[f64]> = match ksize {
            1 => Some(&[1.0]),
            3 => Some(&[0.25, 0.5, 0.25]),
            5 => Some(&[0.0625, 0.25, 0.375, 0.25, 0.0625]),
            7 => Some(&[
                0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
            ]),
            9 => Some(&[
                0.015625, 0.05078125, 0.1171875, 0.19921875, 0.234375, 0.19921875, 0.1171875,
                0.05078125, 0.015625,
            ]),
            _ => None,
        };
        if let Some(t) = table {
            return t.to_vec();
        }
    }
    let sigma = if sigma > 0.0 {
        sigma
    } else {
        (ksize as f64).mul_add(0.15, 0.35)
    };
    let scale2x = -0.125 / (sigma * sigma);
    let n2 = (ksize - 1) / 2;
    let mut values = Vec::with_capacity(n2);
    let mut sum = 0.0f64;
    let mut x = 1 - ksize as i64;
    for _ in 0..n2 {
        let t = softfloat_exp(((x * x) as f64) * scale2x);
        values.push(t);
        sum += t;
        x += 2;
    }
    sum *= 2.0;
    sum += 1.0;
    let mul1 = 1.0 / sum;
    let mut k = vec![0.0; ksize];
    for (i, &v) in values.iter().enumerate() {
        k[i] = v * mul1;
        k[ksize - 1 - i] = v * mul1;
    }
    k[n2] = mul1;
    k
}

/// OpenCV's `softdouble exp` (`core/src/softfloat.cpp`, `f64_exp`): a 64-entry 2^(i/64) table
/// times a degree-5 polynomial, every step an IEEE-rounded double operation. It is not correctly
/// rounded, so `f64::exp` gives Gaussian kernels that differ in the last bit, which moves some
/// truncations of the blended image.
pub fn softfloat_exp(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_infinite() {
        return if x > 0.0 { x } else { 0.0 };
    }
    const EXPTAB: [u64; 64] = [
        0x3ff0000000000000,
        0x3ff02c9a3e778061,
        0x3ff059b0d3158574,
        0x3ff0874518759bc8,
        0x3ff0b5586cf9890f,
        0x3ff0e3ec32d3d1a2,
        0x3ff11301d0125b51,
        0x3ff1429aaea92de0,
        0x3ff172b83c7d517b,
        0x3ff1a35beb6fcb75,
        0x3ff1d4873168b9aa,
        0x3ff2063b88628cd6,
        0x3ff2387a6e756238,
        0x3ff26b4565e27cdd,
        0x3ff29e9df51fdee1,
        0x3ff2d285a6e4030b,
        0x3ff306fe0a31b715,
        0x3ff33c08b26416ff,
        0x3ff371a7373aa9cb,
        0x3ff3a7db34e59ff7,
        0x3ff3dea64c123422,
        0x3ff4160a21f72e2a,
        0x3ff44e086061892d,
        0x3ff486a2b5c13cd0,
        0x3ff4bfdad5362a27,
        0x3ff4f9b2769d2ca7,
        0x3ff5342b569d4f82,
        0x3ff56f4736b527da,
        0x3ff5ab07dd485429,
        0x3ff5e76f15ad2148,
        0x3ff6247eb03a5585,
        0x3ff6623882552225,
        0x3ff6a09e667f3bcd,
        0x3ff6dfb23c651a2f,
        0x3ff71f75e8ec5f74,
        0x3ff75feb564267c9,
        0x3ff7a11473eb0187,
        0x3ff7e2f336cf4e62,
        0x3ff82589994cce13,
        0x3ff868d99b4492ed,
        0x3ff8ace5422aa0db,
        0x3ff8f1ae99157736,
        0x3ff93737b0cdc5e5,
        0x3ff97d829fde4e50,
        0x3ff9c49182a3f090,
        0x3ffa0c667b5de565,
        0x3ffa5503b23e255d,
        0x3ffa9e6b5579fdbf,
        0x3ffae89f995ad3ad,
        0x3ffb33a2b84f15fb,
        0x3ffb7f76f2fb5e47,
        0x3ffbcc1e904bc1d2,
        0x3ffc199bdd85529c,
        0x3ffc67f12e57d14b,
        0x3ffcb720dcef9069,
        0x3ffd072d4a07897c,
        0x3ffd5818dcfba487,
        0x3ffda9e603db3285,
        0x3ffdfc97337b9b5f,
        0x3ffe502ee78b3ff6,
        0x3ffea4afa2a490da,
        0x3ffefa1bee615a27,
        0x3fff50765b6e4540,
        0x3fffa7c1819e90d8,
    ];
    let a0c = f64::from_bits(0x3f83ce0f3e46f431);
    let a5 = 1.0 / a0c;
    let a4 = f64::from_bits(0x3fe62e42fefa39f1) / a0c;
    let a3 = f64::from_bits(0x3fcebfbdff82a45a) / a0c;
    let a2 = f64::from_bits(0x3fac6b08d81fec75) / a0c;
    let a1 = f64::from_bits(0x3f83b2a72b4f3cd3) / a0c;
    let a0 = f64::from_bits(0x3f55e7aa1566c2a4) / a0c;
    let prescale = f64::from_bits(0x3ff71547652b82fe) * 64.0;
    let biased_exp = ((x.to_bits() >> 52) & 0x7ff) as i64;
    let x0 = if biased_exp > 1023 + 10 {
        if x < 0.0 {
            -192000.0
        } else {
            192000.0
        }
    } else {
        x * prescale
    };
    let val0 = x0.round_ties_even() as i64;
    let t = ((val0 >> 6) + 1023).clamp(0, 2047) as u64;
    let buf = f64::from_bits(t << 52);
    let x0 = (x0 - x0.round_ties_even()) * (1.0 / 64.0);
    let poly = ((((a0 * x0 + a1) * x0 + a2) * x0 + a3) * x0 + a4) * x0 + a5;
    buf * a0c * f64::from_bits(EXPTAB[(val0 & 63) as usize]) * poly
}

/// Reflect-101 index (`gfedcb|abcdefgh|gfedcba`).
#[inline]
fn reflect101(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let mut i = i;
    while i < 0 || i >= n {
        if i < 0 {
            i = -i;
        }
        if i >= n {
            i = 2 * n - 2 - i;
        }
    }
    i as usize
}

/// Separable Gaussian blur (`cv2.GaussianBlur(src, (k, k), sigma)`, float64, reflect-101).
/// Rows and columns outside the support of the non-zero region are skipped: they stay exactly 0.
pub fn gaussian_blur_f64(src: &PlaneF64, ksize: usize, sigma: f64) -> PlaneF64 {
    let k = gaussian_kernel(ksize, sigma);
    let r = ksize / 2;
    let (h, w) = (src.height, src.width);
    let Some((y0, y1, x0, x1)) = nonzero_bbox(src) else {
        return PlaneF64::new(h, w);
    };
    // Region whose output can be non-zero (support dilated by r, plus reflected copies at borders:
    // clamp generously to the full extent when the support touches a border).
    let ry0 = y0.saturating_sub(r);
    let ry1 = if y1 + r >= h - 1 { h - 1 } else { y1 + r };
    let rx0 = x0.saturating_sub(r);
    let rx1 = if x1 + r >= w - 1 { w - 1 } else { x1 + r };
    let ow = rx1 - rx0 + 1;
    // Row pass over rows that hold non-zero input (others give 0), for output columns rx0..=rx1.
    // Same per-pixel order as OpenCV's `RowFilter` (k0·s0, then += kt·st), written as one
    // vectorisable axpy per tap over a reflect-101 padded copy of the row.
    let mut tmp = vec![0.0f64; h * ow];
    let idx: Vec<usize> = (0..ow + 2 * r)
        .map(|j| reflect101(rx0 as isize + j as isize - r as isize, w))
        .collect();
    let mut padded = vec![0.0f64; ow + 2 * r];
    for y in y0..=y1 {
        let s = &src.data[y * w..(y + 1) * w];
        for (p, &i) in padded.iter_mut().zip(&idx) {
            *p = s[i];
        }
        let d = &mut tmp[y * ow..(y + 1) * ow];
        for (o, &v) in d.iter_mut().zip(&padded[..ow]) {
            *o = k[0] * v;
        }
        for (t, &kt) in k.iter().enumerate().skip(1) {
            for (o, &v) in d.iter_mut().zip(&padded[t..t + ow]) {
                *o += kt * v;
            }
        }
    }
    // Column pass in OpenCV's symmetric order: k[r]·centre, then += k[r+j]·(row[+j] + row[−j]).
    let mut out = PlaneF64::new(h, w);
    let mut acc = vec![0.0f64; ow];
    let zero = vec![0.0f64; ow];
    let row_at = |sy: usize| -> &[f64] {
        if sy < y0 || sy > y1 {
            &zero
        } else {
            &tmp[sy * ow..(sy + 1) * ow]
        }
    };
    for y in ry0..=ry1 {
        let c = row_at(y);
        let kc = k[r];
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = kc * v + 0.0;
        }
        for j in 1..=r {
            let kj = k[r + j];
            let up = row_at(reflect101(y as isize + j as isize, h));
            let dn = row_at(reflect101(y as isize - j as isize, h));
            for ((a, &u), &d) in acc.iter_mut().zip(up).zip(dn) {
                *a += kj * (u + d);
            }
        }
        out.data[y * w + rx0..y * w + rx1 + 1].copy_from_slice(&acc);
    }
    out
}

fn nonzero_bbox(p: &PlaneF64) -> Option<(usize, usize, usize, usize)> {
    let (mut y0, mut y1, mut x0, mut x1) = (usize::MAX, 0, usize::MAX, 0);
    for y in 0..p.height {
        let row = &p.data[y * p.width..(y + 1) * p.width];
        if let Some(first) = row.iter().position(|&v| v != 0.0) {
            let last = row.iter().rposition(|&v| v != 0.0).unwrap_or(first);
            y0 = y0.min(y);
            y1 = y;
            x0 = x0.min(first);
            x1 = x1.max(last);
        }
    }
    (y0 != usize::MAX).then_some((y0, y1, x0, x1))
}

fn scale_by_max(p: &mut PlaneF64) -> Result<(), SynthError> {
    let m = p.max();
    if m <= 0.0 || !m.is_finite() {
        return Err(SynthError::EmptyBlendCore);
    }
    for v in &mut p.data {
        *v /= m;
    }
    Ok(())
}

/// `get_blend_mask`: resize to (size_w, size_h), blur(k1, σ=0), /max, zero everything < 1 (the
/// fully-inside core), blur(k2, σ2), /max, resize back. Errors where the official code would
/// divide by zero (spec §9 item 20).
pub fn blend_mask(mask: &PlaneF64, p: &BlendParams) -> Result<PlaneF64, SynthError> {
    if mask.height == 0 || mask.width == 0 || p.size_h == 0 || p.size_w == 0 {
        return Err(SynthError::BadInput(
            "blend mask: empty mask or resize target".into(),
        ));
    }
    if p.kernel_1 & 1 == 0 || p.kernel_2 & 1 == 0 {
        return Err(SynthError::BadInput(format!(
            "blend mask: kernels must be odd, got {} and {}",
            p.kernel_1, p.kernel_2
        )));
    }
    let resized = resize_linear_f64(mask, p.size_h, p.size_w);
    let b = match all_ones_core(&resized, p.kernel_1) {
        Some(core) => core,
        None => blurred_core(&resized, p.kernel_1)?,
    };
    let mut b = gaussian_blur_f64(&b, p.kernel_2, p.sigma_2);
    scale_by_max(&mut b)?;
    Ok(resize_linear_f64(&b, mask.height, mask.width))
}

/// The official core: blur(k1, σ=0), divide by the max, zero everything < 1.
pub fn blurred_core(resized: &PlaneF64, kernel_1: usize) -> Result<PlaneF64, SynthError> {
    let mut b = gaussian_blur_f64(resized, kernel_1, 0.0);
    scale_by_max(&mut b)?;
    for v in &mut b.data {
        if *v < 1.0 {
            *v = 0.0;
        }
    }
    Ok(b)
}

/// The same core without the blur, when some pixel's whole k×k support (reflect-101) is exactly
/// 1.0: those pixels all blur to the same sum S₁ (same terms, same order), which is then the
/// maximum, and every other pixel blurs to less (positive weights, monotone rounding, and the
/// resized hull's other values are ≤ 1 − 2⁻²⁴), so `blurred / max ≥ 1` holds exactly on them.
/// `None` when no pixel qualifies (the official arg-max core is then computed by the caller).
pub fn all_ones_core(resized: &PlaneF64, kernel_1: usize) -> Option<PlaneF64> {
    let (h, w, r) = (resized.height, resized.width, kernel_1 / 2);
    let idx_x: Vec<usize> = (0..w + 2 * r)
        .map(|j| reflect101(j as isize - r as isize, w))
        .collect();
    let idx_y: Vec<usize> = (0..h + 2 * r)
        .map(|j| reflect101(j as isize - r as isize, h))
        .collect();
    // Row pass: run lengths of ones inside each window, as counts.
    let mut row_ok = vec![false; h * w];
    let mut ones = vec![0u32; w + 2 * r];
    for y in 0..h {
        let row = &resized.data[y * w..(y + 1) * w];
        for (o, &i) in ones.iter_mut().zip(&idx_x) {
            *o = u32::from(row[i] == 1.0);
        }
        let mut count: u32 = ones[..kernel_1].iter().sum();
        for x in 0..w {
            row_ok[y * w + x] = count == kernel_1 as u32;
            if x + 1 < w {
                count = count + ones[x + kernel_1] - ones[x];
            }
        }
    }
    let mut core = PlaneF64::new(h, w);
    let mut any = false;
    let mut counts = vec![0u32; w];
    for &iy in &idx_y[..kernel_1] {
        for (c, &ok) in counts.iter_mut().zip(&row_ok[iy * w..(iy + 1) * w]) {
            *c += u32::from(ok);
        }
    }
    for y in 0..h {
        for (o, &c) in core.data[y * w..(y + 1) * w].iter_mut().zip(&counts) {
            if c == kernel_1 as u32 {
                *o = 1.0;
                any = true;
            }
        }
        if y + 1 < h {
            let (add, sub) = (idx_y[y + kernel_1], idx_y[y]);
            let (plus, minus) = (
                &row_ok[add * w..(add + 1) * w],
                &row_ok[sub * w..(sub + 1) * w],
            );
            for ((c, &p), &m) in counts.iter_mut().zip(plus).zip(minus) {
                *c = *c + u32::from(p) - u32::from(m);
            }
        }
    }
    any.then_some(core)
}

/// The blend itself: trunc(r·m·S + (1 − r·m)·T) per channel (float64, `.astype(uint8)`).
pub fn blend_images(
    source: &ImageU8,
    target: &ImageU8,
    mask: &PlaneF64,
    ratio: f64,
) -> Result<ImageU8, SynthError> {
    let full = Rect {
        y0: 0,
        x0: 0,
        height: source.height,
        width: source.width,
    };
    blend_images_rect(source, target, mask, ratio, full)
}

/// [`blend_images`] computed only inside `rect` (the crop the pipeline keeps); returns the
/// rect-sized image, identical to blending everything and cropping.
pub fn blend_images_rect(
    source: &ImageU8,
    target: &ImageU8,
    mask: &PlaneF64,
    ratio: f64,
    rect: Rect,
) -> Result<ImageU8, SynthError> {
    if source.height != target.height
        || source.width != target.width
        || source.channels != target.channels
    {
        return Err(SynthError::BadInput(
            "blend: source and target shapes differ".into(),
        ));
    }
    if mask.height != source.height || mask.width != source.width {
        return Err(SynthError::BadInput(
            "blend: mask shape differs from the images".into(),
        ));
    }
    if rect.y0 + rect.height > source.height || rect.x0 + rect.width > source.width {
        return Err(SynthError::BadInput("blend: rect outside the image".into()));
    }
    let c = source.channels;
    let w = source.width;
    let mut out = ImageU8::new(rect.height, rect.width, c);
    for y in 0..rect.height {
        let sy = rect.y0 + y;
        let mrow = &mask.data[sy * w + rect.x0..sy * w + rect.x0 + rect.width];
        let srow = &source.data[(sy * w + rect.x0) * c..(sy * w + rect.x0 + rect.width) * c];
        let trow = &target.data[(sy * w + rect.x0) * c..(sy * w + rect.x0 + rect.width) * c];
        let orow = &mut out.data[y * rect.width * c..(y + 1) * rect.width * c];
        for (x, &m) in mrow.iter().enumerate() {
            let (o, s, t) = (
                &mut orow[x * c..(x + 1) * c],
                &srow[x * c..(x + 1) * c],
                &trow[x * c..(x + 1) * c],
            );
            if m == 0.0 {
                // 0·S + 1·T is exactly T.
                o.copy_from_slice(t);
                continue;
            }
            let m = m * ratio;
            let inv = 1.0 - m;
            for ch in 0..c {
                o[ch] = (m * s[ch] as f64 + inv * t[ch] as f64) as u8;
            }
        }
    }
    Ok(out)
}

/// `dynamic_blend` with fixed parameters: returns (blended image, blend mask without the ratio).
pub fn dynamic_blend(
    source: &ImageU8,
    target: &ImageU8,
    mask: &PlaneF64,
    p: &BlendParams,
) -> Result<(ImageU8, PlaneF64), SynthError> {
    let m = blend_mask(mask, p)?;
    let img = blend_images(source, target, &m, p.blend_ratio)?;
    Ok((img, m))
}

/// Boundary map B = uint8(255 · 4m(1−m)) (truncation), the per-pixel vulnerability of §4.3 step 11.
pub fn boundary_map_u8(mask: &PlaneF64) -> ImageU8 {
    boundary_map_u8_rect(
        mask,
        Rect {
            y0: 0,
            x0: 0,
            height: mask.height,
            width: mask.width,
        },
    )
}

/// [`boundary_map_u8`] of the `rect` crop only.
pub fn boundary_map_u8_rect(mask: &PlaneF64, rect: Rect) -> ImageU8 {
    let mut data = Vec::with_capacity(rect.height * rect.width);
    for y in rect.y0..rect.y0 + rect.height {
        let row = &mask.data[y * mask.width + rect.x0..y * mask.width + rect.x0 + rect.width];
        data.extend(row.iter().map(|&m| {
            if m == 0.0 {
                0
            } else {
                (4.0 * m * (1.0 - m) * 255.0) as u8
            }
        }));
    }
    ImageU8 {
        height: rect.height,
        width: rect.width,
        channels: 1,
        data,
    }
}
