//! BatchNorm over channel-last rows (PyTorch BatchNorm3d semantics, train and eval).

use crate::real::Real;

/// Forward. Training normalises with batch mean and biased variance and updates the running
/// statistics with the unbiased variance; eval uses the running statistics.
#[allow(clippy::too_many_arguments)]
pub fn forward<R: Real>(
    x: &[R],
    gamma: &[R],
    beta: &[R],
    running_mean: &mut [R],
    running_var: &mut [R],
    y: &mut [R],
    mean: &mut [R],
    rstd: &mut [R],
    rows: usize,
    ch: usize,
    train: bool,
    momentum: f64,
    eps: f64,
) {
    if train {
        let mut s = vec![0.0f64; ch];
        for r in x[..rows * ch].chunks_exact(ch) {
            for (a, v) in s.iter_mut().zip(r) {
                *a += v.to_f64();
            }
        }
        let mu: Vec<f64> = s.iter().map(|v| v / rows as f64).collect();
        let mut q = vec![0.0f64; ch];
        for r in x[..rows * ch].chunks_exact(ch) {
            for ((a, v), m) in q.iter_mut().zip(r).zip(&mu) {
                *a += (v.to_f64() - m).powi(2);
            }
        }
        for c in 0..ch {
            let var_b = q[c] / rows as f64;
            let var_u = if rows > 1 {
                q[c] / (rows - 1) as f64
            } else {
                var_b
            };
            mean[c] = R::from_f64(mu[c]);
            rstd[c] = R::from_f64(1.0 / (var_b + eps).sqrt());
            running_mean[c] =
                R::from_f64((1.0 - momentum) * running_mean[c].to_f64() + momentum * mu[c]);
            running_var[c] =
                R::from_f64((1.0 - momentum) * running_var[c].to_f64() + momentum * var_u);
        }
    } else {
        for c in 0..ch {
            mean[c] = running_mean[c];
            rstd[c] = R::from_f64(1.0 / (running_var[c].to_f64() + eps).sqrt());
        }
    }
    for (yr, xr) in y[..rows * ch]
        .chunks_exact_mut(ch)
        .zip(x[..rows * ch].chunks_exact(ch))
    {
        for c in 0..ch {
            yr[c] = (xr[c] - mean[c]) * rstd[c] * gamma[c] + beta[c];
        }
    }
}

/// Backward through batch statistics.
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
    ch: usize,
) {
    let mut sdy = vec![0.0f64; ch];
    let mut sdyx = vec![0.0f64; ch];
    for (gr, xr) in dy[..rows * ch]
        .chunks_exact(ch)
        .zip(x[..rows * ch].chunks_exact(ch))
    {
        for c in 0..ch {
            let xh = (xr[c] - mean[c]) * rstd[c];
            sdy[c] += gr[c].to_f64();
            sdyx[c] += (gr[c] * xh).to_f64();
        }
    }
    for c in 0..ch {
        dgamma[c] += R::from_f64(sdyx[c]);
        dbeta[c] += R::from_f64(sdy[c]);
    }
    let nr = rows as f64;
    let m1: Vec<R> = sdy.iter().map(|v| R::from_f64(v / nr)).collect();
    let m2: Vec<R> = sdyx.iter().map(|v| R::from_f64(v / nr)).collect();
    for ((dr, gr), xr) in dx[..rows * ch]
        .chunks_exact_mut(ch)
        .zip(dy[..rows * ch].chunks_exact(ch))
        .zip(x[..rows * ch].chunks_exact(ch))
    {
        for c in 0..ch {
            let xh = (xr[c] - mean[c]) * rstd[c];
            dr[c] = gamma[c] * rstd[c] * (gr[c] - m1[c] - xh * m2[c]);
        }
    }
}
