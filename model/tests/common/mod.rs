//! Shared helpers for the fixture parity tests.
#![allow(dead_code)]

use model::safetensors_io::{read_safetensors, HostTensor, StateDict};
use std::path::PathBuf;

/// The golden-fixture directory: `$FAKESTORMER_FIXTURES`, else `shared/fixtures` two (main
/// checkout) or three (worktree under /work/wt) levels above this crate. Panics with a clear
/// message when missing: these tests must never pass silently without data.
pub fn fixtures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("FAKESTORMER_FIXTURES") {
        let p = PathBuf::from(p);
        assert!(
            p.join("README.md").exists(),
            "FAKESTORMER_FIXTURES={} has no README.md",
            p.display()
        );
        return p;
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for up in ["../../shared/fixtures", "../../../shared/fixtures"] {
        let p = here.join(up);
        if p.join("tiny_io.safetensors").exists() {
            return p;
        }
    }
    panic!(
        "golden fixtures not found: set FAKESTORMER_FIXTURES or place them at {}/../../shared/fixtures",
        here.display()
    );
}

/// Load one fixture file.
pub fn load(name: &str) -> StateDict {
    let p = fixtures_dir().join(name);
    read_safetensors(&p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
}

/// f32 values of a fixture tensor (f64 fixtures are converted).
pub fn f32s(sd: &StateDict, key: &str) -> Vec<f32> {
    match sd.get(key) {
        Some(HostTensor::F32 { data, .. }) => data.clone(),
        Some(HostTensor::I64 { data, .. }) => data.iter().map(|&v| v as f32).collect(),
        None => panic!("fixture key {key} missing"),
    }
}

/// Shape of a fixture tensor.
pub fn shape(sd: &StateDict, key: &str) -> Vec<usize> {
    sd.get(key)
        .unwrap_or_else(|| panic!("fixture key {key} missing"))
        .shape()
        .to_vec()
}

/// Max |a − b| and whether every element satisfies |a − b| ≤ atol + rtol·|b|.
pub fn compare(got: &[f32], want: &[f32], atol: f64, rtol: f64) -> (f64, bool) {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let mut max = 0.0f64;
    let mut ok = true;
    for (&g, &w) in got.iter().zip(want) {
        let d = (g as f64 - w as f64).abs();
        if d > atol + rtol * (w as f64).abs() || d.is_nan() {
            ok = false;
        }
        if d > max || d.is_nan() {
            max = d;
        }
    }
    (max, ok)
}

/// Assert closeness and return the max abs error (for the report).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) -> f64 {
    let (max, ok) = compare(got, want, atol, rtol);
    assert!(
        ok,
        "{what}: max abs error {max:e} exceeds atol {atol:e} + rtol {rtol:e}·|ref|"
    );
    max
}

/// `[B, T, S, C]` channel-last → `[B, C, T, S]` channel-first.
pub fn to_channel_first(x: &[f32], b: usize, t: usize, s: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for bi in 0..b {
        for ti in 0..t {
            for si in 0..s {
                for ci in 0..c {
                    out[((bi * c + ci) * t + ti) * s + si] = x[((bi * t + ti) * s + si) * c + ci];
                }
            }
        }
    }
    out
}
