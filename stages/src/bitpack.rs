//! Block bit-packing of small signed bytes: the entropy stage of the `med_pack` crop codec.
//!
//! Prediction residuals of natural images are mostly a few units from zero. Each byte is
//! zigzag-mapped (0, −1, 1, −2, … → 0, 1, 2, 3, …) and every block of 8 is stored in `b`
//! bytes, `b` being the bit width of the block's largest value (8 values × `b` bits). The widths
//! go first, two 4-bit widths per byte. It is an order of magnitude faster than zstd on this
//! data (one `pext`/`pdep` per block with BMI2) for ~15% larger output; see docs/benchmarks.md.
//!
//! Layout for `n` input bytes (`m = ceil(n / 8)` blocks, the last block zero-padded):
//! `ceil(m / 2)` width bytes (block `2k` in the low nibble of byte `k`), then the packed blocks.

/// Why packed data could not be unpacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnpackError {
    #[error("packed data is {got} bytes, expected {expected} for {n} values")]
    Length {
        got: usize,
        expected: usize,
        n: usize,
    },
    #[error("block {block} has bit width {width} (at most 8)")]
    Width { block: usize, width: u8 },
}

const LOW_BITS: [u64; 9] = {
    let mut t = [0u64; 9];
    let mut b = 1;
    while b <= 8 {
        t[b] = ((1u64 << b) - 1) * 0x0101_0101_0101_0101;
        b += 1;
    }
    t
};

/// Per byte: `(x << 1) ^ (x < 0 ? 0xff : 0)` for the 8 bytes of `x` read as `i8`.
#[inline]
fn zigzag8(x: u64) -> u64 {
    let sign = ((x >> 7) & 0x0101_0101_0101_0101) * 0xff;
    ((x << 1) & 0xfefe_fefe_fefe_fefe) ^ sign
}

#[inline]
fn unzigzag8(z: u64) -> u64 {
    let sign = (z & 0x0101_0101_0101_0101) * 0xff;
    ((z >> 1) & 0x7f7f_7f7f_7f7f_7f7f) ^ sign
}

/// Bit width of the largest of the 8 bytes.
#[inline]
fn width8(z: u64) -> usize {
    let mut o = z | (z >> 32);
    o |= o >> 16;
    o |= o >> 8;
    8 - (o as u8).leading_zeros() as usize
}

/// Portable `pext(z, LOW_BITS[b])`: the low `b` bits of each byte, concatenated.
#[inline]
fn gather(z: u64, b: usize) -> u64 {
    let m = (1u64 << b) - 1;
    let mut v = 0;
    for j in 0..8 {
        v |= ((z >> (8 * j)) & m) << (b * j);
    }
    v
}

/// Portable `pdep(v, LOW_BITS[b])`.
#[inline]
fn scatter(v: u64, b: usize) -> u64 {
    let m = (1u64 << b) - 1;
    let mut z = 0;
    for j in 0..8 {
        z |= ((v >> (b * j)) & m) << (8 * j);
    }
    z
}

fn block(data: &[u8], k: usize) -> u64 {
    match data.get(8 * k..8 * k + 8) {
        Some(s) => u64::from_le_bytes(s.try_into().expect("8 bytes")),
        None => {
            let mut b = [0u8; 8];
            let s = &data[8 * k..];
            b[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(b)
        }
    }
}

/// The packing loop with `gather` as the bit-gathering step (inlined into each caller so
/// that the BMI2 version compiles `pext` in place). Packs into `buf` (grown if needed, its old
/// contents overwritten) and returns the packed length.
#[inline(always)]
fn pack_body(data: &[u8], buf: &mut Vec<u8>, gather: impl Fn(u64, usize) -> u64) -> usize {
    let m = data.len().div_ceil(8);
    let head = m.div_ceil(2);
    // Worst case 8 bytes per block, plus 8 bytes of slack for whole-word stores. A reused
    // buffer needs no clearing past the widths: every body byte kept is written first.
    let need = head + 8 * m + 8;
    if buf.len() < need {
        buf.resize(need, 0);
    }
    let (widths, body) = buf.split_at_mut(head);
    let mut pos = 0;
    let mut put = |z: u64, b: usize| {
        body[pos..pos + 8].copy_from_slice(&gather(z, b).to_le_bytes());
        pos += b;
    };
    // Two blocks per width byte, so each width byte is written once.
    let pairs = data.chunks_exact(16);
    let tail = pairs.remainder();
    for (w, c) in widths.iter_mut().zip(pairs) {
        let z0 = zigzag8(u64::from_le_bytes(c[..8].try_into().expect("8 bytes")));
        let z1 = zigzag8(u64::from_le_bytes(c[8..].try_into().expect("8 bytes")));
        let (b0, b1) = (width8(z0), width8(z1));
        *w = (b0 | b1 << 4) as u8;
        put(z0, b0);
        put(z1, b1);
    }
    let k = data.len() / 16 * 2;
    if !tail.is_empty() {
        let z0 = zigzag8(block(tail, 0));
        let b0 = width8(z0);
        put(z0, b0);
        let mut w = b0;
        if tail.len() > 8 {
            let z1 = zigzag8(block(tail, 1));
            let b1 = width8(z1);
            put(z1, b1);
            w |= b1 << 4;
        }
        widths[k / 2] = w as u8;
    }
    head + pos
}

#[inline(always)]
fn unpack_body(
    packed: &[u8],
    n: usize,
    scatter: impl Fn(u64, usize) -> u64,
) -> Result<Vec<u8>, UnpackError> {
    let m = n.div_ceil(8);
    let head = m.div_ceil(2);
    if packed.len() < head {
        return Err(UnpackError::Length {
            got: packed.len(),
            expected: head,
            n,
        });
    }
    let width = |k: usize| (packed[k / 2] >> (4 * (k % 2))) & 0xf;
    let mut expected = head;
    for k in 0..m {
        let w = width(k);
        if w > 8 {
            return Err(UnpackError::Width { block: k, width: w });
        }
        expected += w as usize;
    }
    if packed.len() != expected {
        return Err(UnpackError::Length {
            got: packed.len(),
            expected,
            n,
        });
    }
    // Whole-word loads need 8 readable bytes at every block start.
    let mut body = packed[head..].to_vec();
    body.extend_from_slice(&[0u8; 8]);
    let mut out = vec![0u8; 8 * m];
    let mut pos = 0;
    for (k, o) in out.chunks_exact_mut(8).enumerate() {
        let b = width(k) as usize;
        // The bytes past this block's `b` are the next block's: `scatter` uses only the low
        // 8·b bits.
        let word = u64::from_le_bytes(body[pos..pos + 8].try_into().expect("8 bytes"));
        o.copy_from_slice(&unzigzag8(scatter(word, b)).to_le_bytes());
        pos += b;
    }
    out.truncate(n);
    Ok(out)
}

/// Packs `data` (bytes read as `i8`) into `buf`, returning the length. `use_bmi2` picks the
/// instruction path; both give the same bytes.
fn pack_with(data: &[u8], buf: &mut Vec<u8>, use_bmi2: bool) -> usize {
    #[cfg(target_arch = "x86_64")]
    if use_bmi2 {
        // SAFETY: callers pass use_bmi2 only when the CPU has BMI2 (see `has_bmi2`).
        return unsafe { pack_bmi2(data, buf) };
    }
    let _ = use_bmi2;
    pack_body(data, buf, gather)
}

fn unpack_with(packed: &[u8], n: usize, use_bmi2: bool) -> Result<Vec<u8>, UnpackError> {
    #[cfg(target_arch = "x86_64")]
    if use_bmi2 {
        // SAFETY: callers pass use_bmi2 only when the CPU has BMI2 (see `has_bmi2`).
        return unsafe { unpack_bmi2(packed, n) };
    }
    let _ = use_bmi2;
    unpack_body(packed, n, scatter)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2")]
fn pack_bmi2(data: &[u8], buf: &mut Vec<u8>) -> usize {
    pack_body(data, buf, |z, b| {
        std::arch::x86_64::_pext_u64(z, LOW_BITS[b])
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2")]
fn unpack_bmi2(packed: &[u8], n: usize) -> Result<Vec<u8>, UnpackError> {
    unpack_body(packed, n, |v, b| {
        std::arch::x86_64::_pdep_u64(v, LOW_BITS[b])
    })
}

fn has_bmi2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("bmi2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Packs `data` (each byte read as `i8`).
pub fn pack(data: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let n = pack_into(data, &mut buf);
    buf.truncate(n);
    buf
}

/// Packs `data` into the first bytes of `buf`, reusing its allocation (it may be left longer
/// than the returned packed length).
pub fn pack_into(data: &[u8], buf: &mut Vec<u8>) -> usize {
    pack_with(data, buf, has_bmi2())
}

/// Unpacks `n` bytes; any length or width inconsistency is an error.
pub fn unpack(packed: &[u8], n: usize) -> Result<Vec<u8>, UnpackError> {
    unpack_with(packed, n, has_bmi2())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u64) -> Vec<u8> {
        // Mostly small residuals with occasional large ones, like an image's.
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (s >> 33) as u32;
                if r.is_multiple_of(17) {
                    (r >> 8) as u8
                } else {
                    ((r >> 8) % 7) as u8 ^ if r & 1 == 1 { 0xff } else { 0 }
                }
            })
            .collect()
    }

    #[test]
    fn zigzag_matches_its_definition() {
        for x in 0..=255u8 {
            let word = u64::from_le_bytes([x; 8]);
            let want = ((x as i8 as i16) << 1 ^ ((x as i8 as i16) >> 7)) as u8;
            assert_eq!(zigzag8(word), u64::from_le_bytes([want; 8]), "{x}");
            assert_eq!(unzigzag8(zigzag8(word)), word);
        }
    }

    #[test]
    fn round_trips_every_length_and_both_paths_agree() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 1000, 4099] {
            let d = sample(n, n as u64);
            let mut buf = Vec::new();
            let len = pack_with(&d, &mut buf, false);
            let p = buf[..len].to_vec();
            assert_eq!(unpack_with(&p, n, false).unwrap(), d, "n={n}");
            if has_bmi2() {
                // A dirty reused buffer gives the same bytes.
                let mut dirty = vec![0xa5u8; 2 * len + 64];
                let l2 = pack_with(&d, &mut dirty, true);
                assert_eq!(&dirty[..l2], &p[..], "n={n}");
                assert_eq!(unpack_with(&p, n, true).unwrap(), d, "n={n}");
            }
        }
        // All zeros pack to the widths alone; all −128 need 8 bits.
        assert_eq!(pack(&[0u8; 64]).len(), 4);
        assert_eq!(pack(&[0x80u8; 64]).len(), 4 + 64);
    }

    #[test]
    fn inconsistent_data_is_an_error() {
        let d = sample(100, 3);
        let p = pack(&d);
        assert!(matches!(
            unpack(&p[..p.len() - 1], 100),
            Err(UnpackError::Length { .. })
        ));
        assert!(unpack(&p, 120).is_err());
        let mut bad = p.clone();
        bad[0] |= 0xf; // width 15
        assert!(matches!(unpack(&bad, 100), Err(UnpackError::Width { .. })));
    }
}
