//! Reader for dlib's portable binary serialization (`dlib/serialize.h`).
//!
//! The encoding, as dlib writes it:
//! * integers: one control byte whose low 4 bits give the number `n` (1..=8) of
//!   little-endian magnitude bytes that follow; for signed types bit 0x80 marks a negative
//!   value (sign-magnitude, not two's complement). Unsigned readers mask the control byte
//!   with 0x8F, so a set sign bit makes an unsigned read fail, as in dlib.
//! * floating point: a signed 64-bit mantissa then a signed 16-bit exponent, both as
//!   integers above; the value is `mantissa * 2^exponent`, with exponents 32000, 32001,
//!   32002 meaning +inf, -inf and NaN. Very old files wrote floats as ASCII text followed
//!   by a space; a control byte with any bit of 0x70 set marks that form.
//! * `std::vector<T>`: an unsigned length, then the elements.
//! * `matrix<T>`: signed rows and columns (negated in the current format), then the
//!   elements in row-major order.
//! * `dlib::vector<T,2>`: `x` then `y`.

use thiserror::Error;

/// Why a dlib stream could not be read; `offset` is the byte position of the failure.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("unexpected end of data at byte {offset} while reading {what}")]
    Eof { offset: usize, what: &'static str },
    #[error("invalid integer control byte {byte:#04x} at byte {offset} for {what}")]
    BadInt {
        offset: usize,
        byte: u8,
        what: &'static str,
    },
    #[error("value {value} out of range at byte {offset} for {what}")]
    OutOfRange {
        offset: usize,
        value: i128,
        what: &'static str,
    },
    #[error("malformed ASCII float at byte {offset}")]
    BadAsciiFloat { offset: usize },
}

/// A cursor over a dlib-serialized byte buffer.
pub struct DlibReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> DlibReader<'a> {
    /// Starts reading at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Current byte offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, FormatError> {
        let b = *self.data.get(self.pos).ok_or(FormatError::Eof {
            offset: self.pos,
            what,
        })?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads the magnitude bytes after a control byte whose size field is `size`.
    fn magnitude(
        &mut self,
        size: u8,
        max: u8,
        ctrl_at: usize,
        ctrl: u8,
        what: &'static str,
    ) -> Result<u64, FormatError> {
        if size == 0 || size > max {
            return Err(FormatError::BadInt {
                offset: ctrl_at,
                byte: ctrl,
                what,
            });
        }
        let end = self.pos + size as usize;
        let bytes = self.data.get(self.pos..end).ok_or(FormatError::Eof {
            offset: self.data.len(),
            what,
        })?;
        let v = bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64);
        self.pos = end;
        Ok(v)
    }

    /// Reads an unsigned integer of at most `max_bytes` bytes (8 for `unsigned long` on
    /// LP64, where dlib models are written).
    pub fn read_unsigned(&mut self, max_bytes: u8, what: &'static str) -> Result<u64, FormatError> {
        let at = self.pos;
        let ctrl = self.byte(what)?;
        // dlib masks out the three reserved bits; a sign bit makes size > 8 and fails.
        self.magnitude(ctrl & 0x8F, max_bytes, at, ctrl, what)
    }

    /// Reads a signed integer of at most `max_bytes` bytes.
    pub fn read_signed(&mut self, max_bytes: u8, what: &'static str) -> Result<i64, FormatError> {
        let at = self.pos;
        let ctrl = self.byte(what)?;
        let mag = self.magnitude(ctrl & 0x0F, max_bytes, at, ctrl, what)?;
        let neg = ctrl & 0x80 != 0;
        // dlib computes in the target type, so magnitudes up to 2^63 fit only as -2^63.
        let v = if neg {
            (mag as i128).wrapping_neg()
        } else {
            mag as i128
        };
        let limit = 1i128 << (8 * max_bytes as u32 - 1);
        if v < -limit || v >= limit {
            return Err(FormatError::OutOfRange {
                offset: at,
                value: v,
                what,
            });
        }
        Ok(v as i64)
    }

    /// Reads an `unsigned long` that indexes or sizes something, as `usize`.
    pub fn read_usize(&mut self, what: &'static str) -> Result<usize, FormatError> {
        let at = self.pos;
        let v = self.read_unsigned(8, what)?;
        usize::try_from(v).map_err(|_| FormatError::OutOfRange {
            offset: at,
            value: v as i128,
            what,
        })
    }

    /// Reads a `float` exactly as dlib's `float_details` → `float` conversion does:
    /// `ldexp((float)mantissa, exponent)`.
    pub fn read_f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        let first = *self.data.get(self.pos).ok_or(FormatError::Eof {
            offset: self.pos,
            what,
        })?;
        if first & 0x70 != 0 {
            return self.read_ascii_f32();
        }
        let mantissa = self.read_signed(8, what)?;
        let exponent = self.read_signed(2, what)?;
        Ok(match exponent {
            32000 => f32::INFINITY,
            32001 => f32::NEG_INFINITY,
            e if e >= 32002 => f32::NAN,
            e => ldexp_f32(mantissa as f32, e as i32),
        })
    }

    /// The pre-2013 text encoding: a number (or `inf`, `ninf`, `NaN`) then one space.
    fn read_ascii_f32(&mut self) -> Result<f32, FormatError> {
        let at = self.pos;
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or(FormatError::BadAsciiFloat { offset: at })?;
        let text = std::str::from_utf8(&rest[..end])
            .map_err(|_| FormatError::BadAsciiFloat { offset: at })?;
        let v = match text {
            "inf" => f32::INFINITY,
            "ninf" => f32::NEG_INFINITY,
            "NaN" => f32::NAN,
            t => t
                .parse::<f32>()
                .map_err(|_| FormatError::BadAsciiFloat { offset: at })?,
        };
        self.pos += end + 1;
        Ok(v)
    }

    /// Reads a `std::vector` length, refusing lengths that could not fit in the rest of
    /// the buffer given at least `min_elem_bytes` per element (so corrupt lengths cannot
    /// trigger huge allocations).
    pub fn read_len(
        &mut self,
        min_elem_bytes: usize,
        what: &'static str,
    ) -> Result<usize, FormatError> {
        let at = self.pos;
        let n = self.read_usize(what)?;
        if n.saturating_mul(min_elem_bytes) > self.remaining() {
            return Err(FormatError::OutOfRange {
                offset: at,
                value: n as i128,
                what,
            });
        }
        Ok(n)
    }

    /// Reads a `matrix<float,0,1>` or `matrix<float>` header and elements (row-major).
    /// Returns `(rows, cols, values)`.
    pub fn read_f32_matrix(
        &mut self,
        what: &'static str,
    ) -> Result<(usize, usize, Vec<f32>), FormatError> {
        let at = self.pos;
        let nr = self.read_signed(8, what)?.unsigned_abs();
        let nc = self.read_signed(8, what)?.unsigned_abs();
        let n = nr
            .checked_mul(nc)
            .filter(|&n| n.saturating_mul(2) <= self.remaining() as u64);
        let n = n.ok_or(FormatError::OutOfRange {
            offset: at,
            value: nr as i128 * nc as i128,
            what,
        })? as usize;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.read_f32(what)?);
        }
        Ok((nr as usize, nc as usize, v))
    }
}

/// `ldexpf`: `x * 2^e` rounded once to `f32`. Done in two exact power-of-two steps in
/// `f64` so that no intermediate over/underflows before the final rounding.
fn ldexp_f32(x: f32, e: i32) -> f32 {
    let e = e.clamp(-1200, 1200);
    let half = e / 2;
    ((x as f64) * pow2(half) * pow2(e - half)) as f32
}

/// `2^e` for `-1022 <= e <= 1023`, built from its bit pattern.
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_sign_magnitude() {
        // 0 -> [1,0]; 300 -> [2, 0x2c, 0x01]; -136 -> [0x81, 0x88]
        let data = [1, 0, 2, 0x2c, 0x01, 0x81, 0x88];
        let mut r = DlibReader::new(&data);
        assert_eq!(r.read_unsigned(8, "a").unwrap(), 0);
        assert_eq!(r.read_unsigned(8, "b").unwrap(), 300);
        assert_eq!(r.read_signed(8, "c").unwrap(), -136);
        assert!(matches!(
            r.read_signed(8, "d"),
            Err(FormatError::Eof { .. })
        ));
    }

    #[test]
    fn unsigned_rejects_sign_bit_and_oversize() {
        assert!(matches!(
            DlibReader::new(&[0x81, 5]).read_unsigned(8, "u"),
            Err(FormatError::BadInt { .. })
        ));
        assert!(matches!(
            DlibReader::new(&[3, 1, 2, 3]).read_signed(2, "i16"),
            Err(FormatError::BadInt { .. })
        ));
        assert!(matches!(
            DlibReader::new(&[0]).read_unsigned(8, "zero size"),
            Err(FormatError::BadInt { .. })
        ));
    }

    #[test]
    fn floats_mantissa_exponent() {
        // 0.75 = 3 * 2^-2: mantissa [1,3], exponent [0x81,2]
        let mut r = DlibReader::new(&[1, 3, 0x81, 2, 0x81, 5, 1, 1, 1, 0, 2, 0x00, 0x7d]);
        assert_eq!(r.read_f32("x").unwrap(), 0.75);
        // -5 * 2^1
        assert_eq!(r.read_f32("y").unwrap(), -10.0);
        // exponent 32000 (0x7d00) = +inf
        assert_eq!(r.read_f32("z").unwrap(), f32::INFINITY);
    }

    #[test]
    fn ascii_float_legacy() {
        let mut r = DlibReader::new(b"-1.5 inf 2");
        assert_eq!(r.read_f32("a").unwrap(), -1.5);
        assert_eq!(r.read_f32("b").unwrap(), f32::INFINITY);
        assert!(matches!(
            r.read_f32("c"),
            Err(FormatError::BadAsciiFloat { .. })
        ));
    }

    #[test]
    fn huge_lengths_are_refused() {
        let mut r = DlibReader::new(&[8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            r.read_len(1, "v"),
            Err(FormatError::OutOfRange { .. })
        ));
    }

    #[test]
    fn ldexp_matches_exact_scaling() {
        assert_eq!(ldexp_f32(3.0, -2), 0.75);
        assert_eq!(ldexp_f32(1.0, -149), f32::from_bits(1));
        assert_eq!(ldexp_f32(1.0, 128), f32::INFINITY);
        assert_eq!(ldexp_f32(-5.0, 3), -40.0);
    }
}
