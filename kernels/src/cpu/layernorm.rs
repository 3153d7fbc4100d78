//! LayerNorm over the last dimension (biased variance, eps inside the square root, like PyTorch).

use crate::real::Real;
use rayon::prelude::*;

/// Forward; saves per-row mean and 1/σ.
#[allow(clippy::too_many_arguments)]
pub fn forward<R: Real>(
    x: &[R],
    gamma: &[R],
    beta: &[R],
    y: &mut [R],
    mean: &mut [R],
    rstd: &mut [R],
    rows: usize,
    cols: usize,
    eps: f64,
) {
    y[..rows * cols]
        .par_chunks_exact_mut(cols)
        .zip(x[..rows * cols].par_chunks_exact(cols))
        .zip(mean[..rows].par_iter_mut().zip(rstd[..rows].par_iter_mut()))
        .for_each(|((yr, xr), (mu, rs))| {
            let m = xr.iter().map(|v| v.to_f64()).sum::<f64>() / cols as f64;
            let var = xr.iter().map(|v| (v.to_f64() - m).powi(2)).sum::<f64>() / cols as f64;
            let r = 1.0 / (var + eps).sqrt();
            let (mr, rr) = (R::from_f64(m), R::from_f64(r));
            for i in 0..cols {
                yr[i] = (xr[i] - mr) * rr * gamma[i] + beta[i];
            }
            *mu = mr;
            *rs = rr;
        });
}

/// Backward: `dx` overwritten, `dgamma`/`dbeta` accumulated.
#[allow(clippy::too_many_arguments)]
pub fn backward<R: Real>(
    dy: &[R],
    x: &[R],
    gamma: &[R],
    mean: &[R],
    rstd: &[R],
    dx: &mut [R],
    dgamma: &mut [R],
    dbeta: &mut [R],
    rows: usize,
    cols: usize,
) {
    dx[..rows * cols]
        .par_chunks_exact_mut(cols)
        .enumerate()
        .for_each(|(r, dxr)| {
            let xr = &x[r * cols..(r + 1) * cols];
            let dyr = &dy[r * cols..(r + 1) * cols];
            let (mu, rs) = (mean[r], rstd[r]);
            let mut s1 = 0.0f64;
            let mut s2 = 0.0f64;
            for i in 0..cols {
                let xh = (xr[i] - mu) * rs;
                let g = dyr[i] * gamma[i];
                s1 += g.to_f64();
                s2 += (g * xh).to_f64();
            }
            let m1 = R::from_f64(s1 / cols as f64);
            let m2 = R::from_f64(s2 / cols as f64);
            for i in 0..cols {
                let xh = (xr[i] - mu) * rs;
                dxr[i] = (dyr[i] * gamma[i] - m1 - xh * m2) * rs;
            }
        });
    for r in 0..rows {
        let xr = &x[r * cols..(r + 1) * cols];
        let dyr = &dy[r * cols..(r + 1) * cols];
        for i in 0..cols {
            let xh = (xr[i] - mean[r]) * rstd[r];
            dgamma[i] += dyr[i] * xh;
            dbeta[i] += dyr[i];
        }
    }
}
