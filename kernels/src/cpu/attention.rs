//! Multi-head softmax attention over a batch of independent sequences, fused from the qkv
//! projection output (layout documented on [`crate::Backend::attention_fwd`]).

use super::matmul::{matmul, View};
use crate::backend::AttnDims;
use crate::real::Real;
use rayon::prelude::*;

/// Raw pointer that may cross rayon tasks; each task writes a disjoint region.
#[derive(Clone, Copy)]
struct SyncPtr<R>(*mut R);
// SAFETY: used only to hand disjoint (sequence, head) regions to parallel tasks.
unsafe impl<R> Send for SyncPtr<R> {}
unsafe impl<R> Sync for SyncPtr<R> {}

impl<R> SyncPtr<R> {
    /// Reconstruct the full slice; callers only touch their own disjoint region.
    ///
    /// # Safety
    /// `len` must be the length of the original allocation and concurrent users must write
    /// disjoint elements.
    unsafe fn slice<'a>(self, len: usize) -> &'a mut [R] {
        std::slice::from_raw_parts_mut(self.0, len)
    }
}

/// Forward: `out[s, i, h·hd..] = softmax(q_i·scale · Kᵀ) V` per (sequence, head).
pub fn forward<R: Real>(qkv: &[R], out: &mut [R], probs: &mut [R], d: AttnDims) {
    let c = d.heads * d.head_dim;
    let (l, hd) = (d.len, d.head_dim);
    let scale = R::from_f64(1.0 / (hd as f64).sqrt());
    assert!(qkv.len() >= d.seqs * l * 3 * c && out.len() >= d.seqs * l * c);
    assert!(probs.len() >= d.seqs * d.heads * l * l);
    let out_len = out.len();
    let out_ptr = SyncPtr(out.as_mut_ptr());
    probs[..d.seqs * d.heads * l * l]
        .par_chunks_exact_mut(l * l)
        .enumerate()
        .for_each(|(sh, p)| {
            let (s, h) = (sh / d.heads, sh % d.heads);
            let base = s * l * 3 * c;
            matmul(
                l,
                l,
                hd,
                p,
                0,
                l,
                1,
                View {
                    data: qkv,
                    off: base + h * hd,
                    rs: 3 * c,
                    cs: 1,
                },
                View {
                    data: qkv,
                    off: base + c + h * hd,
                    rs: 1,
                    cs: 3 * c,
                },
                scale,
                false,
                false,
            );
            for row in p.chunks_exact_mut(l) {
                let mx = row
                    .iter()
                    .copied()
                    .fold(row[0], |a, b| if b > a { b } else { a });
                let mut sum = R::zero();
                for v in row.iter_mut() {
                    *v = (*v - mx).exp();
                    sum += *v;
                }
                let inv = R::one() / sum;
                for v in row.iter_mut() {
                    *v *= inv;
                }
            }
            // SAFETY: task (s, h) writes only out[s, :, h·hd..(h+1)·hd].
            let out = unsafe { out_ptr.slice(out_len) };
            matmul(
                l,
                hd,
                l,
                out,
                s * l * c + h * hd,
                c,
                1,
                View {
                    data: p,
                    off: 0,
                    rs: l,
                    cs: 1,
                },
                View {
                    data: qkv,
                    off: base + 2 * c + h * hd,
                    rs: 3 * c,
                    cs: 1,
                },
                R::one(),
                false,
                false,
            );
        });
}

/// Backward: overwrites `dqkv`.
pub fn backward<R: Real>(dout: &[R], qkv: &[R], probs: &[R], dqkv: &mut [R], d: AttnDims) {
    let c = d.heads * d.head_dim;
    let (l, hd) = (d.len, d.head_dim);
    let scale = R::from_f64(1.0 / (hd as f64).sqrt());
    assert!(dqkv.len() >= d.seqs * l * 3 * c && dout.len() >= d.seqs * l * c);
    let dlen = dqkv.len();
    let dptr = SyncPtr(dqkv.as_mut_ptr());
    (0..d.seqs * d.heads).into_par_iter().for_each(|sh| {
        let (s, h) = (sh / d.heads, sh % d.heads);
        let base = s * l * 3 * c;
        let p = &probs[sh * l * l..(sh + 1) * l * l];
        let dobase = s * l * c + h * hd;
        // SAFETY: task (s, h) writes only the q/k/v columns of head h in sequence s.
        let dqkv = unsafe { dptr.slice(dlen) };
        // dV = Pᵀ dO
        matmul(
            l,
            hd,
            l,
            dqkv,
            base + 2 * c + h * hd,
            3 * c,
            1,
            View {
                data: p,
                off: 0,
                rs: 1,
                cs: l,
            },
            View {
                data: dout,
                off: dobase,
                rs: c,
                cs: 1,
            },
            R::one(),
            false,
            false,
        );
        // dP = dO Vᵀ
        let mut ds = vec![R::zero(); l * l];
        matmul(
            l,
            l,
            hd,
            &mut ds,
            0,
            l,
            1,
            View {
                data: dout,
                off: dobase,
                rs: c,
                cs: 1,
            },
            View {
                data: qkv,
                off: base + 2 * c + h * hd,
                rs: 1,
                cs: 3 * c,
            },
            R::one(),
            false,
            false,
        );
        // dS = P ⊙ (dP − rowsum(dP ⊙ P))
        for (dr, pr) in ds.chunks_exact_mut(l).zip(p.chunks_exact(l)) {
            let dot: R = dr.iter().zip(pr).map(|(&a, &b)| a * b).sum();
            for (a, &b) in dr.iter_mut().zip(pr) {
                *a = b * (*a - dot);
            }
        }
        // dQ = scale · dS K
        matmul(
            l,
            hd,
            l,
            dqkv,
            base + h * hd,
            3 * c,
            1,
            View {
                data: &ds,
                off: 0,
                rs: l,
                cs: 1,
            },
            View {
                data: qkv,
                off: base + c + h * hd,
                rs: 3 * c,
                cs: 1,
            },
            scale,
            false,
            false,
        );
        // dK = scale · dSᵀ Q
        matmul(
            l,
            hd,
            l,
            dqkv,
            base + c + h * hd,
            3 * c,
            1,
            View {
                data: &ds,
                off: 0,
                rs: 1,
                cs: l,
            },
            View {
                data: qkv,
                off: base + h * hd,
                rs: 3 * c,
                cs: 1,
            },
            scale,
            false,
            false,
        );
    });
}
