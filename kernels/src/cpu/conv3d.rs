//! Conv3d with kernel (3,1,1), padding (1,0,0) in channel-last layout: three shifted GEMMs.

use super::matmul::{matmul, View};
use crate::backend::Conv3dDims;
use crate::real::Real;

/// Output frame range `[t0, t1)` for which tap `k` reads an in-range input frame `t + k − 1`.
fn tap_range(k: usize, frames: usize) -> (usize, usize) {
    (1usize.saturating_sub(k), (frames + 1 - k).min(frames))
}

/// Forward: `y[b,t,s,:] = bias + Σ_k x[b,t+k−1,s,:]·W_kᵀ`.
pub fn forward<R: Real>(x: &[R], w: &[R], bias: &[R], y: &mut [R], d: Conv3dDims) {
    let (s, ci, co) = (d.cells, d.cin, d.cout);
    let rows = d.batch * d.frames * s;
    for row in y[..rows * co].chunks_exact_mut(co) {
        row.copy_from_slice(&bias[..co]);
    }
    for b in 0..d.batch {
        for k in 0..3 {
            let (t0, t1) = tap_range(k, d.frames);
            if t1 <= t0 {
                continue;
            }
            let m = (t1 - t0) * s;
            let yo = (b * d.frames + t0) * s * co;
            let xo = (b * d.frames + t0 + k - 1) * s * ci;
            matmul(
                m,
                co,
                ci,
                y,
                yo,
                co,
                1,
                View {
                    data: x,
                    off: xo,
                    rs: ci,
                    cs: 1,
                },
                View {
                    data: w,
                    off: k,
                    rs: 3,
                    cs: ci * 3,
                },
                R::one(),
                true,
                true,
            );
        }
    }
}

/// Backward: `dx` overwritten (if requested), `dw`/`db` accumulated.
pub fn backward<R: Real>(
    dy: &[R],
    x: &[R],
    w: &[R],
    dx: Option<&mut [R]>,
    dw: &mut [R],
    db: &mut [R],
    d: Conv3dDims,
) {
    let (s, ci, co) = (d.cells, d.cin, d.cout);
    let rows = d.batch * d.frames * s;
    for row in dy[..rows * co].chunks_exact(co) {
        for (a, &g) in db.iter_mut().zip(row) {
            *a += g;
        }
    }
    let mut dx = dx;
    if let Some(dx) = dx.as_deref_mut() {
        dx[..rows * ci].iter_mut().for_each(|v| *v = R::zero());
    }
    for b in 0..d.batch {
        for k in 0..3 {
            let (t0, t1) = tap_range(k, d.frames);
            if t1 <= t0 {
                continue;
            }
            let m = (t1 - t0) * s;
            let yo = (b * d.frames + t0) * s * co;
            let xo = (b * d.frames + t0 + k - 1) * s * ci;
            if let Some(dx) = dx.as_deref_mut() {
                matmul(
                    m,
                    ci,
                    co,
                    dx,
                    xo,
                    ci,
                    1,
                    View {
                        data: dy,
                        off: yo,
                        rs: co,
                        cs: 1,
                    },
                    View {
                        data: w,
                        off: k,
                        rs: ci * 3,
                        cs: 3,
                    },
                    R::one(),
                    true,
                    true,
                );
            }
            matmul(
                co,
                ci,
                m,
                dw,
                k,
                ci * 3,
                3,
                View {
                    data: dy,
                    off: yo,
                    rs: 1,
                    cs: co,
                },
                View {
                    data: x,
                    off: xo,
                    rs: ci,
                    cs: 1,
                },
                R::one(),
                true,
                true,
            );
        }
    }
}
