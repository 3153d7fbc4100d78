//! Token-layout ops of the divided space-time backbone: patch unfolding, token embedding, the
//! temporal/spatial sequence gathers, the block merge and row gathers (layouts on
//! [`crate::Backend`]).

use crate::backend::{EmbedDims, TempTokenSource};
use crate::real::Real;

fn add_into<R: Real>(dst: &mut [R], src: &[R]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

fn add_scaled<R: Real>(dst: &mut [R], src: &[R], a: R) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += a * s;
    }
}

/// Unfold `x[B, Cin, T, H, W]` into `cols[(b·T+t)·N + n, ci·p² + ky·p + kx]`.
#[allow(clippy::too_many_arguments)]
pub fn patchify<R: Real>(
    x: &[R],
    cols: &mut [R],
    batch: usize,
    cin: usize,
    frames: usize,
    height: usize,
    width: usize,
    p: usize,
) {
    let (gh, gw) = (height / p, width / p);
    let n = gh * gw;
    let k = cin * p * p;
    for b in 0..batch {
        for t in 0..frames {
            for gi in 0..gh {
                for gj in 0..gw {
                    let row = ((b * frames + t) * n + gi * gw + gj) * k;
                    for ci in 0..cin {
                        for ky in 0..p {
                            let src = (((b * cin + ci) * frames + t) * height + gi * p + ky)
                                * width
                                + gj * p;
                            let dst = row + ci * p * p + ky * p;
                            cols[dst..dst + p].copy_from_slice(&x[src..src + p]);
                        }
                    }
                }
            }
        }
    }
}

/// Token embedding forward.
#[allow(clippy::too_many_arguments)]
pub fn embed_fwd<R: Real>(
    e: &[R],
    cls: &[R],
    pos: &[R],
    time: &[R],
    temp: &[R],
    tok: &mut [R],
    d: EmbedDims,
    src: TempTokenSource,
) {
    let (t_, n_, c) = (d.frames, d.patches, d.dim);
    let l = d.tokens();
    for b in 0..d.batch {
        let base = b * l * c;
        for i in 0..c {
            tok[base + i] = cls[i] + pos[i];
        }
        for n in 0..n_ {
            for t in 0..t_ {
                let o = base + (1 + n * t_ + t) * c;
                let er = ((b * t_ + t) * n_ + n) * c;
                for i in 0..c {
                    tok[o + i] = e[er + i] + pos[(1 + n) * c + i] + time[t * c + i];
                }
            }
        }
        let o = base + (l - 1) * c;
        match src {
            TempTokenSource::Compat => {
                let er = b * c; // sample 0, frame 0, patch b
                for i in 0..c {
                    tok[o + i] = e[er + i] + pos[(1 + b) * c + i] + time[i];
                }
            }
            TempTokenSource::Clean => {
                for i in 0..c {
                    tok[o + i] = temp[i] + time[t_ * c + i];
                }
            }
        }
    }
}

/// Token embedding backward (see [`crate::Backend::embed_tokens_bwd`]).
#[allow(clippy::too_many_arguments)]
pub fn embed_bwd<R: Real>(
    dtok: &[R],
    de: &mut [R],
    dcls: &mut [R],
    dpos: &mut [R],
    dtime: &mut [R],
    dtemp: &mut [R],
    d: EmbedDims,
    src: TempTokenSource,
) {
    let (t_, n_, c) = (d.frames, d.patches, d.dim);
    let l = d.tokens();
    for b in 0..d.batch {
        let base = b * l * c;
        add_into(&mut dcls[..c], &dtok[base..base + c]);
        add_into(&mut dpos[..c], &dtok[base..base + c]);
        for n in 0..n_ {
            for t in 0..t_ {
                let o = base + (1 + n * t_ + t) * c;
                let g = &dtok[o..o + c];
                let er = ((b * t_ + t) * n_ + n) * c;
                de[er..er + c].copy_from_slice(g);
                add_into(&mut dpos[(1 + n) * c..(2 + n) * c], g);
                add_into(&mut dtime[t * c..(t + 1) * c], g);
            }
        }
    }
    for b in 0..d.batch {
        let o = (b * l + l - 1) * c;
        let g = &dtok[o..o + c];
        match src {
            TempTokenSource::Compat => {
                add_into(&mut de[b * c..(b + 1) * c], g);
                add_into(&mut dpos[(1 + b) * c..(2 + b) * c], g);
                add_into(&mut dtime[..c], g);
            }
            TempTokenSource::Clean => {
                add_into(&mut dtemp[..c], g);
                add_into(&mut dtime[t_ * c..(t_ + 1) * c], g);
            }
        }
    }
}

/// `seq[b·N+n] = [p(n,0..T); τ]`.
pub fn temporal_gather_fwd<R: Real>(tok: &[R], seq: &mut [R], d: EmbedDims) {
    let (t_, n_, c, l) = (d.frames, d.patches, d.dim, d.tokens());
    for b in 0..d.batch {
        for n in 0..n_ {
            let so = (b * n_ + n) * (t_ + 1) * c;
            let to = (b * l + 1 + n * t_) * c;
            seq[so..so + t_ * c].copy_from_slice(&tok[to..to + t_ * c]);
            let tau = (b * l + l - 1) * c;
            seq[so + t_ * c..so + (t_ + 1) * c].copy_from_slice(&tok[tau..tau + c]);
        }
    }
}

/// Backward of [`temporal_gather_fwd`] (accumulates).
pub fn temporal_gather_bwd<R: Real>(dseq: &[R], dtok: &mut [R], d: EmbedDims) {
    let (t_, n_, c, l) = (d.frames, d.patches, d.dim, d.tokens());
    for b in 0..d.batch {
        for n in 0..n_ {
            let so = (b * n_ + n) * (t_ + 1) * c;
            let to = (b * l + 1 + n * t_) * c;
            add_into(&mut dtok[to..to + t_ * c], &dseq[so..so + t_ * c]);
            let tau = (b * l + l - 1) * c;
            add_into(
                &mut dtok[tau..tau + c],
                &dseq[so + t_ * c..so + (t_ + 1) * c],
            );
        }
    }
}

/// `seq[b·T+t] = [CLS; p(n,t) + r(bn, t)]`.
pub fn spatial_gather_fwd<R: Real>(tok: &[R], r: &[R], seq: &mut [R], d: EmbedDims) {
    let (t_, n_, c, l) = (d.frames, d.patches, d.dim, d.tokens());
    for b in 0..d.batch {
        for t in 0..t_ {
            let so = (b * t_ + t) * (n_ + 1) * c;
            seq[so..so + c].copy_from_slice(&tok[b * l * c..b * l * c + c]);
            for n in 0..n_ {
                let o = so + (1 + n) * c;
                let to = (b * l + 1 + n * t_ + t) * c;
                let ro = ((b * n_ + n) * (t_ + 1) + t) * c;
                for i in 0..c {
                    seq[o + i] = tok[to + i] + r[ro + i];
                }
            }
        }
    }
}

/// Backward of [`spatial_gather_fwd`] (accumulates).
pub fn spatial_gather_bwd<R: Real>(dseq: &[R], dtok: &mut [R], dr: &mut [R], d: EmbedDims) {
    let (t_, n_, c, l) = (d.frames, d.patches, d.dim, d.tokens());
    for b in 0..d.batch {
        for t in 0..t_ {
            let so = (b * t_ + t) * (n_ + 1) * c;
            add_into(&mut dtok[b * l * c..b * l * c + c], &dseq[so..so + c]);
            for n in 0..n_ {
                let g = &dseq[so + (1 + n) * c..so + (2 + n) * c];
                let to = (b * l + 1 + n * t_ + t) * c;
                let ro = ((b * n_ + n) * (t_ + 1) + t) * c;
                add_into(&mut dtok[to..to + c], g);
                add_into(&mut dr[ro..ro + c], g);
            }
        }
    }
}

/// Block merge forward (spec §2.2.2 steps 1–3).
pub fn merge_fwd<R: Real>(tok: &[R], r: &[R], v: &[R], y: &mut [R], d: EmbedDims) {
    let (t_, n_, c, l) = (d.frames, d.patches, d.dim, d.tokens());
    let inv_t = R::from_f64(1.0 / t_ as f64);
    let inv_n = R::from_f64(1.0 / n_ as f64);
    for b in 0..d.batch {
        let base = b * l * c;
        y[base..(b + 1) * l * c].copy_from_slice(&tok[base..(b + 1) * l * c]);
        let mut acc = vec![R::zero(); c];
        for t in 0..t_ {
            let vo = (b * t_ + t) * (n_ + 1) * c;
            add_into(&mut acc, &v[vo..vo + c]);
        }
        add_scaled(&mut y[base..base + c], &acc, inv_t);
        for n in 0..n_ {
            for t in 0..t_ {
                let o = base + (1 + n * t_ + t) * c;
                let ro = ((b * n_ + n) * (t_ + 1) + t) * c;
                let vo = ((b * t_ + t) * (n_ + 1) + 1 + n) * c;
                for i in 0..c {
                    y[o + i] += r[ro + i] + v[vo + i];
                }
            }
        }
        let mut acc = vec![R::zero(); c];
        for n in 0..n_ {
            let ro = ((b * n_ + n) * (t_ + 1) + t_) * c;
            add_into(&mut acc, &r[ro..ro + c]);
        }
        add_scaled(&mut y[base + (l - 1) * c..base + l * c], &acc, inv_n);
    }
}

/// Backward of [`merge_fwd`] (accumulates into all three gradients).
pub fn merge_bwd<R: Real>(dy: &[R], dtok: &mut [R], dr: &mut [R], dv: &mut [R], d: EmbedDims) {
    let (t_, n_, c, l) = (d.frames, d.patches, d.dim, d.tokens());
    let inv_t = R::from_f64(1.0 / t_ as f64);
    let inv_n = R::from_f64(1.0 / n_ as f64);
    add_into(&mut dtok[..d.batch * l * c], &dy[..d.batch * l * c]);
    for b in 0..d.batch {
        let base = b * l * c;
        for t in 0..t_ {
            let vo = (b * t_ + t) * (n_ + 1) * c;
            add_scaled(&mut dv[vo..vo + c], &dy[base..base + c], inv_t);
        }
        for n in 0..n_ {
            for t in 0..t_ {
                let o = base + (1 + n * t_ + t) * c;
                let ro = ((b * n_ + n) * (t_ + 1) + t) * c;
                let vo = ((b * t_ + t) * (n_ + 1) + 1 + n) * c;
                add_into(&mut dr[ro..ro + c], &dy[o..o + c]);
                add_into(&mut dv[vo..vo + c], &dy[o..o + c]);
            }
            let ro = ((b * n_ + n) * (t_ + 1) + t_) * c;
            add_scaled(
                &mut dr[ro..ro + c],
                &dy[base + (l - 1) * c..base + l * c],
                inv_n,
            );
        }
    }
}

/// `dst[i] = src[idx[i]]` (rows of `cols`).
pub fn gather_rows<R: Real>(src: &[R], idx: &[u32], dst: &mut [R], cols: usize) {
    for (i, &j) in idx.iter().enumerate() {
        let j = j as usize;
        dst[i * cols..(i + 1) * cols].copy_from_slice(&src[j * cols..(j + 1) * cols]);
    }
}

/// `dsrc[idx[i]] += ddst[i]`.
pub fn scatter_add_rows<R: Real>(ddst: &[R], idx: &[u32], dsrc: &mut [R], cols: usize) {
    for (i, &j) in idx.iter().enumerate() {
        let j = j as usize;
        add_into(
            &mut dsrc[j * cols..(j + 1) * cols],
            &ddst[i * cols..(i + 1) * cols],
        );
    }
}
