//! Strided GEMM wrapper over the `gemm` crate, and the Linear layer built on it.

use crate::real::Real;
use gemm::Parallelism;

/// A strided matrix view: element (i, j) at `ptr[off + i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct View<'a, R> {
    /// Backing slice.
    pub data: &'a [R],
    /// Offset of element (0,0).
    pub off: usize,
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

/// Below this many multiply-adds a GEMM runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// `dst[m×n] (= or +=) alpha · lhs[m×k] · rhs[k×n]`, with `dst` element (i,j) at
/// `dst[dst_off + i·dst_rs + j·dst_cs]`. `accumulate` chooses `+=`; `threads` allows the gemm
/// crate to use the rayon pool (callers already inside a parallel loop pass false).
#[allow(clippy::too_many_arguments)]
pub fn matmul<R: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [R],
    dst_off: usize,
    dst_rs: usize,
    dst_cs: usize,
    lhs: View<'_, R>,
    rhs: View<'_, R>,
    alpha: R,
    accumulate: bool,
    threads: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |off: usize, rows: usize, rs: usize, cols: usize, cs: usize| {
        off + (rows.saturating_sub(1)) * rs + (cols.saturating_sub(1)) * cs
    };
    assert!(
        last(dst_off, m, dst_rs, n, dst_cs) < dst.len(),
        "matmul: dst out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[dst_off + i * dst_rs + j * dst_cs] = R::zero();
                }
            }
        }
        return;
    }
    assert!(
        last(lhs.off, m, lhs.rs, k, lhs.cs) < lhs.data.len(),
        "matmul: lhs out of bounds"
    );
    assert!(
        last(rhs.off, k, rhs.rs, n, rhs.cs) < rhs.data.len(),
        "matmul: rhs out of bounds"
    );
    let par = if threads && m * n * k >= PARALLEL_MIN_WORK {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: all three views were bounds-checked above for the full m×k, k×n, m×n extents, and
    // `dst` is borrowed mutably, so it cannot alias `lhs`/`rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dst_off),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.off),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.off),
            rhs.cs as isize,
            rhs.rs as isize,
            R::one(),
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// `y[m×n] = x[m×k]·w[n×k]ᵀ + b`.
pub fn linear_fwd<R: Real>(
    x: &[R],
    w: &[R],
    b: Option<&[R]>,
    y: &mut [R],
    m: usize,
    k: usize,
    n: usize,
) {
    if let Some(b) = b {
        for row in y[..m * n].chunks_exact_mut(n) {
            row.copy_from_slice(&b[..n]);
        }
    }
    matmul(
        m,
        n,
        k,
        y,
        0,
        n,
        1,
        View {
            data: x,
            off: 0,
            rs: k,
            cs: 1,
        },
        View {
            data: w,
            off: 0,
            rs: 1,
            cs: k,
        },
        R::one(),
        b.is_some(),
        true,
    );
}

/// Backward of [`linear_fwd`]: `dx = dy·w` (overwrite), `dw += dyᵀx`, `db += Σ dy`.
#[allow(clippy::too_many_arguments)]
pub fn linear_bwd<R: Real>(
    dy: &[R],
    x: &[R],
    w: &[R],
    dx: Option<&mut [R]>,
    dw: Option<&mut [R]>,
    db: Option<&mut [R]>,
    m: usize,
    k: usize,
    n: usize,
) {
    if let Some(dx) = dx {
        matmul(
            m,
            k,
            n,
            dx,
            0,
            k,
            1,
            View {
                data: dy,
                off: 0,
                rs: n,
                cs: 1,
            },
            View {
                data: w,
                off: 0,
                rs: k,
                cs: 1,
            },
            R::one(),
            false,
            true,
        );
    }
    if let Some(dw) = dw {
        matmul(
            n,
            k,
            m,
            dw,
            0,
            k,
            1,
            View {
                data: dy,
                off: 0,
                rs: 1,
                cs: n,
            },
            View {
                data: x,
                off: 0,
                rs: k,
                cs: 1,
            },
            R::one(),
            true,
            true,
        );
    }
    if let Some(db) = db {
        for row in dy[..m * n].chunks_exact(n) {
            for (d, &g) in db.iter_mut().zip(row) {
                *d += g;
            }
        }
    }
}
