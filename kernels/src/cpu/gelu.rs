//! Exact GELU, `x·Φ(x)` with Φ via erf (PyTorch `nn.GELU()` default).

use crate::real::Real;
use rayon::prelude::*;

const INV_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `y = gelu(x)`.
pub fn forward<R: Real>(x: &[R], y: &mut [R], n: usize) {
    let half = R::from_f64(0.5);
    let c = R::from_f64(INV_SQRT2);
    y[..n]
        .par_iter_mut()
        .zip(x[..n].par_iter())
        .with_min_len(4096)
        .for_each(|(y, &x)| *y = half * x * (R::one() + (x * c).erf()));
}

/// `dx = dy·(Φ(x) + x·φ(x))`.
pub fn backward<R: Real>(dy: &[R], x: &[R], dx: &mut [R], n: usize) {
    let half = R::from_f64(0.5);
    let c = R::from_f64(INV_SQRT2);
    let p = R::from_f64(INV_SQRT_2PI);
    dx[..n]
        .par_iter_mut()
        .zip(x[..n].par_iter().zip(dy[..n].par_iter()))
        .with_min_len(4096)
        .for_each(|(d, (&x, &g))| {
            let cdf = half * (R::one() + (x * c).erf());
            let pdf = p * (-half * x * x).exp();
            *d = g * (cdf + x * pdf);
        });
}
