//! Every `Backend` op run through the same generic code on `CpuBackend` and `CudaBackend` with
//! identical random inputs. Overwritten outputs start as NaN on both sides; accumulated outputs
//! (parameter gradients, `+=` destinations) start from the same random values.

use kernels::cuda::{CudaBackend, GemmMath};
use kernels::{AdamParams, AttnDims, Backend, Conv3dDims, CpuBackend, EmbedDims, TempTokenSource};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::report::{nan_vec, rand_vec, Report, TOL_F32};

fn nan<B: Backend>(be: &B, n: usize) -> B::Buf {
    be.upload(&nan_vec(n))
}

fn compare(rep: &mut Report, op: &str, names: &[&str], cpu: Vec<Vec<f32>>, gpu: Vec<Vec<f32>>) {
    for ((name, c), g) in names.iter().zip(&cpu).zip(&gpu) {
        rep.check(&format!("{op}: {name}"), "f32", g, c, TOL_F32);
    }
}

macro_rules! parity {
    ($rep:expr, $gpu:expr, $op:expr, [$($name:expr),*], $f:ident $(, $arg:expr)*) => {{
        let cpu_out = $f(&CpuBackend, $($arg),*);
        let gpu_out = $f($gpu, $($arg),*);
        compare($rep, $op, &[$($name),*], cpu_out, gpu_out);
    }};
}

fn linear<B: Backend>(
    be: &B,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    dy: &[f32],
    acc: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<Vec<f32>> {
    let (xb, wb, bb, dyb) = (be.upload(x), be.upload(w), be.upload(b), be.upload(dy));
    let mut y = nan(be, m * n);
    be.linear_fwd(&xb, &wb, Some(&bb), &mut y, m, k, n);
    let mut dx = nan(be, m * k);
    let mut dw = be.upload(&acc[..n * k]);
    let mut db = be.upload(&acc[..n]);
    be.linear_bwd(
        &dyb,
        &xb,
        &wb,
        Some(&mut dx),
        Some(&mut dw),
        Some(&mut db),
        m,
        k,
        n,
    );
    vec![
        be.download(&y),
        be.download(&dx),
        be.download(&dw),
        be.download(&db),
    ]
}

fn layernorm<B: Backend>(
    be: &B,
    x: &[f32],
    g: &[f32],
    b: &[f32],
    dy: &[f32],
    acc: &[f32],
    rows: usize,
    cols: usize,
) -> Vec<Vec<f32>> {
    let (xb, gb, bb, dyb) = (be.upload(x), be.upload(g), be.upload(b), be.upload(dy));
    let (mut y, mut mean, mut rstd) = (nan(be, rows * cols), nan(be, rows), nan(be, rows));
    be.layernorm_fwd(
        &xb, &gb, &bb, &mut y, &mut mean, &mut rstd, rows, cols, 1e-6,
    );
    let mut dx = nan(be, rows * cols);
    let (mut dg, mut dbeta) = (be.upload(&acc[..cols]), be.upload(&acc[cols..2 * cols]));
    be.layernorm_bwd(
        &dyb, &xb, &gb, &mean, &rstd, &mut dx, &mut dg, &mut dbeta, rows, cols,
    );
    vec![
        be.download(&y),
        be.download(&mean),
        be.download(&rstd),
        be.download(&dx),
        be.download(&dg),
        be.download(&dbeta),
    ]
}

fn gelu<B: Backend>(be: &B, x: &[f32], dy: &[f32]) -> Vec<Vec<f32>> {
    let n = x.len();
    let (xb, dyb) = (be.upload(x), be.upload(dy));
    let mut y = nan(be, n);
    be.gelu_fwd(&xb, &mut y, n);
    let mut dx = nan(be, n);
    be.gelu_bwd(&dyb, &xb, &mut dx, n);
    vec![be.download(&y), be.download(&dx)]
}

fn attention<B: Backend>(be: &B, qkv: &[f32], dout: &[f32], d: AttnDims) -> Vec<Vec<f32>> {
    let c = d.heads * d.head_dim;
    let (qb, db) = (be.upload(qkv), be.upload(dout));
    let mut out = nan(be, d.seqs * d.len * c);
    let mut probs = be.zeros(d.seqs * d.heads * d.len * d.len);
    be.attention_fwd(&qb, &mut out, &mut probs, d);
    let mut dqkv = nan(be, 3 * d.seqs * d.len * c);
    be.attention_bwd(&db, &qb, &probs, &mut dqkv, d);
    vec![be.download(&out), be.download(&dqkv)]
}

fn patchify<B: Backend>(
    be: &B,
    x: &[f32],
    b: usize,
    t: usize,
    hw: usize,
    p: usize,
) -> Vec<Vec<f32>> {
    let xb = be.upload(x);
    let rows = b * t * (hw / p) * (hw / p);
    let mut cols = nan(be, rows * 3 * p * p);
    be.patchify(&xb, &mut cols, b, 3, t, hw, hw, p);
    vec![be.download(&cols)]
}

fn embed<B: Backend>(
    be: &B,
    inputs: &[Vec<f32>],
    d: EmbedDims,
    src: TempTokenSource,
) -> Vec<Vec<f32>> {
    let [e, cls, pos, time, temp, dtok, acc] = inputs else {
        unreachable!()
    };
    let (eb, cb, pb, tb, tpb, dtb) = (
        be.upload(e),
        be.upload(cls),
        be.upload(pos),
        be.upload(time),
        be.upload(temp),
        be.upload(dtok),
    );
    let mut tok = nan(be, d.batch * d.tokens() * d.dim);
    be.embed_tokens_fwd(&eb, &cb, &pb, &tb, &tpb, &mut tok, d, src);
    let mut de = nan(be, e.len());
    let c = d.dim;
    let mut dcls = be.upload(&acc[..c]);
    let mut dpos = be.upload(&acc[..pos.len()]);
    let mut dtime = be.upload(&acc[..time.len()]);
    let mut dtemp = be.upload(&acc[c..2 * c]);
    be.embed_tokens_bwd(
        &dtb, &mut de, &mut dcls, &mut dpos, &mut dtime, &mut dtemp, d, src,
    );
    vec![
        be.download(&tok),
        be.download(&de),
        be.download(&dcls),
        be.download(&dpos),
        be.download(&dtime),
        be.download(&dtemp),
    ]
}

fn token_layout<B: Backend>(
    be: &B,
    tok: &[f32],
    r: &[f32],
    v: &[f32],
    acc_tok: &[f32],
    acc_r: &[f32],
    acc_v: &[f32],
    d: EmbedDims,
) -> Vec<Vec<f32>> {
    let (tb, rb, vb) = (be.upload(tok), be.upload(r), be.upload(v));
    let mut tseq = nan(be, r.len());
    be.temporal_gather_fwd(&tb, &mut tseq, d);
    let mut dtok1 = be.upload(acc_tok);
    be.temporal_gather_bwd(&rb, &mut dtok1, d);
    let mut sseq = nan(be, v.len());
    be.spatial_gather_fwd(&tb, &rb, &mut sseq, d);
    let (mut dtok2, mut dr2) = (be.upload(acc_tok), be.upload(acc_r));
    be.spatial_gather_bwd(&vb, &mut dtok2, &mut dr2, d);
    let mut y = nan(be, tok.len());
    be.merge_fwd(&tb, &rb, &vb, &mut y, d);
    let (mut dtok3, mut dr3, mut dv3) = (be.upload(acc_tok), be.upload(acc_r), be.upload(acc_v));
    be.merge_bwd(&tb, &mut dtok3, &mut dr3, &mut dv3, d);
    [tseq, dtok1, sseq, dtok2, dr2, y, dtok3, dr3, dv3]
        .iter()
        .map(|b| be.download(b))
        .collect()
}

fn rows<B: Backend>(
    be: &B,
    src: &[f32],
    idx: &[u32],
    ddst: &[f32],
    acc: &[f32],
    cols: usize,
) -> Vec<Vec<f32>> {
    let sb = be.upload(src);
    let mut dst = nan(be, idx.len() * cols);
    be.gather_rows(&sb, idx, &mut dst, cols);
    let mut dsrc = be.upload(acc);
    be.scatter_add_rows(&be.upload(ddst), idx, &mut dsrc, cols);
    vec![be.download(&dst), be.download(&dsrc)]
}

fn conv3d<B: Backend>(
    be: &B,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    dy: &[f32],
    acc: &[f32],
    d: Conv3dDims,
) -> Vec<Vec<f32>> {
    let (xb, wb, bb, dyb) = (be.upload(x), be.upload(w), be.upload(b), be.upload(dy));
    let mut y = nan(be, dy.len());
    be.conv3d_t_fwd(&xb, &wb, &bb, &mut y, d);
    let mut dx = nan(be, x.len());
    let (mut dw, mut db) = (be.upload(&acc[..w.len()]), be.upload(&acc[..b.len()]));
    be.conv3d_t_bwd(&dyb, &xb, &wb, Some(&mut dx), &mut dw, &mut db, d);
    vec![
        be.download(&y),
        be.download(&dx),
        be.download(&dw),
        be.download(&db),
    ]
}

fn batchnorm<B: Backend>(
    be: &B,
    x: &[f32],
    g: &[f32],
    b: &[f32],
    rm: &[f32],
    rv: &[f32],
    dy: &[f32],
    acc: &[f32],
    rows: usize,
    ch: usize,
    train: bool,
) -> Vec<Vec<f32>> {
    let (xb, gb, bb, dyb) = (be.upload(x), be.upload(g), be.upload(b), be.upload(dy));
    let (mut rmb, mut rvb) = (be.upload(rm), be.upload(rv));
    let (mut y, mut mean, mut rstd) = (nan(be, rows * ch), nan(be, ch), nan(be, ch));
    be.batchnorm_fwd(
        &xb, &gb, &bb, &mut rmb, &mut rvb, &mut y, &mut mean, &mut rstd, rows, ch, train, 0.05,
        1e-5,
    );
    let mut dx = nan(be, rows * ch);
    let (mut dg, mut dbeta) = (be.upload(&acc[..ch]), be.upload(&acc[ch..2 * ch]));
    be.batchnorm_bwd(
        &dyb, &xb, &gb, &mean, &rstd, &mut dx, &mut dg, &mut dbeta, rows, ch,
    );
    [y, mean, rstd, rmb, rvb, dx, dg, dbeta]
        .iter()
        .map(|b| be.download(b))
        .collect()
}

fn small_ops<B: Backend>(
    be: &B,
    x: &[f32],
    y0: &[f32],
    m: &[f32],
    scale: &[f32],
    group: usize,
) -> Vec<Vec<f32>> {
    let n = x.len();
    let xb = be.upload(x);
    let mut y = be.upload(y0);
    be.axpy(-0.75, &xb, &mut y, n);
    let mut xm = be.upload(x);
    be.mul_inplace(&mut xm, &be.upload(m), n);
    let mut xs = be.upload(x);
    be.scale_groups(&mut xs, scale, group);
    let ss = be.sum_squares(&xb, n);
    let mut c = nan(be, n);
    be.copy(&xb, &mut c);
    vec![
        be.download(&y),
        be.download(&xm),
        be.download(&xs),
        vec![ss as f32],
        be.download(&c),
    ]
}

fn adam<B: Backend>(be: &B, p: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> Vec<Vec<f32>> {
    let n = p.len();
    let (mut pb, gb, mut mb, mut vb) = (be.upload(p), be.upload(g), be.upload(m), be.upload(v));
    let h = AdamParams {
        lr: 5e-5,
        beta1: 0.9,
        beta2: 0.995,
        eps: 1e-8,
        weight_decay: 1e-4,
        step: 7,
    };
    be.adam_step(&mut pb, &gb, &mut mb, &mut vb, n, h);
    vec![be.download(&pb), be.download(&mb), be.download(&vb)]
}

pub fn run(gpu: &CudaBackend, rep: &mut Report) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b65726e);
    let r = &mut rng;

    let (m, k, n) = (512, 768, 2304);
    let (x, w, b, dy, acc) = (
        rand_vec(r, m * k, 1.0),
        rand_vec(r, n * k, 0.05),
        rand_vec(r, n, 0.1),
        rand_vec(r, m * n, 1.0),
        rand_vec(r, n * k, 1.0),
    );
    parity!(
        rep,
        gpu,
        "linear 512x768->2304",
        ["y", "dx", "dw (+=)", "db (+=)"],
        linear,
        &x,
        &w,
        &b,
        &dy,
        &acc,
        m,
        k,
        n
    );

    let (rows_, cols) = (1024, 768);
    let x: Vec<f32> = rand_vec(r, rows_ * cols, 2.0)
        .iter()
        .map(|v| v + 0.5)
        .collect();
    let (g, bb, dy, acc) = (
        rand_vec(r, cols, 1.0),
        rand_vec(r, cols, 1.0),
        rand_vec(r, rows_ * cols, 1.0),
        rand_vec(r, 2 * cols, 1.0),
    );
    parity!(
        rep,
        gpu,
        "layernorm 1024x768",
        ["y", "mean", "rstd", "dx", "dgamma (+=)", "dbeta (+=)"],
        layernorm,
        &x,
        &g,
        &bb,
        &dy,
        &acc,
        rows_,
        cols
    );

    let (x, dy) = (rand_vec(r, 1 << 20, 4.0), rand_vec(r, 1 << 20, 1.0));
    parity!(rep, gpu, "gelu 1M", ["y", "dx"], gelu, &x, &dy);

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
        (
            "attention tiny 16x17 h4 d16",
            AttnDims {
                seqs: 16,
                len: 17,
                heads: 4,
                head_dim: 16,
            },
        ),
    ] {
        let c = d.heads * d.head_dim;
        let (qkv, dout) = (
            rand_vec(r, 3 * d.seqs * d.len * c, 2.0),
            rand_vec(r, d.seqs * d.len * c, 1.0),
        );
        parity!(rep, gpu, label, ["out", "dqkv"], attention, &qkv, &dout, d);
    }

    reduced_math(r, rep);

    let x = rand_vec(r, 2 * 3 * 4 * 224 * 224, 1.0);
    parity!(
        rep,
        gpu,
        "patchify 2x3x4x224x224 p16",
        ["cols"],
        patchify,
        &x,
        2,
        4,
        224,
        16
    );

    let d = EmbedDims {
        batch: 3,
        frames: 4,
        patches: 196,
        dim: 768,
    };
    let c = d.dim;
    for (label, src) in [
        ("embed_tokens compat", TempTokenSource::Compat),
        ("embed_tokens clean", TempTokenSource::Clean),
    ] {
        let inputs = vec![
            rand_vec(r, d.batch * d.frames * d.patches * c, 1.0),
            rand_vec(r, c, 1.0),
            rand_vec(r, (d.patches + 1) * c, 1.0),
            rand_vec(r, (d.frames + 1) * c, 1.0),
            rand_vec(r, c, 1.0),
            rand_vec(r, d.batch * d.tokens() * c, 1.0),
            rand_vec(r, (d.patches + 1) * c, 1.0),
        ];
        parity!(
            rep,
            gpu,
            label,
            [
                "tokens",
                "de",
                "dcls (+=)",
                "dpos (+=)",
                "dtime (+=)",
                "dtemp (+=)"
            ],
            embed,
            &inputs,
            d,
            src
        );
    }
    let ntok = d.batch * d.tokens() * c;
    let nr = d.batch * d.patches * (d.frames + 1) * c;
    let nv = d.batch * d.frames * (d.patches + 1) * c;
    let (tok, rr, vv) = (
        rand_vec(r, ntok, 1.0),
        rand_vec(r, nr, 1.0),
        rand_vec(r, nv, 1.0),
    );
    let (at, ar, av) = (
        rand_vec(r, ntok, 1.0),
        rand_vec(r, nr, 1.0),
        rand_vec(r, nv, 1.0),
    );
    parity!(
        rep,
        gpu,
        "token layout",
        [
            "temporal_gather",
            "temporal_gather_bwd (+=)",
            "spatial_gather",
            "spatial_gather_bwd dtok (+=)",
            "spatial_gather_bwd dr (+=)",
            "merge",
            "merge_bwd dtok (+=)",
            "merge_bwd dr (+=)",
            "merge_bwd dv (+=)"
        ],
        token_layout,
        &tok,
        &rr,
        &vv,
        &at,
        &ar,
        &av,
        d
    );

    let (src_rows, cols) = (1000, 96);
    let mut idx: Vec<u32> = (0..src_rows as u32).collect();
    idx.shuffle(r);
    idx.truncate(700);
    let (src, ddst, acc) = (
        rand_vec(r, src_rows * cols, 1.0),
        rand_vec(r, 700 * cols, 1.0),
        rand_vec(r, src_rows * cols, 1.0),
    );
    parity!(
        rep,
        gpu,
        "gather/scatter rows 700 of 1000",
        ["gather", "scatter_add (+=)"],
        rows,
        &src,
        &idx,
        &ddst,
        &acc,
        cols
    );

    let cd = Conv3dDims {
        batch: 2,
        frames: 4,
        cells: 196,
        cin: 768,
        cout: 192,
    };
    let rws = cd.batch * cd.frames * cd.cells;
    let (x, w, b, dy, acc) = (
        rand_vec(r, rws * cd.cin, 1.0),
        rand_vec(r, cd.cout * cd.cin * 3, 0.05),
        rand_vec(r, cd.cout, 0.1),
        rand_vec(r, rws * cd.cout, 1.0),
        rand_vec(r, cd.cout * cd.cin * 3, 1.0),
    );
    parity!(
        rep,
        gpu,
        "conv3d_t 2x4x196 768->192",
        ["y", "dx", "dw (+=)", "db (+=)"],
        conv3d,
        &x,
        &w,
        &b,
        &dy,
        &acc,
        cd
    );

    let (rows_, ch) = (2 * 4 * 196, 768);
    let x: Vec<f32> = rand_vec(r, rows_ * ch, 3.0)
        .iter()
        .map(|v| v + 1.0)
        .collect();
    let (g, bb, dy, acc) = (
        rand_vec(r, ch, 1.0),
        rand_vec(r, ch, 1.0),
        rand_vec(r, rows_ * ch, 1.0),
        rand_vec(r, 2 * ch, 1.0),
    );
    let rm = rand_vec(r, ch, 0.5);
    let rv: Vec<f32> = rand_vec(r, ch, 0.5).iter().map(|v| v + 1.0).collect();
    parity!(
        rep,
        gpu,
        "batchnorm train 1568x768",
        [
            "y",
            "mean",
            "rstd",
            "running_mean",
            "running_var",
            "dx",
            "dgamma (+=)",
            "dbeta (+=)"
        ],
        batchnorm,
        &x,
        &g,
        &bb,
        &rm,
        &rv,
        &dy,
        &acc,
        rows_,
        ch,
        true
    );
    parity!(
        rep,
        gpu,
        "batchnorm eval 1568x768",
        [
            "y",
            "mean",
            "rstd",
            "running_mean",
            "running_var",
            "dx",
            "dgamma (+=)",
            "dbeta (+=)"
        ],
        batchnorm,
        &x,
        &g,
        &bb,
        &rm,
        &rv,
        &dy,
        &acc,
        rows_,
        ch,
        false
    );

    let n = 1 << 20;
    let group = 1 << 12;
    let scale: Vec<f32> = (0..n / group)
        .map(|i| if i % 3 == 0 { 0.0 } else { 1.0 / 0.7 })
        .collect();
    let (x, y0, mm) = (
        rand_vec(r, n, 1.0),
        rand_vec(r, n, 1.0),
        rand_vec(r, n, 1.0),
    );
    parity!(
        rep,
        gpu,
        "vector ops 1M",
        ["axpy", "mul_inplace", "scale_groups", "sum_squares", "copy"],
        small_ops,
        &x,
        &y0,
        &mm,
        &scale,
        group
    );

    let p = rand_vec(r, n, 1.0);
    let g = rand_vec(r, n, 1e-2);
    let m0 = rand_vec(r, n, 1e-3);
    let v0: Vec<f32> = rand_vec(r, n, 1e-5).iter().map(|v| v.abs()).collect();
    parity!(
        rep,
        gpu,
        "adam_step 1M",
        ["p", "m", "v"],
        adam,
        &p,
        &g,
        &m0,
        &v0
    );
}

/// The GEMM-backed Backend ops with TF32 or bf16 tensor-core products (a fresh backend per
/// setting): within 1e-2 of the f32 CPU reference, the bound for 8- to 10-bit mantissa products
/// with f32 accumulation.
fn reduced_math(r: &mut ChaCha8Rng, rep: &mut Report) {
    let d = AttnDims {
        seqs: 8,
        len: 197,
        heads: 12,
        head_dim: 64,
    };
    let c = d.heads * d.head_dim;
    let (qkv, dout) = (
        rand_vec(r, 3 * d.seqs * d.len * c, 1.0),
        rand_vec(r, d.seqs * d.len * c, 1.0),
    );
    let (m, k, n) = (512, 768, 2304);
    let (x, w, b, dy, acc) = (
        rand_vec(r, m * k, 1.0),
        rand_vec(r, n * k, 0.05),
        rand_vec(r, n, 0.1),
        rand_vec(r, m * n, 1.0),
        rand_vec(r, n * k, 1.0),
    );
    let cpu_attn = attention(&CpuBackend, &qkv, &dout, d);
    let cpu_lin = linear(&CpuBackend, &x, &w, &b, &dy, &acc, m, k, n);
    for math in [GemmMath::Tf32, GemmMath::Bf16] {
        let mut be = match CudaBackend::new(0) {
            Ok(be) => be,
            Err(e) => {
                rep.fail(&format!("{} backend: {e}", math.name()));
                continue;
            }
        };
        be.set_gemm_math(math);
        let gpu_attn = attention(&be, &qkv, &dout, d);
        let gpu_lin = linear(&be, &x, &w, &b, &dy, &acc, m, k, n);
        for (name, g, c) in [
            ("out", &gpu_attn[0], &cpu_attn[0]),
            ("dqkv", &gpu_attn[1], &cpu_attn[1]),
        ] {
            rep.check(
                &format!("attention spatial 8x197 h12: {name}"),
                math.name(),
                g,
                c,
                1e-2,
            );
        }
        for (i, name) in ["y", "dx", "dw (+=)", "db (+=)"].iter().enumerate() {
            rep.check(
                &format!("linear 512x768->2304: {name}"),
                math.name(),
                &gpu_lin[i],
                &cpu_lin[i],
                1e-2,
            );
        }
        if let Some(e) = be.take_error() {
            rep.fail(&format!("CUDA error with {} math: {e}", math.name()));
        }
    }
}
