//! Lossless image codecs for stored face crops.
//!
//! `MedPack` (default): LOCO-I/JPEG-LS median edge predictor per channel, residuals decorrelated
//! against green, then block bit-packed ([`crate::bitpack`]), with a CRC-32 of the pixels.
//! `Med`: the same residuals through zstd (~15% smaller, several times slower to encode).
//! Both are many times faster than PNG at a similar size (see docs/benchmarks.md); PNG (through
//! OpenCV) and raw are kept for interop and debugging.

use opencv::core::{Mat, Vec3b, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;

use crate::bitpack;
use crate::rgb::RgbImage;

/// How the pixels of a stored crop are encoded.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ImageCodec {
    /// Tightly packed RGB bytes.
    Raw,
    /// PNG (RGB byte order inside the PNG, as the official crops).
    Png,
    /// Median-edge prediction + green decorrelation + zstd at the given level.
    Med { zstd_level: i32 },
    /// Median-edge prediction + green decorrelation + block bit-packing; the payload starts
    /// with the CRC-32 of the RGB pixels, checked on decode. The default.
    #[default]
    MedPack,
}

/// An encoded RGB image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncodedImage {
    pub codec: ImageCodec,
    pub width: u32,
    pub height: u32,
    #[serde(with = "byte_buf")]
    pub bytes: Vec<u8>,
}

/// Serde for a byte vector as one byte string instead of a sequence of `u8`s: the same bytes
/// under bincode (length, then the bytes), without a serializer call per byte, which cost
/// as much as encoding the crop. Deserialization accepts both forms.
mod byte_buf {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 24));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("image data is corrupt: {0}")]
    Corrupt(String),
    #[error("image encoding failed: {0}")]
    Encode(String),
}

/// LOCO-I median edge predictor: `median(a, b, a + b − c)`, written as a clamp of the
/// gradient estimate to `[min(a, b), max(a, b)]` (identical, and branch-free so it vectorises).
#[inline(always)]
fn med(a: u8, b: u8, c: u8) -> u8 {
    let (a, b, c) = (a as i16, b as i16, c as i16);
    (a + b - c).clamp(a.min(b), a.max(b)) as u8
}

/// Prediction residuals, with R and B residuals minus the G residual. Rows are processed as
/// byte runs (the left neighbour of byte `i` is byte `i − 3`), which keeps the inner loop
/// branch-light.
fn med_forward(px: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; px.len()];
    med_forward_into(px, w, h, &mut out);
    out
}

/// [`med_forward`] into `out` (`px.len()` bytes, every one overwritten), with AVX2 where the
/// CPU has it (integer arithmetic: identical bytes).
fn med_forward_into(px: &[u8], w: usize, h: usize, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { med_forward_avx2(px, w, h, out) };
    }
    med_forward_body(px, w, h, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn med_forward_avx2(px: &[u8], w: usize, h: usize, out: &mut [u8]) {
    med_forward_body(px, w, h, out)
}

#[inline(always)]
fn med_forward_body(px: &[u8], w: usize, h: usize, out: &mut [u8]) {
    let row = w * 3;
    if row == 0 {
        return;
    }
    // One row of plain residuals, then the green decorrelation from it into `out` as a
    // byte-wise select (R takes its right neighbour, B its left one, G nothing), which
    // vectorises where a stride-3 loop over pixels does not.
    let mut r = vec![0u8; row];
    let lane = |k: usize| -> u8 {
        if k.is_multiple_of(3) {
            0xff
        } else {
            0
        }
    };
    let mask_r: Vec<u8> = (0..row).map(lane).collect();
    let mask_b: Vec<u8> = (0..row).map(|k| lane(k + 1)).collect();
    for y in 0..h {
        let cur = &px[y * row..(y + 1) * row];
        if y == 0 {
            r[..3].copy_from_slice(&cur[..3]);
            for ((o, &c), &l) in r[3..].iter_mut().zip(&cur[3..]).zip(&cur[..row - 3]) {
                *o = c.wrapping_sub(l);
            }
        } else {
            let up = &px[(y - 1) * row..y * row];
            for i in 0..3 {
                r[i] = cur[i].wrapping_sub(up[i]);
            }
            // Zipped slices (no index bounds checks) so the loop vectorises.
            for ((((o, &c), &l), &u), &ul) in r[3..]
                .iter_mut()
                .zip(&cur[3..])
                .zip(&cur[..row - 3])
                .zip(&up[3..])
                .zip(&up[..row - 3])
            {
                *o = c.wrapping_sub(med(l, u, ul));
            }
        }
        let o = &mut out[y * row..(y + 1) * row];
        o[0] = r[0].wrapping_sub(r[1]);
        o[row - 1] = r[row - 1].wrapping_sub(r[row - 2]);
        for (((((o, &x), &next), &prev), &mr), &mb) in o[1..row - 1]
            .iter_mut()
            .zip(&r[1..row - 1])
            .zip(&r[2..])
            .zip(&r[..row - 2])
            .zip(&mask_r[1..row - 1])
            .zip(&mask_b[1..row - 1])
        {
            *o = x.wrapping_sub((next & mr) | (prev & mb));
        }
    }
}

fn med_inverse(res: &[u8], w: usize, h: usize) -> Vec<u8> {
    let row = w * 3;
    let mut px = vec![0u8; res.len()];
    if row == 0 {
        return px;
    }
    let mut r = vec![0u8; row];
    for y in 0..h {
        r.copy_from_slice(&res[y * row..(y + 1) * row]);
        for p in r.chunks_exact_mut(3) {
            p[0] = p[0].wrapping_add(p[1]);
            p[2] = p[2].wrapping_add(p[1]);
        }
        let (done, rest) = px.split_at_mut(y * row);
        let cur = &mut rest[..row];
        if y == 0 {
            cur[..3].copy_from_slice(&r[..3]);
            for i in 3..row {
                cur[i] = r[i].wrapping_add(cur[i - 3]);
            }
        } else {
            let up = &done[(y - 1) * row..];
            for i in 0..3 {
                cur[i] = r[i].wrapping_add(up[i]);
            }
            for i in 3..row {
                cur[i] = r[i].wrapping_add(med(cur[i - 3], up[i], up[i - 3]));
            }
        }
    }
    px
}

thread_local! {
    /// Residual and packing buffers of the `med_pack` encoder, reused across crops.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Encodes `img` with `codec`.
pub fn encode(img: &RgbImage, codec: ImageCodec) -> Result<EncodedImage, CodecError> {
    let (w, h) = (img.width as usize, img.height as usize);
    let bytes = match codec {
        ImageCodec::Raw => img.data.clone(),
        ImageCodec::Med { zstd_level } => {
            let res = med_forward(&img.data, w, h);
            zstd::bulk::compress(&res, zstd_level).map_err(|e| CodecError::Encode(e.to_string()))?
        }
        ImageCodec::MedPack => SCRATCH.with_borrow_mut(|(res, packed)| {
            // Per-thread buffers: no fresh (zeroed, page-faulted) megabytes per crop.
            res.resize(img.data.len(), 0);
            med_forward_into(&img.data, w, h, res);
            let n = bitpack::pack_into(res, packed);
            let mut out = Vec::with_capacity(4 + n);
            out.extend_from_slice(&crc32fast::hash(&img.data).to_le_bytes());
            out.extend_from_slice(&packed[..n]);
            out
        }),
        ImageCodec::Png => {
            let cv = |e: opencv::Error| CodecError::Encode(e.to_string());
            // OpenCV writes its 3-channel Mats as BGR; swap so the PNG holds true RGB.
            let bgr: Vec<u8> = img
                .data
                .chunks_exact(3)
                .flat_map(|p| [p[2], p[1], p[0]])
                .collect();
            let m = Mat::new_rows_cols_with_bytes::<Vec3b>(h as i32, w as i32, &bgr).map_err(cv)?;
            let mut buf = Vector::<u8>::new();
            let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_PNG_COMPRESSION, 1]);
            imgcodecs::imencode(".png", &m, &mut buf, &params).map_err(cv)?;
            buf.to_vec()
        }
    };
    Ok(EncodedImage {
        codec,
        width: img.width,
        height: img.height,
        bytes,
    })
}

/// Decodes an [`EncodedImage`]; any inconsistency is an error, never garbage pixels.
pub fn decode(enc: &EncodedImage) -> Result<RgbImage, CodecError> {
    let (w, h) = (enc.width as usize, enc.height as usize);
    let n = w
        .checked_mul(h)
        .and_then(|p| p.checked_mul(3))
        .filter(|&n| n <= 1 << 30)
        .ok_or_else(|| CodecError::Corrupt(format!("implausible size {w}x{h}")))?;
    let data = match enc.codec {
        ImageCodec::Raw => enc.bytes.clone(),
        ImageCodec::Med { .. } => {
            let res = zstd::bulk::decompress(&enc.bytes, n)
                .map_err(|e| CodecError::Corrupt(format!("zstd: {e}")))?;
            if res.len() != n {
                return Err(CodecError::Corrupt(format!(
                    "{} residual bytes, expected {n}",
                    res.len()
                )));
            }
            med_inverse(&res, w, h)
        }
        ImageCodec::MedPack => {
            let (crc, packed) = enc
                .bytes
                .split_at_checked(4)
                .ok_or_else(|| CodecError::Corrupt("shorter than its checksum".into()))?;
            let res = bitpack::unpack(packed, n).map_err(|e| CodecError::Corrupt(e.to_string()))?;
            let px = med_inverse(&res, w, h);
            if crc32fast::hash(&px).to_le_bytes() != crc {
                return Err(CodecError::Corrupt(
                    "pixel checksum mismatch (med_pack)".into(),
                ));
            }
            px
        }
        ImageCodec::Png => {
            let cv = |e: opencv::Error| CodecError::Corrupt(e.to_string());
            let buf = Vector::<u8>::from_slice(&enc.bytes);
            let m = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR).map_err(cv)?;
            if m.empty() || m.cols() as usize != w || m.rows() as usize != h {
                return Err(CodecError::Corrupt(
                    "PNG does not decode to the stored size".into(),
                ));
            }
            m.data_bytes()
                .map_err(cv)?
                .chunks_exact(3)
                .flat_map(|p| [p[2], p[1], p[0]])
                .collect()
        }
    };
    RgbImage::new(enc.width, enc.height, data)
        .ok_or_else(|| CodecError::Corrupt(format!("payload size does not match {w}x{h}")))
}

/// Writes `img` as a PNG file holding true RGB (what the official loader reads with PIL).
pub fn write_png(img: &RgbImage, path: &std::path::Path) -> Result<(), CodecError> {
    let enc = encode(img, ImageCodec::Png)?;
    crate::shard::write_atomic(path, &enc.bytes).map_err(|e| CodecError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record layout of shard versions 1 and 2: `bytes` as a plain `Vec<u8>`.
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct PlainVec {
        codec: ImageCodec,
        width: u32,
        height: u32,
        bytes: Vec<u8>,
    }

    #[test]
    fn byte_string_serialization_is_the_plain_vec_layout() {
        let cfg = bincode::config::standard();
        for n in [0usize, 1, 127, 128, 300, 70_000] {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 31 % 256) as u8).collect();
            let enc = EncodedImage {
                codec: ImageCodec::MedPack,
                width: 3,
                height: 5,
                bytes: bytes.clone(),
            };
            let plain = PlainVec {
                codec: ImageCodec::MedPack,
                width: 3,
                height: 5,
                bytes,
            };
            let a = bincode::serde::encode_to_vec(&enc, cfg).unwrap();
            let b = bincode::serde::encode_to_vec(&plain, cfg).unwrap();
            assert_eq!(a, b, "n={n}");
            let (back, _): (EncodedImage, usize) =
                bincode::serde::decode_from_slice(&b, cfg).unwrap();
            assert_eq!(back, enc);
            // Self-describing formats (JSON) still round-trip.
            let j = serde_json::to_string(&enc).unwrap();
            assert_eq!(serde_json::from_str::<EncodedImage>(&j).unwrap(), enc);
        }
    }
}
