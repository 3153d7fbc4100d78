//! CUDA-only entry points: the bf16 paths (GEMM, attention, layernorm, GELU, patch unfold), TF32
//! GEMM, and the ops the `Backend` trait does not cover (blend, losses, token merge, drop-path,
//! SAM, casts). References are the CPU backend on the bf16-rounded inputs, or direct formulas.

use half::bf16;
use kernels::cuda::{
    AdamHyper, AttentionShape, CudaBackend, CudaError, GemmMath, GemmShape, MergeShape, PatchGeom,
};
use kernels::{AttnDims, Backend, CpuBackend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::report::{from_bf16, nan_vec, rand_vec, round_bf16, to_bf16, Report, TOL_BF16, TOL_F32};

fn bf16_nan(n: usize) -> Vec<bf16> {
    vec![bf16::NAN; n]
}

fn fail_on(rep: &mut Report, what: &str, r: Result<(), CudaError>) {
    if let Err(e) = r {
        rep.fail(&format!("{what}: {e}"));
    }
}

pub fn run(be: &CudaBackend, rep: &mut Report) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x62663136);
    type Check = fn(&CudaBackend, &mut Report, &mut ChaCha8Rng) -> Result<(), CudaError>;
    let checks: [(&str, Check); 8] = [
        ("gemm bf16/tf32", gemm),
        ("attention bf16", attention_bf16),
        ("layernorm/gelu bf16", ln_gelu_bf16),
        ("patch unfold/fold", patch),
        ("blend", blend),
        ("losses", losses),
        ("elementwise", elementwise),
        ("sam/adam", sam),
    ];
    for (what, check) in checks {
        let r = check(be, rep, &mut rng);
        fail_on(rep, what, r);
    }
}

fn gemm(be: &CudaBackend, rep: &mut Report, r: &mut ChaCha8Rng) -> Result<(), CudaError> {
    let (m, k, n) = (512, 768, 2304);
    let (x, w) = (rand_vec(r, m * k, 1.0), rand_vec(r, n * k, 0.05));
    let (xr, wr) = (round_bf16(&x), round_bf16(&w));
    let cpu = CpuBackend;
    let mut want = vec![0.0; m * n];
    cpu.linear_fwd(&xr, &wr, None, &mut want, m, k, n);
    let shape = GemmShape {
        m,
        n,
        k,
        trans_a: false,
        trans_b: true,
    };
    let (xb, wb) = (be.upload(&to_bf16(&x))?, be.upload(&to_bf16(&w))?);
    let mut y = be.upload(&bf16_nan(m * n))?;
    be.gemm(shape, &xb, &wb, &mut y, 1.0, 0.0, GemmMath::F32)?;
    rep.check(
        "gemm x·wᵀ 512x768->2304 (bf16 out)",
        "bf16",
        &from_bf16(&be.download(&y)?),
        &want,
        TOL_BF16,
    );
    let mut y32 = be.upload(&nan_vec(m * n))?;
    be.gemm(shape, &xb, &wb, &mut y32, 1.0, 0.0, GemmMath::F32)?;
    rep.check(
        "gemm x·wᵀ 512x768->2304 (f32 out)",
        "bf16",
        &be.download(&y32)?,
        &want,
        TOL_BF16,
    );
    // dW-style: dyᵀ·x accumulated into an f32 master gradient.
    let dy = rand_vec(r, m * n, 1.0);
    let acc = rand_vec(r, n * k, 1.0);
    let mut want_dw = acc.clone();
    let mut dx = vec![0.0; m * k];
    let mut db = vec![0.0; n];
    cpu.linear_bwd(
        &round_bf16(&dy),
        &xr,
        &wr,
        Some(&mut dx),
        Some(&mut want_dw),
        Some(&mut db),
        m,
        k,
        n,
    );
    let mut dw = be.upload(&acc)?;
    let dyb = be.upload(&to_bf16(&dy))?;
    be.gemm(
        GemmShape {
            m: n,
            n: k,
            k: m,
            trans_a: true,
            trans_b: false,
        },
        &dyb,
        &xb,
        &mut dw,
        1.0,
        1.0,
        GemmMath::F32,
    )?;
    rep.check(
        "gemm dyᵀ·x += f32 master (dW)",
        "bf16",
        &be.download(&dw)?,
        &want_dw,
        TOL_BF16,
    );
    let mut dxg = be.upload(&bf16_nan(m * k))?;
    be.gemm(
        GemmShape {
            m,
            n: k,
            k: n,
            trans_a: false,
            trans_b: false,
        },
        &dyb,
        &wb,
        &mut dxg,
        1.0,
        0.0,
        GemmMath::F32,
    )?;
    rep.check(
        "gemm dy·w (dX)",
        "bf16",
        &from_bf16(&be.download(&dxg)?),
        &dx,
        TOL_BF16,
    );
    // TF32 on the unrounded f32 inputs.
    let mut want32 = vec![0.0; m * n];
    cpu.linear_fwd(&x, &w, None, &mut want32, m, k, n);
    let (xf, wf) = (be.upload(&x)?, be.upload(&w)?);
    let mut yt = be.upload(&nan_vec(m * n))?;
    be.gemm(shape, &xf, &wf, &mut yt, 1.0, 0.0, GemmMath::Tf32)?;
    rep.check(
        "gemm x·wᵀ 512x768->2304",
        "tf32",
        &be.download(&yt)?,
        &want32,
        TOL_BF16,
    );
    let mut yf = be.upload(&nan_vec(m * n))?;
    be.gemm(shape, &xf, &wf, &mut yf, 1.0, 0.0, GemmMath::F32)?;
    rep.check(
        "gemm x·wᵀ 512x768->2304",
        "f32",
        &be.download(&yf)?,
        &want32,
        TOL_F32,
    );
    Ok(())
}

fn attention_bf16(be: &CudaBackend, rep: &mut Report, r: &mut ChaCha8Rng) -> Result<(), CudaError> {
    let cpu = CpuBackend;
    for (label, d) in [
        (
            "attention temporal 392x5 h12",
            AttnDims {
                seqs: 392,
                len: 5,
                heads: 12,
                head_dim: 64,
            },
        ),
        (
            "attention spatial 8x197 h12",
            AttnDims {
                seqs: 8,
                len: 197,
                heads: 12,
                head_dim: 64,
            },
        ),
    ] {
        let c = d.heads * d.head_dim;
        let (qkv, dout) = (
            rand_vec(r, 3 * d.seqs * d.len * c, 2.0),
            rand_vec(r, d.seqs * d.len * c, 1.0),
        );
        let (qr, dr) = (round_bf16(&qkv), round_bf16(&dout));
        let mut out = vec![0.0; d.seqs * d.len * c];
        let mut probs = vec![0.0; d.seqs * d.heads * d.len * d.len];
        cpu.attention_fwd(&qr, &mut out, &mut probs, d);
        let mut dqkv = vec![0.0; 3 * d.seqs * d.len * c];
        cpu.attention_bwd(&dr, &qr, &probs, &mut dqkv, d);
        let shape = AttentionShape {
            seqs: d.seqs,
            len: d.len,
            heads: d.heads,
            head_dim: d.head_dim,
        };
        let qb = be.upload(&to_bf16(&qkv))?;
        let mut ob = be.upload(&bf16_nan(out.len()))?;
        let mut lse = be.upload(&nan_vec(d.seqs * d.heads * d.len))?;
        be.attention_fwd(shape, &qb, &mut ob, &mut lse, shape.scale())?;
        rep.check(
            &format!("{label}: out"),
            "bf16",
            &from_bf16(&be.download(&ob)?),
            &out,
            TOL_BF16,
        );
        // The backward consumes the bf16 forward output, as training would.
        let db = be.upload(&to_bf16(&dout))?;
        let mut delta = be.zeros::<f32>(d.seqs * d.heads * d.len)?;
        let mut dq = be.upload(&bf16_nan(dqkv.len()))?;
        be.attention_bwd(
            shape,
            &qb,
            &ob,
            &db,
            &lse,
            &mut delta,
            &mut dq,
            shape.scale(),
        )?;
        rep.check(
            &format!("{label}: dqkv"),
            "bf16",
            &from_bf16(&be.download(&dq)?),
            &dqkv,
            TOL_BF16,
        );
    }
    Ok(())
}

fn ln_gelu_bf16(be: &CudaBackend, rep: &mut Report, r: &mut ChaCha8Rng) -> Result<(), CudaError> {
    let cpu = CpuBackend;
    let (rows, cols) = (1024, 768);
    let x: Vec<f32> = rand_vec(r, rows * cols, 2.0)
        .iter()
        .map(|v| v + 0.5)
        .collect();
    let (g, b, dy) = (
        rand_vec(r, cols, 1.0),
        rand_vec(r, cols, 1.0),
        rand_vec(r, rows * cols, 1.0),
    );
    let (xr, dyr) = (round_bf16(&x), round_bf16(&dy));
    let (mut y, mut mean, mut rstd) = (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
    cpu.layernorm_fwd(&xr, &g, &b, &mut y, &mut mean, &mut rstd, rows, cols, 1e-6);
    let (mut dx, mut dg, mut dbt) = (vec![0.0; rows * cols], vec![0.0; cols], vec![0.0; cols]);
    cpu.layernorm_bwd(
        &dyr, &xr, &g, &mean, &rstd, &mut dx, &mut dg, &mut dbt, rows, cols,
    );
    let (xb, gb, bb, dyb) = (
        be.upload(&to_bf16(&x))?,
        be.upload(&g)?,
        be.upload(&b)?,
        be.upload(&to_bf16(&dy))?,
    );
    let mut yb = be.upload(&bf16_nan(rows * cols))?;
    let (mut mb, mut rb) = (be.upload(&nan_vec(rows))?, be.upload(&nan_vec(rows))?);
    be.layernorm_fwd(&xb, &gb, &bb, &mut yb, &mut mb, &mut rb, rows, cols, 1e-6)?;
    rep.check(
        "layernorm 1024x768: y",
        "bf16",
        &from_bf16(&be.download(&yb)?),
        &y,
        TOL_BF16,
    );
    let mut dxb = be.upload(&bf16_nan(rows * cols))?;
    let (mut dgb, mut dbb) = (be.zeros::<f32>(cols)?, be.zeros::<f32>(cols)?);
    be.layernorm_bwd(
        &xb, &dyb, &gb, &mb, &rb, &mut dxb, &mut dgb, &mut dbb, rows, cols,
    )?;
    rep.check(
        "layernorm 1024x768: dx",
        "bf16",
        &from_bf16(&be.download(&dxb)?),
        &dx,
        TOL_BF16,
    );
    rep.check(
        "layernorm 1024x768: dgamma",
        "bf16",
        &be.download(&dgb)?,
        &dg,
        TOL_BF16,
    );
    rep.check(
        "layernorm 1024x768: dbeta",
        "bf16",
        &be.download(&dbb)?,
        &dbt,
        TOL_BF16,
    );

    let n = 1 << 20;
    let (x, dy) = (rand_vec(r, n, 4.0), rand_vec(r, n, 1.0));
    let (xr, dyr) = (round_bf16(&x), round_bf16(&dy));
    let (mut y, mut dx) = (vec![0.0; n], vec![0.0; n]);
    cpu.gelu_fwd(&xr, &mut y, n);
    cpu.gelu_bwd(&dyr, &xr, &mut dx, n);
    let (xb, dyb) = (be.upload(&to_bf16(&x))?, be.upload(&to_bf16(&dy))?);
    let mut yb = be.upload(&bf16_nan(n))?;
    be.gelu_fwd(&xb, &mut yb, n)?;
    rep.check(
        "gelu 1M: y",
        "bf16",
        &from_bf16(&be.download(&yb)?),
        &y,
        TOL_BF16,
    );
    let mut dxb = be.upload(&bf16_nan(n))?;
    be.gelu_bwd(&xb, &dyb, &mut dxb, n)?;
    rep.check(
        "gelu 1M: dx",
        "bf16",
        &from_bf16(&be.download(&dxb)?),
        &dx,
        TOL_BF16,
    );
    Ok(())
}

fn patch(be: &CudaBackend, rep: &mut Report, r: &mut ChaCha8Rng) -> Result<(), CudaError> {
    let geom = PatchGeom {
        batch: 2,
        in_ch: 3,
        frames: 4,
        height: 224,
        width: 224,
        patch: 16,
        dim: 768,
    };
    let x = rand_vec(r, geom.input_len(), 1.0);
    let mut want = vec![0.0; geom.rows() * geom.k()];
    CpuBackend.patchify(&x, &mut want, 2, 3, 4, 224, 224, 16);
    let xb = be.upload(&x)?;
    let mut cols = be.upload(&bf16_nan(want.len()))?;
    be.patch_unfold(geom, &xb, &mut cols)?;
    rep.check(
        "patch_unfold 2x3x4x224x224",
        "bf16",
        &from_bf16(&be.download(&cols)?),
        &round_bf16(&want),
        0.0,
    );
    // fold is the exact inverse of unfold for non-overlapping patches that tile the frame.
    let cols32 = be.upload(&want)?;
    let mut back = be.upload(&nan_vec(x.len()))?;
    be.patch_fold(geom, &cols32, &mut back)?;
    rep.check(
        "patch_fold(unfold(x)) == x",
        "f32",
        &be.download(&back)?,
        &x,
        0.0,
    );
    // Composite embed: unfold + GEMM + bias vs the CPU Linear on the CPU patchify.
    let w = rand_vec(r, geom.dim * geom.k(), 0.05);
    let bias = rand_vec(r, geom.dim, 0.1);
    let mut want_e = vec![0.0; geom.rows() * geom.dim];
    CpuBackend.linear_fwd(
        &want,
        &w,
        Some(&bias),
        &mut want_e,
        geom.rows(),
        geom.k(),
        geom.dim,
    );
    let (wb, bb) = (be.upload(&w)?, be.upload(&bias)?);
    let mut scratch = be.zeros::<f32>(want.len())?;
    let mut e = be.upload(&nan_vec(want_e.len()))?;
    be.patch_embed_fwd(geom, &xb, &wb, &bb, &mut scratch, &mut e, GemmMath::F32)?;
    rep.check(
        "patch_embed_fwd (unfold+gemm+bias)",
        "f32",
        &be.download(&e)?,
        &want_e,
        TOL_F32,
    );
    Ok(())
}

fn blend(be: &CudaBackend, rep: &mut Report, r: &mut ChaCha8Rng) -> Result<(), CudaError> {
    let (n, hw, c) = (8, 256 * 256, 3);
    let src: Vec<f32> = (0..n * hw * c).map(|_| r.gen_range(0.0..255.0)).collect();
    let tgt: Vec<f32> = (0..n * hw * c).map(|_| r.gen_range(0.0..255.0)).collect();
    let mask: Vec<f32> = (0..n * hw).map(|_| r.gen_range(0.0..1.0)).collect();
    let ratio: Vec<f32> = (0..n).map(|_| r.gen_range(0.25..1.0)).collect();
    let mut want = vec![0.0; n * hw * c];
    let mut want_b = vec![0.0; n * hw];
    for p in 0..n * hw {
        let (m, a) = (mask[p], ratio[p / hw] * mask[p]);
        for ch in 0..c {
            want[p * c + ch] = a * src[p * c + ch] + (1.0 - a) * tgt[p * c + ch];
        }
        want_b[p] = 4.0 * m * (1.0 - m);
    }
    let (sb, tb, mb, rb) = (
        be.upload(&src)?,
        be.upload(&tgt)?,
        be.upload(&mask)?,
        be.upload(&ratio)?,
    );
    let (mut out, mut bnd) = (
        be.upload(&nan_vec(want.len()))?,
        be.upload(&nan_vec(want_b.len()))?,
    );
    be.blend_fwd(&sb, &tb, &mb, &rb, &mut out, &mut bnd, n, hw, c)?;
    rep.check(
        "blend_fwd 8x256x256x3: fake",
        "f32",
        &be.download(&out)?,
        &want,
        TOL_F32,
    );
    rep.check(
        "blend_fwd 8x256x256x3: boundary",
        "f32",
        &be.download(&bnd)?,
        &want_b,
        TOL_F32,
    );
    let (go, gb) = (rand_vec(r, want.len(), 1.0), rand_vec(r, want_b.len(), 1.0));
    let (mut ws, mut wt, mut wm) = (
        vec![0.0; want.len()],
        vec![0.0; want.len()],
        vec![0.0; want_b.len()],
    );
    for p in 0..n * hw {
        let (m, rr) = (mask[p], ratio[p / hw]);
        let mut gm = 0.0;
        for ch in 0..c {
            let i = p * c + ch;
            ws[i] = rr * m * go[i];
            wt[i] = (1.0 - rr * m) * go[i];
            gm += (src[i] - tgt[i]) * go[i];
        }
        wm[p] = rr * gm + 4.0 * (1.0 - 2.0 * m) * gb[p];
    }
    let (gob, gbb) = (be.upload(&go)?, be.upload(&gb)?);
    let (mut gs, mut gt, mut gmk) = (
        be.upload(&nan_vec(want.len()))?,
        be.upload(&nan_vec(want.len()))?,
        be.upload(&nan_vec(want_b.len()))?,
    );
    be.blend_bwd(
        &sb, &tb, &mb, &rb, &gob, &gbb, &mut gs, &mut gt, &mut gmk, n, hw, c,
    )?;
    rep.check(
        "blend_bwd: d source",
        "f32",
        &be.download(&gs)?,
        &ws,
        TOL_F32,
    );
    rep.check(
        "blend_bwd: d target",
        "f32",
        &be.download(&gt)?,
        &wt,
        TOL_F32,
    );
    rep.check(
        "blend_bwd: d mask",
        "f32",
        &be.download(&gmk)?,
        &wm,
        TOL_F32,
    );
    let s8: Vec<u8> = src.iter().map(|&v| v as u8).collect();
    let t8: Vec<u8> = tgt.iter().map(|&v| v as u8).collect();
    let want8: Vec<f32> = (0..n * hw * c)
        .map(|i| {
            let a = ratio[i / c / hw] * mask[i / c];
            (a * s8[i] as f32 + (1.0 - a) * t8[i] as f32)
                .clamp(0.0, 255.0)
                .trunc()
        })
        .collect();
    let (s8b, t8b) = (be.upload(&s8)?, be.upload(&t8)?);
    let mut o8 = be.zeros::<u8>(want8.len())?;
    be.blend_fwd_u8(&s8b, &t8b, &mb, &rb, &mut o8, &mut bnd, n, hw, c)?;
    let got8: Vec<f32> = be.download(&o8)?.iter().map(|&v| v as f32).collect();
    // Truncation can flip by one level where f32 rounding straddles an integer: allow ≤ 1e-3 rel.
    rep.check("blend_fwd_u8 (truncating cast)", "u8", &got8, &want8, 1e-3);
    Ok(())
}

fn losses(be: &CudaBackend, rep: &mut Report, r: &mut ChaCha8Rng) -> Result<(), CudaError> {
    let n = 4096;
    let x = rand_vec(r, n, 6.0);
    let y: Vec<f32> = (0..n).map(|_| r.gen_range(0.0..1.0)).collect();
    let (xb, yb) = (be.upload(&x)?, be.upload(&y)?);
    let (mut loss, mut grad) = (be.upload(&[f32::NAN])?, be.upload(&nan_vec(n))?);
    be.bce_logits(&xb, &yb, n, &mut loss, &mut grad)?;
    let want_l = x
        .iter()
        .zip(&y)
        .map(|(&v, &t)| {
            let v = v as f64;
            v.max(0.0) - v * t as f64 + (-v.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / n as f64;
    let want_g: Vec<f32> = x
        .iter()
        .zip(&y)
        .map(|(&v, &t)| ((1.0 / (1.0 + (-v as f64).exp()) - t as f64) / n as f64) as f32)
        .collect();
    rep.check(
        "bce_logits 4096: loss",
        "f32",
        &be.download(&loss)?,
        &[want_l as f32],
        TOL_F32,
    );
    rep.check(
        "bce_logits 4096: grad",
        "f32",
        &be.download(&grad)?,
        &want_g,
        TOL_F32,
    );
    be.mse(&xb, &yb, n, &mut loss, &mut grad)?;
    let want_l = x
        .iter()
        .zip(&y)
        .map(|(&a, &b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / n as f64;
    let want_g: Vec<f32> = x
        .iter()
        .zip(&y)
        .map(|(&a, &b)| 2.0 * (a - b) / n as f32)
        .collect();
    rep.check(
        "mse 4096: loss",
        "f32",
        &be.download(&loss)?,
        &[want_l as f32],
        TOL_F32,
    );
    rep.check(
        "mse 4096: grad",
        "f32",
        &be.download(&grad)?,
        &want_g,
        TOL_F32,
    );
    let (rows, cols) = (300, 197);
    let x = rand_vec(r, rows * cols, 8.0);
    let g = rand_vec(r, rows * cols, 1.0);
    let mut want_y = vec![0.0; rows * cols];
    let mut want_dx = vec![0.0; rows * cols];
    for i in 0..rows {
        let row = &x[i * cols..(i + 1) * cols];
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let s: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
        for j in 0..cols {
            want_y[i * cols + j] = (((row[j] - m) as f64).exp() / s) as f32;
        }
        let dot: f64 = (0..cols)
            .map(|j| (g[i * cols + j] * want_y[i * cols + j]) as f64)
            .sum();
        for j in 0..cols {
            want_dx[i * cols + j] =
                (want_y[i * cols + j] as f64 * (g[i * cols + j] as f64 - dot)) as f32;
        }
    }
    let xb = be.upload(&x)?;
    let mut yb = be.upload(&nan_vec(rows * cols))?;
    be.softmax_fwd(&xb, &mut yb, rows, cols)?;
    rep.check(
        "softmax 300x197: y",
        "f32",
        &be.download(&yb)?,
        &want_y,
        TOL_F32,
    );
    let gb = be.upload(&g)?;
    let mut dxb = be.upload(&nan_vec(rows * cols))?;
    be.softmax_bwd(&yb, &gb, &mut dxb, rows, cols)?;
    rep.check(
        "softmax 300x197: dx",
        "f32",
        &be.download(&dxb)?,
        &want_dx,
        TOL_F32,
    );
    Ok(())
}

fn elementwise(be: &CudaBackend, rep: &mut Report, r: &mut ChaCha8Rng) -> Result<(), CudaError> {
    // Token merge as in spec §2.2.2 step 3, on the native API: CLS from spatial row 0 of each of
    // T frames, τ from temporal row T of each of N locations.
    let (b, t, n, c) = (3usize, 4usize, 196usize, 768usize);
    let l = 2 + n * t;
    let tokens = rand_vec(r, b * l * c, 1.0);
    let v = rand_vec(r, b * t * (n + 1) * c, 1.0);
    let base_b = be.upload(&tokens)?;
    let vb = be.upload(&v)?;
    let mut out = be.upload(&nan_vec(b * c))?;
    let shape = MergeShape {
        batch: b,
        groups: t,
        seq_len: n + 1,
        pos: 0,
        cols: c,
        base_stride: l * c,
        out_stride: c,
    };
    be.token_merge_fwd(shape, &base_b, &vb, &mut out)?;
    let mut want = vec![0.0; b * c];
    for bb in 0..b {
        for i in 0..c {
            let s: f32 = (0..t).map(|tt| v[((bb * t + tt) * (n + 1)) * c + i]).sum();
            want[bb * c + i] = tokens[bb * l * c + i] + s / t as f32;
        }
    }
    rep.check(
        "token_merge_fwd (CLS over frames)",
        "f32",
        &be.download(&out)?,
        &want,
        TOL_F32,
    );
    let g = rand_vec(r, b * c, 1.0);
    let gb = be.upload(&g)?;
    let mut gsrc = be.zeros::<f32>(v.len())?;
    be.token_merge_bwd(shape, &gb, &mut gsrc)?;
    let mut want = vec![0.0; v.len()];
    for bb in 0..b {
        for tt in 0..t {
            for i in 0..c {
                want[((bb * t + tt) * (n + 1)) * c + i] = g[bb * c + i] / t as f32;
            }
        }
    }
    rep.check(
        "token_merge_bwd",
        "f32",
        &be.download(&gsrc)?,
        &want,
        TOL_F32,
    );

    let (rows, cols, per) = (1024usize, 768usize, 4usize);
    let a = rand_vec(r, rows * cols, 1.0);
    let x = rand_vec(r, rows * cols, 1.0);
    let scale: Vec<f32> = (0..rows / per)
        .map(|i| if i % 4 == 1 { 0.0 } else { 1.0 / 0.8 })
        .collect();
    let (ab, xb, sb) = (be.upload(&a)?, be.upload(&x)?, be.upload(&scale)?);
    let mut o = be.upload(&nan_vec(rows * cols))?;
    be.drop_path(&xb, &sb, &mut o, rows, cols, per)?;
    let want: Vec<f32> = (0..rows * cols)
        .map(|i| x[i] * scale[i / cols / per])
        .collect();
    rep.check(
        "drop_path (per group of 4 rows)",
        "f32",
        &be.download(&o)?,
        &want,
        TOL_F32,
    );
    be.residual_drop_path(&ab, &xb, &sb, &mut o, rows, cols, per)?;
    let want: Vec<f32> = (0..rows * cols)
        .map(|i| a[i] + x[i] * scale[i / cols / per])
        .collect();
    rep.check(
        "residual_drop_path",
        "f32",
        &be.download(&o)?,
        &want,
        TOL_F32,
    );
    let xh = to_bf16(&x);
    let xhb = be.upload(&xh)?;
    let mut yh = be.upload(&bf16_nan(rows * cols))?;
    let ahb = be.upload(&to_bf16(&a))?;
    be.residual_drop_path(&ahb, &xhb, &sb, &mut yh, rows, cols, per)?;
    let want: Vec<f32> = (0..rows * cols)
        .map(|i| round_bf16(&[a[i]])[0] + from_bf16(&[xh[i]])[0] * scale[i / cols / per])
        .collect();
    rep.check(
        "residual_drop_path",
        "bf16",
        &from_bf16(&be.download(&yh)?),
        &want,
        TOL_BF16,
    );
    let mut cast = be.upload(&bf16_nan(rows * cols))?;
    be.cast_to_bf16(&xb, &mut cast, rows * cols)?;
    rep.check(
        "cast f32->bf16 (round to nearest even)",
        "bf16",
        &from_bf16(&be.download(&cast)?),
        &round_bf16(&x),
        0.0,
    );
    let mut back = be.upload(&nan_vec(rows * cols))?;
    be.cast_to_f32(&cast, &mut back, rows * cols)?;
    rep.check(
        "cast bf16->f32",
        "f32",
        &be.download(&back)?,
        &round_bf16(&x),
        0.0,
    );
    let bias = rand_vec(r, cols, 1.0);
    let mut xbias = be.upload(&x)?;
    be.bias_add(&mut xbias, &be.upload(&bias)?, rows, cols)?;
    let want: Vec<f32> = (0..rows * cols).map(|i| x[i] + bias[i % cols]).collect();
    rep.check("bias_add", "f32", &be.download(&xbias)?, &want, TOL_F32);
    let acc = rand_vec(r, cols, 1.0);
    let mut cs = be.upload(&acc)?;
    be.col_sum_accumulate(&xb, rows, cols, &mut cs)?;
    let want: Vec<f32> = (0..cols)
        .map(|j| acc[j] + (0..rows).map(|i| x[i * cols + j]).sum::<f32>())
        .collect();
    rep.check(
        "col_sum_accumulate (bias grad)",
        "f32",
        &be.download(&cs)?,
        &want,
        TOL_F32,
    );
    Ok(())
}

fn sam(be: &CudaBackend, rep: &mut Report, r: &mut ChaCha8Rng) -> Result<(), CudaError> {
    let n = 1 << 20;
    let (w, g, g2) = (
        rand_vec(r, n, 1.0),
        rand_vec(r, n, 1e-2),
        rand_vec(r, n, 1e-2),
    );
    let (wb, gb) = (be.upload(&w)?, be.upload(&g)?);
    let mut total = be.zeros::<f32>(1)?;
    be.sq_norm_accumulate(&gb, n, &mut total)?;
    let ss: f64 = g.iter().map(|&v| (v as f64).powi(2)).sum();
    rep.check(
        "sq_norm_accumulate 1M",
        "f32",
        &be.download(&total)?,
        &[ss as f32],
        TOL_F32,
    );
    let rho = 0.05f32;
    let scale = rho as f64 / (ss.sqrt() + 1e-12);
    let mut wp = be.upload(&w)?;
    let mut e = be.upload(&nan_vec(n))?;
    be.sam_perturb(&mut wp, &gb, &mut e, n, &total, rho)?;
    let want_w: Vec<f32> = w
        .iter()
        .zip(&g)
        .map(|(&a, &b)| (a as f64 + scale * b as f64) as f32)
        .collect();
    rep.check(
        "sam_perturb: w + rho·g/||g||",
        "f32",
        &be.download(&wp)?,
        &want_w,
        TOL_F32,
    );
    // Fused second step: restore w then Adam with the pass-2 gradient.
    let m0 = rand_vec(r, n, 1e-3);
    let v0: Vec<f32> = rand_vec(r, n, 1e-5).iter().map(|v| v.abs()).collect();
    let hp = AdamHyper {
        lr: 5e-5,
        beta1: 0.9,
        beta2: 0.995,
        eps: 1e-8,
        weight_decay: 1e-4,
        step: 3,
    };
    let (mut mb, mut vb) = (be.upload(&m0)?, be.upload(&v0)?);
    be.adam_step(&mut wp, &be.upload(&g2)?, &mut mb, &mut vb, Some(&e), n, hp)?;
    let (mut wr, mut mr, mut vr) = (w.clone(), m0.clone(), v0.clone());
    let h = kernels::AdamParams {
        lr: hp.lr,
        beta1: hp.beta1,
        beta2: hp.beta2,
        eps: hp.eps,
        weight_decay: hp.weight_decay,
        step: 3,
    };
    CpuBackend.adam_step(&mut wr, &g2, &mut mr, &mut vr, n, h);
    rep.check(
        "adam_step with SAM restore: w",
        "f32",
        &be.download(&wp)?,
        &wr,
        TOL_F32,
    );
    rep.check(
        "adam_step with SAM restore: m",
        "f32",
        &be.download(&mb)?,
        &mr,
        TOL_F32,
    );
    rep.check(
        "adam_step with SAM restore: v",
        "f32",
        &be.download(&vb)?,
        &vr,
        TOL_F32,
    );
    let _ = wb;
    Ok(())
}
