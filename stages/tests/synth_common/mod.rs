//! Loader for the official synthesis-primitive fixtures (`shared/fixtures/synth_primitives.*`).
#![allow(dead_code)]

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use stages::synth::sbv::ClipInput;
use stages::synth::{ImageU8, PlaneF64};

pub struct Fixtures {
    bytes: Vec<u8>,
    pub json: serde_json::Value,
}

/// `FAKESTORMER_FIXTURES`, else `CARGO_MANIFEST_DIR/../../shared/fixtures`, else the first
/// `shared/fixtures` found in an ancestor (worktrees sit one level deeper than the main checkout).
pub fn fixtures_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FAKESTORMER_FIXTURES") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let default = manifest.join("../../shared/fixtures");
    if default.is_dir() {
        return default;
    }
    manifest
        .ancestors()
        .map(|a| a.join("shared/fixtures"))
        .find(|p| p.is_dir())
        .unwrap_or(default)
}

impl Fixtures {
    pub fn load() -> Self {
        let dir = fixtures_dir();
        let st = dir.join("synth_primitives.safetensors");
        let js = dir.join("synth_primitives.json");
        let bytes = std::fs::read(&st).unwrap_or_else(|e| {
            panic!("synthesis fixtures missing: cannot read {} ({e}); set FAKESTORMER_FIXTURES to the fixtures directory", st.display())
        });
        let json = serde_json::from_slice(
            &std::fs::read(&js).unwrap_or_else(|e| panic!("cannot read {} ({e})", js.display())),
        )
        .expect("fixture JSON parses");
        Self { bytes, json }
    }

    fn view(&self, name: &str, dtype: Dtype) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("safetensors header");
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
        assert_eq!(t.dtype(), dtype, "dtype of {name}");
        (t.shape().to_vec(), t.data().to_vec())
    }

    pub fn u8(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        self.view(name, Dtype::U8)
    }

    pub fn i64(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        let (s, b) = self.view(name, Dtype::I64);
        (
            s,
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }

    pub fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (s, b) = self.view(name, Dtype::F32);
        (
            s,
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }

    pub fn f64(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let (s, b) = self.view(name, Dtype::F64);
        (
            s,
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }

    pub fn image(&self, name: &str) -> ImageU8 {
        let (s, d) = self.u8(name);
        let c = if s.len() == 3 { s[2] } else { 1 };
        ImageU8::from_vec(s[0], s[1], c, d).unwrap()
    }

    pub fn plane(&self, name: &str) -> PlaneF64 {
        let (s, d) = self.f64(name);
        PlaneF64 {
            height: s[0],
            width: s[1],
            data: d,
        }
    }

    /// Landmarks stored as int64 or float64 [N, 2].
    pub fn points(&self, name: &str) -> Vec<[f64; 2]> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let dt = st.tensor(name).unwrap().dtype();
        let flat: Vec<f64> = match dt {
            Dtype::I64 => self.i64(name).1.into_iter().map(|v| v as f64).collect(),
            Dtype::F64 => self.f64(name).1,
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
    }
}

/// Count of differing values and the max absolute difference.
pub fn diff_u8(a: &[u8], b: &[u8]) -> (usize, u8) {
    assert_eq!(a.len(), b.len(), "length");
    a.iter().zip(b).fold((0, 0), |(n, m), (&x, &y)| {
        let d = x.abs_diff(y);
        (n + usize::from(d != 0), m.max(d))
    })
}

pub fn max_abs_f64(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// The fixture clip: frames 50–53 of franck.mp4 with their 81 raw landmarks.
pub fn fixture_clip(f: &Fixtures) -> ClipInput {
    let frames = (0..4).map(|t| f.image(&format!("img256_f{t}"))).collect();
    let landmarks = (0..4)
        .map(|t| {
            f.points(&format!("lms81_raw_f{t}"))
                .iter()
                .map(|p| [p[0] as f32, p[1] as f32])
                .collect()
        })
        .collect();
    ClipInput { frames, landmarks }
}
