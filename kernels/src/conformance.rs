//! Backend conformance: run every [`Backend`] op of a candidate backend and of the CPU reference
//! on the same pseudo-random inputs and compare. A new backend (CUDA) calls
//! [`check_against_cpu`] from its tests; tolerance is relative to each output's max magnitude.

use crate::backend::{AdamParams, AttnDims, Backend, Conv3dDims, EmbedDims, TempTokenSource};
use crate::cpu::CpuBackend;

/// Deterministic inputs without an RNG dependency (xorshift).
struct Gen(u64);

impl Gen {
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }
}

fn cmp(what: &str, got: &[f32], want: &[f32], rtol: f32) -> Result<(), String> {
    if got.len() < want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    let scale = want.iter().fold(1e-6f32, |a, v| a.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if (g - w).abs() > rtol * scale || (g - w).is_nan() {
            return Err(format!("{what}[{i}]: {g} vs reference {w} (scale {scale})"));
        }
    }
    Ok(())
}

/// Compare `be` with [`CpuBackend`] on every op; `rtol` is relative to each output's max |value|
/// (1e-5 suits f32 backends with different summation order).
pub fn check_against_cpu<B: Backend>(be: &B, rtol: f32) -> Result<(), String> {
    let cpu = CpuBackend;
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let up = |v: &Vec<f32>| be.upload(v);
    let down = |b: &B::Buf| be.download(b);
    // linear
    let (m, k, n) = (37, 70, 33);
    let (x, w, b, dy) = (g.vec(m * k), g.vec(n * k), g.vec(n), g.vec(m * n));
    let mut y0 = vec![0.0; m * n];
    cpu.linear_fwd(&x, &w, Some(&b), &mut y0, m, k, n);
    let mut y1 = be.zeros(m * n);
    be.linear_fwd(&up(&x), &up(&w), Some(&up(&b)), &mut y1, m, k, n);
    cmp("linear_fwd", &down(&y1), &y0, rtol)?;
    let (mut dx0, mut dw0, mut db0) = (vec![0.0; m * k], vec![0.0; n * k], vec![0.0; n]);
    cpu.linear_bwd(
        &dy,
        &x,
        &w,
        Some(&mut dx0),
        Some(&mut dw0),
        Some(&mut db0),
        m,
        k,
        n,
    );
    let (mut dx1, mut dw1, mut db1) = (be.zeros(m * k), be.zeros(n * k), be.zeros(n));
    be.linear_bwd(
        &up(&dy),
        &up(&x),
        &up(&w),
        Some(&mut dx1),
        Some(&mut dw1),
        Some(&mut db1),
        m,
        k,
        n,
    );
    cmp("linear_bwd dx", &down(&dx1), &dx0, rtol)?;
    cmp("linear_bwd dw", &down(&dw1), &dw0, rtol)?;
    cmp("linear_bwd db", &down(&db1), &db0, rtol)?;
    // layernorm
    let (rows, cols) = (19, 48);
    let (x, ga, be_, dy) = (
        g.vec(rows * cols),
        g.vec(cols),
        g.vec(cols),
        g.vec(rows * cols),
    );
    let (mut y0, mut mu0, mut rs0) = (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
    cpu.layernorm_fwd(&x, &ga, &be_, &mut y0, &mut mu0, &mut rs0, rows, cols, 1e-6);
    let (mut y1, mut mu1, mut rs1) = (be.zeros(rows * cols), be.zeros(rows), be.zeros(rows));
    be.layernorm_fwd(
        &up(&x),
        &up(&ga),
        &up(&be_),
        &mut y1,
        &mut mu1,
        &mut rs1,
        rows,
        cols,
        1e-6,
    );
    cmp("layernorm_fwd", &down(&y1), &y0, rtol)?;
    let (mut dx0, mut dg0, mut db0) = (vec![0.0; rows * cols], vec![0.0; cols], vec![0.0; cols]);
    cpu.layernorm_bwd(
        &dy, &x, &ga, &mu0, &rs0, &mut dx0, &mut dg0, &mut db0, rows, cols,
    );
    let (mut dx1, mut dg1, mut db1) = (be.zeros(rows * cols), be.zeros(cols), be.zeros(cols));
    be.layernorm_bwd(
        &up(&dy),
        &up(&x),
        &up(&ga),
        &mu1,
        &rs1,
        &mut dx1,
        &mut dg1,
        &mut db1,
        rows,
        cols,
    );
    cmp("layernorm_bwd dx", &down(&dx1), &dx0, rtol)?;
    cmp("layernorm_bwd dgamma", &down(&dg1), &dg0, rtol)?;
    cmp("layernorm_bwd dbeta", &down(&db1), &db0, rtol)?;
    // gelu
    let nn = 1000;
    let (x, dy) = (
        g.vec(nn).iter().map(|v| v * 4.0).collect::<Vec<_>>(),
        g.vec(nn),
    );
    let mut y0 = vec![0.0; nn];
    cpu.gelu_fwd(&x, &mut y0, nn);
    let mut y1 = be.zeros(nn);
    be.gelu_fwd(&up(&x), &mut y1, nn);
    cmp("gelu_fwd", &down(&y1), &y0, rtol)?;
    let mut d0 = vec![0.0; nn];
    cpu.gelu_bwd(&dy, &x, &mut d0, nn);
    let mut d1 = be.zeros(nn);
    be.gelu_bwd(&up(&dy), &up(&x), &mut d1, nn);
    cmp("gelu_bwd", &down(&d1), &d0, rtol)?;
    // attention (temporal-like and spatial-like lengths)
    for d in [
        AttnDims {
            seqs: 6,
            len: 5,
            heads: 3,
            head_dim: 16,
        },
        AttnDims {
            seqs: 2,
            len: 17,
            heads: 2,
            head_dim: 8,
        },
    ] {
        let c = d.heads * d.head_dim;
        let (qkv, dout) = (g.vec(d.seqs * d.len * 3 * c), g.vec(d.seqs * d.len * c));
        let (mut o0, mut p0) = (
            vec![0.0; d.seqs * d.len * c],
            vec![0.0; d.seqs * d.heads * d.len * d.len],
        );
        cpu.attention_fwd(&qkv, &mut o0, &mut p0, d);
        let (mut o1, mut p1) = (be.zeros(o0.len()), be.zeros(p0.len()));
        be.attention_fwd(&up(&qkv), &mut o1, &mut p1, d);
        cmp("attention_fwd", &down(&o1), &o0, rtol)?;
        let mut dq0 = vec![0.0; qkv.len()];
        cpu.attention_bwd(&dout, &qkv, &p0, &mut dq0, d);
        let mut dq1 = be.zeros(qkv.len());
        be.attention_bwd(&up(&dout), &up(&qkv), &p1, &mut dq1, d);
        cmp("attention_bwd", &down(&dq1), &dq0, rtol)?;
    }
    // token ops
    let d = EmbedDims {
        batch: 2,
        frames: 4,
        patches: 9,
        dim: 8,
    };
    let (t, np, c, l) = (d.frames, d.patches, d.dim, d.tokens());
    let (e, cls, pos, time, temp) = (
        g.vec(2 * t * np * c),
        g.vec(c),
        g.vec((np + 1) * c),
        g.vec((t + 1) * c),
        g.vec(c),
    );
    for src in [TempTokenSource::Compat, TempTokenSource::Clean] {
        let mut t0 = vec![0.0; 2 * l * c];
        cpu.embed_tokens_fwd(&e, &cls, &pos, &time, &temp, &mut t0, d, src);
        let mut t1 = be.zeros(2 * l * c);
        be.embed_tokens_fwd(
            &up(&e),
            &up(&cls),
            &up(&pos),
            &up(&time),
            &up(&temp),
            &mut t1,
            d,
            src,
        );
        cmp("embed_tokens_fwd", &down(&t1), &t0, rtol)?;
        let dt = g.vec(2 * l * c);
        let mut r0: Vec<Vec<f32>> = [e.len(), c, pos.len(), time.len(), c]
            .iter()
            .map(|&n| vec![0.0; n])
            .collect();
        let mut r1: Vec<B::Buf> = [e.len(), c, pos.len(), time.len(), c]
            .iter()
            .map(|&n| be.zeros(n))
            .collect();
        {
            let [a, b2, c2, d2, e2] = &mut r0[..] else {
                unreachable!()
            };
            cpu.embed_tokens_bwd(&dt, a, b2, c2, d2, e2, d, src);
        }
        {
            let [a, b2, c2, d2, e2] = &mut r1[..] else {
                unreachable!()
            };
            be.embed_tokens_bwd(&up(&dt), a, b2, c2, d2, e2, d, src);
        }
        for (i, what) in ["de", "dcls", "dpos", "dtime", "dtemp"].iter().enumerate() {
            cmp(
                &format!("embed_tokens_bwd {what}"),
                &down(&r1[i]),
                &r0[i],
                rtol,
            )?;
        }
    }
    let tok = g.vec(2 * l * c);
    let nr = 2 * np * (t + 1) * c;
    let nv = 2 * t * (np + 1) * c;
    let (r, v) = (g.vec(nr), g.vec(nv));
    let mut s0 = vec![0.0; nr];
    cpu.temporal_gather_fwd(&tok, &mut s0, d);
    let mut s1 = be.zeros(nr);
    be.temporal_gather_fwd(&up(&tok), &mut s1, d);
    cmp("temporal_gather_fwd", &down(&s1), &s0, rtol)?;
    let mut a0 = vec![0.0; tok.len()];
    cpu.temporal_gather_bwd(&r, &mut a0, d);
    let mut a1 = be.zeros(tok.len());
    be.temporal_gather_bwd(&up(&r), &mut a1, d);
    cmp("temporal_gather_bwd", &down(&a1), &a0, rtol)?;
    let mut s0 = vec![0.0; nv];
    cpu.spatial_gather_fwd(&tok, &r, &mut s0, d);
    let mut s1 = be.zeros(nv);
    be.spatial_gather_fwd(&up(&tok), &up(&r), &mut s1, d);
    cmp("spatial_gather_fwd", &down(&s1), &s0, rtol)?;
    let (mut a0, mut b0) = (vec![0.0; tok.len()], vec![0.0; nr]);
    cpu.spatial_gather_bwd(&v, &mut a0, &mut b0, d);
    let (mut a1, mut b1) = (be.zeros(tok.len()), be.zeros(nr));
    be.spatial_gather_bwd(&up(&v), &mut a1, &mut b1, d);
    cmp("spatial_gather_bwd dtok", &down(&a1), &a0, rtol)?;
    cmp("spatial_gather_bwd dr", &down(&b1), &b0, rtol)?;
    let mut y0 = vec![0.0; tok.len()];
    cpu.merge_fwd(&tok, &r, &v, &mut y0, d);
    let mut y1 = be.zeros(tok.len());
    be.merge_fwd(&up(&tok), &up(&r), &up(&v), &mut y1, d);
    cmp("merge_fwd", &down(&y1), &y0, rtol)?;
    let (mut a0, mut b0, mut c0) = (vec![0.0; tok.len()], vec![0.0; nr], vec![0.0; nv]);
    cpu.merge_bwd(&tok, &mut a0, &mut b0, &mut c0, d);
    let (mut a1, mut b1, mut c1) = (be.zeros(tok.len()), be.zeros(nr), be.zeros(nv));
    be.merge_bwd(&up(&tok), &mut a1, &mut b1, &mut c1, d);
    cmp("merge_bwd dtok", &down(&a1), &a0, rtol)?;
    cmp("merge_bwd dr", &down(&b1), &b0, rtol)?;
    cmp("merge_bwd dv", &down(&c1), &c0, rtol)?;
    let idx: Vec<u32> = (0..(2 * l) as u32).rev().step_by(3).collect();
    let mut y0 = vec![0.0; idx.len() * c];
    cpu.gather_rows(&tok, &idx, &mut y0, c);
    let mut y1 = be.zeros(idx.len() * c);
    be.gather_rows(&up(&tok), &idx, &mut y1, c);
    cmp("gather_rows", &down(&y1), &y0, rtol)?;
    let mut z0 = vec![0.0; tok.len()];
    cpu.scatter_add_rows(&y0, &idx, &mut z0, c);
    let mut z1 = be.zeros(tok.len());
    be.scatter_add_rows(&up(&y0), &idx, &mut z1, c);
    cmp("scatter_add_rows", &down(&z1), &z0, rtol)?;
    // patchify
    let (bb, hh) = (2, 16);
    let x = g.vec(bb * 3 * 4 * hh * hh);
    let ncol = bb * 4 * 16 * 3 * 16;
    let mut c0 = vec![0.0; ncol];
    cpu.patchify(&x, &mut c0, bb, 3, 4, hh, hh, 4);
    let mut c1 = be.zeros(ncol);
    be.patchify(&up(&x), &mut c1, bb, 3, 4, hh, hh, 4);
    cmp("patchify", &down(&c1), &c0, rtol)?;
    // conv3d
    let cd = Conv3dDims {
        batch: 2,
        frames: 4,
        cells: 9,
        cin: 12,
        cout: 5,
    };
    let rows = cd.batch * cd.frames * cd.cells;
    let (x, w, b, dy) = (
        g.vec(rows * cd.cin),
        g.vec(cd.cout * cd.cin * 3),
        g.vec(cd.cout),
        g.vec(rows * cd.cout),
    );
    let mut y0 = vec![0.0; rows * cd.cout];
    cpu.conv3d_t_fwd(&x, &w, &b, &mut y0, cd);
    let mut y1 = be.zeros(rows * cd.cout);
    be.conv3d_t_fwd(&up(&x), &up(&w), &up(&b), &mut y1, cd);
    cmp("conv3d_fwd", &down(&y1), &y0, rtol)?;
    let (mut dx0, mut dw0, mut db0) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
    cpu.conv3d_t_bwd(&dy, &x, &w, Some(&mut dx0), &mut dw0, &mut db0, cd);
    let (mut dx1, mut dw1, mut db1) = (be.zeros(x.len()), be.zeros(w.len()), be.zeros(b.len()));
    be.conv3d_t_bwd(
        &up(&dy),
        &up(&x),
        &up(&w),
        Some(&mut dx1),
        &mut dw1,
        &mut db1,
        cd,
    );
    cmp("conv3d_bwd dx", &down(&dx1), &dx0, rtol)?;
    cmp("conv3d_bwd dw", &down(&dw1), &dw0, rtol)?;
    cmp("conv3d_bwd db", &down(&db1), &db0, rtol)?;
    // batchnorm (train + eval)
    let (rows, ch) = (50, 6);
    let (x, ga, bt, dy) = (g.vec(rows * ch), g.vec(ch), g.vec(ch), g.vec(rows * ch));
    for train in [true, false] {
        let (mut rm0, mut rv0) = (vec![0.1; ch], vec![0.9; ch]);
        let (mut y0, mut m0, mut r0) = (vec![0.0; rows * ch], vec![0.0; ch], vec![0.0; ch]);
        cpu.batchnorm_fwd(
            &x, &ga, &bt, &mut rm0, &mut rv0, &mut y0, &mut m0, &mut r0, rows, ch, train, 0.05,
            1e-5,
        );
        let (mut rm1, mut rv1) = (up(&vec![0.1; ch]), up(&vec![0.9; ch]));
        let (mut y1, mut m1, mut r1) = (be.zeros(rows * ch), be.zeros(ch), be.zeros(ch));
        be.batchnorm_fwd(
            &up(&x),
            &up(&ga),
            &up(&bt),
            &mut rm1,
            &mut rv1,
            &mut y1,
            &mut m1,
            &mut r1,
            rows,
            ch,
            train,
            0.05,
            1e-5,
        );
        cmp("batchnorm_fwd", &down(&y1), &y0, rtol)?;
        cmp("batchnorm running_mean", &down(&rm1), &rm0, rtol)?;
        cmp("batchnorm running_var", &down(&rv1), &rv0, rtol)?;
        if train {
            let (mut dx0, mut dg0, mut db0) = (vec![0.0; rows * ch], vec![0.0; ch], vec![0.0; ch]);
            cpu.batchnorm_bwd(
                &dy, &x, &ga, &m0, &r0, &mut dx0, &mut dg0, &mut db0, rows, ch,
            );
            let (mut dx1, mut dg1, mut db1) = (be.zeros(rows * ch), be.zeros(ch), be.zeros(ch));
            be.batchnorm_bwd(
                &up(&dy),
                &up(&x),
                &up(&ga),
                &m1,
                &r1,
                &mut dx1,
                &mut dg1,
                &mut db1,
                rows,
                ch,
            );
            cmp("batchnorm_bwd dx", &down(&dx1), &dx0, rtol)?;
            cmp("batchnorm_bwd dgamma", &down(&dg1), &dg0, rtol)?;
            cmp("batchnorm_bwd dbeta", &down(&db1), &db0, rtol)?;
        }
    }
    // elementwise helpers and Adam
    let nn = 300;
    let (p, gr, mm, vv) = (
        g.vec(nn),
        g.vec(nn),
        g.vec(nn),
        g.vec(nn).iter().map(|v| v.abs()).collect::<Vec<_>>(),
    );
    let h = AdamParams {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.995,
        eps: 1e-8,
        weight_decay: 1e-4,
        step: 3,
    };
    let (mut p0, mut m0, mut v0) = (p.clone(), mm.clone(), vv.clone());
    cpu.adam_step(&mut p0, &gr, &mut m0, &mut v0, nn, h);
    let (mut p1, mut m1, mut v1) = (up(&p), up(&mm), up(&vv));
    be.adam_step(&mut p1, &up(&gr), &mut m1, &mut v1, nn, h);
    cmp("adam p", &down(&p1), &p0, rtol)?;
    cmp("adam m", &down(&m1), &m0, rtol)?;
    cmp("adam v", &down(&v1), &v0, rtol)?;
    let mut a0 = p.clone();
    cpu.axpy(0.5, &gr, &mut a0, nn);
    cpu.mul_inplace(&mut a0, &mm, nn);
    cpu.scale_groups(&mut a0, &[0.0, 2.0, 1.0], 100);
    let mut a1 = up(&p);
    be.axpy(0.5, &up(&gr), &mut a1, nn);
    be.mul_inplace(&mut a1, &up(&mm), nn);
    be.scale_groups(&mut a1, &[0.0, 2.0, 1.0], 100);
    cmp("axpy/mul/scale_groups", &down(&a1), &a0, rtol)?;
    let (s0, s1) = (cpu.sum_squares(&gr, nn), be.sum_squares(&up(&gr), nn));
    if (s0 - s1).abs() > 1e-5 * s0 {
        return Err(format!("sum_squares: {s1} vs {s0}"));
    }
    Ok(())
}
