//! Result table and comparison helpers.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// f32 ops: relative error bound (summation-order differences only).
pub const TOL_F32: f64 = 1e-4;
/// bf16 storage / TF32 arithmetic: bf16 has an 8-bit mantissa (2^-9 ≈ 2e-3 relative rounding).
pub const TOL_BF16: f64 = 1e-2;

#[derive(Default)]
pub struct Report {
    pub checks: usize,
    pub failures: Vec<String>,
}

impl Report {
    pub fn header() {
        println!(
            "{:<44} {:>5} {:>11} {:>8}  result",
            "op", "dtype", "rel.err", "tol"
        );
    }

    /// Records one comparison and prints its row.
    pub fn check(&mut self, op: &str, dtype: &str, got: &[f32], want: &[f32], tol: f64) {
        let rel = rel_err(got, want);
        self.checks += 1;
        let ok = rel <= tol && got.len() == want.len();
        println!(
            "{op:<44} {dtype:>5} {rel:>11.3e} {tol:>8.0e}  {}",
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            self.failures.push(format!(
                "{op} [{dtype}]: rel {rel:.3e} > {tol:.0e} (len {} vs {})",
                got.len(),
                want.len()
            ));
        }
    }

    pub fn fail(&mut self, what: &str) {
        self.checks += 1;
        println!("{what}  FAIL");
        self.failures.push(what.to_string());
    }
}

/// ‖got − want‖ / ‖want‖ over the common prefix; any non-finite value gives +∞.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() || !w.is_finite() {
            return f64::INFINITY;
        }
        let d = g as f64 - w as f64;
        num += d * d;
        den += (w as f64) * (w as f64);
    }
    if den == 0.0 {
        return num.sqrt();
    }
    (num / den).sqrt()
}

/// Uniform values in [−scale, scale).
pub fn rand_vec(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

/// Values rounded to bf16 and back (the CPU reference sees exactly what the bf16 kernel sees).
pub fn round_bf16(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| half::bf16::from_f32(x).to_f32())
        .collect()
}

pub fn to_bf16(v: &[f32]) -> Vec<half::bf16> {
    v.iter().map(|&x| half::bf16::from_f32(x)).collect()
}

pub fn from_bf16(v: &[half::bf16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

pub fn nan_vec(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}
