//! Colour and quality primitives with albumentations 1.1.0 semantics on uint8 (spec §11.3), and
//! the two replayed compositions built from them: the SBI source transform (§4.4) and the post
//! transform shared by the real and fake clip (§4.5).

use opencv::core::{Mat, Size, Vector, CV_32F};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use rand::Rng;

use super::{ImageU8, SynthError};

/// Applies a per-channel 256-entry LUT.
fn apply_lut(img: &mut ImageU8, luts: &[[u8; 256]]) {
    let c = img.channels;
    for px in img.data.chunks_exact_mut(c) {
        for (ch, v) in px.iter_mut().enumerate() {
            *v = luts[ch.min(luts.len() - 1)][*v as usize];
        }
    }
}

/// float32 LUT `clip(arange(256) * alpha + beta, 0, 255).astype(uint8)` (truncation).
fn lut_f32(alpha: Option<f32>, beta: Option<f32>) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (i, o) in lut.iter_mut().enumerate() {
        let mut v = i as f32;
        if let Some(a) = alpha {
            v *= a;
        }
        if let Some(b) = beta {
            v += b;
        }
        *o = v.clamp(0.0, 255.0) as u8;
    }
    lut
}

/// `RGBShift`: per-channel float32 LUT v + shift, clipped and truncated.
pub fn rgb_shift(img: &mut ImageU8, shift: [f64; 3]) {
    let luts: Vec<[u8; 256]> = shift
        .iter()
        .map(|&s| lut_f32(None, Some(s as f32)))
        .collect();
    apply_lut(img, &luts);
}

/// `RandomBrightnessContrast` with `brightness_by_max=True`: LUT v·α + 255·β in float32.
pub fn brightness_contrast(img: &mut ImageU8, alpha: f64, beta: f64) {
    let a = (alpha != 1.0).then_some(alpha as f32);
    let b = (beta != 0.0).then_some((beta * 255.0) as f32);
    let lut = lut_f32(a, b);
    apply_lut(img, &[lut]);
}

/// numpy `np.mod` for float32 (result has the divisor's sign).
fn np_mod_f32(a: f32, b: f32) -> f32 {
    let mut m = a % b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        m += b;
    }
    m
}

/// `HueSaturationValue` on uint8: OpenCV RGB→HSV (H in [0,180)), int16 LUTs shifted in float32
/// (H mod 180, S/V clipped), truncated, HSV→RGB.
pub fn hue_saturation_value(
    img: &mut ImageU8,
    hue: f64,
    sat: f64,
    val: f64,
) -> Result<(), SynthError> {
    if img.channels != 3 {
        return Err(SynthError::BadInput(
            "HSV shift needs a 3-channel image".into(),
        ));
    }
    // Both conversions write straight into Rust buffers of the right size (OpenCV keeps a
    // destination whose size and type already match), so nothing is copied back.
    let mut hsv_img = ImageU8::new(img.height, img.width, 3);
    {
        let ptr = hsv_img.data.as_ptr();
        let mut dst = hsv_img.as_mat_mut()?;
        imgproc::cvt_color(&img.as_mat()?, &mut dst, imgproc::COLOR_RGB2HSV, 0)?;
        ensure_in_place(&dst, ptr)?;
    }
    let mk = |shift: f64, hue: bool| -> Option<[u8; 256]> {
        if shift == 0.0 {
            return None;
        }
        let s = shift as f32;
        let mut lut = [0u8; 256];
        for (i, o) in lut.iter_mut().enumerate() {
            let v = i as f32 + s;
            *o = if hue {
                np_mod_f32(v, 180.0) as u8
            } else {
                v.clamp(0.0, 255.0) as u8
            };
        }
        Some(lut)
    };
    let ident: [u8; 256] = std::array::from_fn(|i| i as u8);
    let luts = [
        mk(hue, true).unwrap_or(ident),
        mk(sat, false).unwrap_or(ident),
        mk(val, false).unwrap_or(ident),
    ];
    apply_lut(&mut hsv_img, &luts);
    let ptr = img.data.as_ptr();
    let mut dst = img.as_mat_mut()?;
    imgproc::cvt_color(&hsv_img.as_mat()?, &mut dst, imgproc::COLOR_HSV2RGB, 0)?;
    ensure_in_place(&dst, ptr)
}

/// Errors if OpenCV reallocated a destination header instead of writing into our buffer.
fn ensure_in_place(dst: &Mat, ptr: *const u8) -> Result<(), SynthError> {
    if dst.data() != ptr {
        return Err(SynthError::OpenCv(
            "cvtColor reallocated its destination".into(),
        ));
    }
    Ok(())
}

/// The float32 `Sharpen` kernel (1−α)·δ + α·[[−1,−1,−1],[−1,8+λ,−1],[−1,−1,−1]].
pub fn sharpen_kernel(alpha: f64, lightness: f64) -> [[f32; 3]; 3] {
    let (a, l) = (alpha as f32, lightness as f32);
    let mut k = [[0f32; 3]; 3];
    for (r, row) in k.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            let nochange = if r == 1 && c == 1 { 1.0f32 } else { 0.0 };
            let effect = if r == 1 && c == 1 { 8.0 + l } else { -1.0f32 };
            *v = (1.0 - a) * nochange + a * effect;
        }
    }
    k
}

/// `Sharpen`: `cv2.filter2D(img, -1, kernel)` (reflect-101, saturating uint8).
pub fn sharpen(img: &ImageU8, kernel: &[[f32; 3]; 3]) -> Result<ImageU8, SynthError> {
    let flat: Vec<f32> = kernel.iter().flatten().copied().collect();
    let k = Mat::new_rows_cols_with_data(3, 3, &flat)?;
    let mut out = Mat::default();
    imgproc::filter_2d(
        &img.as_mat()?,
        &mut out,
        -1,
        &k,
        opencv::core::Point::new(-1, -1),
        0.0,
        opencv::core::BORDER_DEFAULT,
    )?;
    debug_assert_eq!(k.typ(), CV_32F);
    ImageU8::from_mat(&out)
}

/// Official `RandomDownScale`: INTER_NEAREST down to (⌊W/r⌋, ⌊H/r⌋), INTER_LINEAR back up.
pub fn downscale(img: &ImageU8, ratio: usize) -> Result<ImageU8, SynthError> {
    if ratio == 0 {
        return Err(SynthError::BadInput("downscale ratio must be >= 1".into()));
    }
    let (h, w) = (img.height as i32, img.width as i32);
    let mut small = Mat::default();
    let r = ratio as f64;
    let size = Size::new((w as f64 / r) as i32, (h as f64 / r) as i32);
    if size.width < 1 || size.height < 1 {
        return Err(SynthError::BadInput(format!(
            "downscale ratio {ratio} too large for {w}x{h}"
        )));
    }
    imgproc::resize(
        &img.as_mat()?,
        &mut small,
        size,
        0.0,
        0.0,
        imgproc::INTER_NEAREST,
    )?;
    let mut up = Mat::default();
    imgproc::resize(
        &small,
        &mut up,
        Size::new(w, h),
        0.0,
        0.0,
        imgproc::INTER_LINEAR,
    )?;
    ImageU8::from_mat(&up)
}

/// `ImageCompression(.jpg, q)`: `cv2.imencode` + `imdecode` of the RGB buffer handed over as if
/// it were BGR (spec §9 item 19), which is what passing the buffer unchanged does.
pub fn jpeg(img: &ImageU8, quality: i32) -> Result<ImageU8, SynthError> {
    let mut buf: Vector<u8> = Vector::new();
    let params: Vector<i32> = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality]);
    if !imgcodecs::imencode(".jpg", &img.as_mat()?, &mut buf, &params)? {
        return Err(SynthError::OpenCv("imencode(.jpg) failed".into()));
    }
    let flag = if img.channels == 1 {
        imgcodecs::IMREAD_GRAYSCALE
    } else {
        imgcodecs::IMREAD_COLOR
    };
    let dec = imgcodecs::imdecode(&buf, flag)?;
    ImageU8::from_mat(&dec)
}

/// Which of the two `OneOf` branches of the source transform fired.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Degrade {
    DownScale { ratio: usize },
    Sharpen { alpha: f64, lightness: f64 },
}

/// Replayable parameters of `get_source_transforms('video')` (spec §4.4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceTransform {
    /// RGBShift (p = 0.3), `None` when it did not fire.
    pub rgb_shift: Option<[f64; 3]>,
    /// HueSaturationValue (p = 1): hue, sat, val shifts.
    pub hsv: [f64; 3],
    /// RandomBrightnessContrast (p = 1): (alpha, beta).
    pub brightness_contrast: (f64, f64),
    pub degrade: Degrade,
}

impl SourceTransform {
    pub fn draw<R: Rng>(rng: &mut R) -> Self {
        let rgb_shift = (rng.gen::<f64>() < 0.3).then(|| {
            [
                rng.gen_range(-20.0..20.0),
                rng.gen_range(-20.0..20.0),
                rng.gen_range(-20.0..20.0),
            ]
        });
        let hsv = [
            rng.gen_range(-0.3..0.3),
            rng.gen_range(-0.3..0.3),
            rng.gen_range(-0.3..0.3),
        ];
        let brightness_contrast = (1.0 + rng.gen_range(-0.1..0.1), rng.gen_range(-0.1..0.1));
        let degrade = if rng.gen::<bool>() {
            Degrade::DownScale {
                ratio: if rng.gen::<bool>() { 2 } else { 4 },
            }
        } else {
            Degrade::Sharpen {
                alpha: rng.gen_range(0.2..0.5),
                lightness: rng.gen_range(0.5..1.0),
            }
        };
        Self {
            rgb_shift,
            hsv,
            brightness_contrast,
            degrade,
        }
    }

    pub fn apply(&self, img: &ImageU8) -> Result<ImageU8, SynthError> {
        let mut out = img.clone();
        if let Some(s) = self.rgb_shift {
            rgb_shift(&mut out, s);
        }
        hue_saturation_value(&mut out, self.hsv[0], self.hsv[1], self.hsv[2])?;
        brightness_contrast(
            &mut out,
            self.brightness_contrast.0,
            self.brightness_contrast.1,
        );
        match self.degrade {
            Degrade::DownScale { ratio } => downscale(&out, ratio),
            Degrade::Sharpen { alpha, lightness } => {
                sharpen(&out, &sharpen_kernel(alpha, lightness))
            }
        }
    }
}

/// Replayable parameters of `get_transforms('video')` (spec §4.5); every field `None` when its
/// probability draw failed.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct PostTransform {
    pub rgb_shift: Option<[f64; 3]>,
    pub hsv: Option<[f64; 3]>,
    pub brightness_contrast: Option<(f64, f64)>,
    pub jpeg_quality: Option<i32>,
}

impl PostTransform {
    pub fn draw<R: Rng>(rng: &mut R) -> Self {
        let rgb_shift = (rng.gen::<f64>() < 0.3).then(|| {
            [
                rng.gen_range(-20.0..20.0),
                rng.gen_range(-20.0..20.0),
                rng.gen_range(-20.0..20.0),
            ]
        });
        let hsv = (rng.gen::<f64>() < 0.3).then(|| {
            [
                rng.gen_range(-0.3..0.3),
                rng.gen_range(-0.3..0.3),
                rng.gen_range(-0.3..0.3),
            ]
        });
        let brightness_contrast = (rng.gen::<f64>() < 0.3)
            .then(|| (1.0 + rng.gen_range(-0.3..0.3), rng.gen_range(-0.3..0.3)));
        let jpeg_quality = (rng.gen::<f64>() < 0.5).then(|| rng.gen_range(40..=100));
        Self {
            rgb_shift,
            hsv,
            brightness_contrast,
            jpeg_quality,
        }
    }

    pub fn apply(&self, img: &mut ImageU8) -> Result<(), SynthError> {
        if let Some(s) = self.rgb_shift {
            rgb_shift(img, s);
        }
        if let Some(h) = self.hsv {
            hue_saturation_value(img, h[0], h[1], h[2])?;
        }
        if let Some((a, b)) = self.brightness_contrast {
            brightness_contrast(img, a, b);
        }
        if let Some(q) = self.jpeg_quality {
            *img = jpeg(img, q)?;
        }
        Ok(())
    }
}
