//! Finite-difference gradient checks in f64 for every op with a backward, on random shapes.
//! Each check projects the output on a random vector `r` (L = Σ y·r), runs the analytic backward
//! with dy = r and compares with central differences (h = 1e-5). In f64 the truncation error is
//! O(h²·f‴) ≈ 1e-10 and rounding ≈ 1e-11/h ≈ 1e-6·|L| at worst, so 1e-6 relative to the gradient
//! scale (plus 1e-7 absolute) separates real bugs (O(1) errors) from noise.

use kernels::backend::{AttnDims, Conv3dDims, EmbedDims, TempTokenSource};
use kernels::cpu::{attention, batchnorm, conv3d, gelu, layernorm, matmul, tokens};
use kernels::loss::{combined_loss, LossWeights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const H: f64 = 1e-5;

fn randv(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compare analytic gradients `grads[i]` of `L(inputs) = f(inputs)·r` with central differences.
fn check(name: &str, inputs: &[Vec<f64>], grads: &[Vec<f64>], f: &dyn Fn(&[Vec<f64>]) -> f64) {
    for (k, (x, g)) in inputs.iter().zip(grads).enumerate() {
        assert_eq!(x.len(), g.len(), "{name}: grad {k} length");
        let scale = g.iter().fold(1e-3f64, |a, v| a.max(v.abs()));
        for i in 0..x.len() {
            let mut p = inputs.to_vec();
            p[k][i] += H;
            let lp = f(&p);
            p[k][i] -= 2.0 * H;
            let lm = f(&p);
            let num = (lp - lm) / (2.0 * H);
            let err = (num - g[i]).abs();
            assert!(
                err <= 1e-6 * scale + 1e-7,
                "{name}: input {k} elem {i}: analytic {} vs numeric {num}",
                g[i]
            );
        }
    }
}

#[test]
fn linear_grads() {
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (m, k, n) = (
            rng.gen_range(1..6),
            rng.gen_range(1..7),
            rng.gen_range(1..6),
        );
        let ins = vec![
            randv(&mut rng, m * k),
            randv(&mut rng, n * k),
            randv(&mut rng, n),
        ];
        let r = randv(&mut rng, m * n);
        let f = |p: &[Vec<f64>]| {
            let mut y = vec![0.0; m * n];
            matmul::linear_fwd(&p[0], &p[1], Some(&p[2]), &mut y, m, k, n);
            dot(&y, &r)
        };
        let (mut dx, mut dw, mut db) = (vec![0.0; m * k], vec![0.0; n * k], vec![0.0; n]);
        matmul::linear_bwd(
            &r,
            &ins[0],
            &ins[1],
            Some(&mut dx),
            Some(&mut dw),
            Some(&mut db),
            m,
            k,
            n,
        );
        check("linear", &ins, &[dx, dw, db], &f);
    }
}

#[test]
fn layernorm_grads() {
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (rows, cols) = (rng.gen_range(1..5), rng.gen_range(2..9));
        let ins = vec![
            randv(&mut rng, rows * cols),
            randv(&mut rng, cols),
            randv(&mut rng, cols),
        ];
        let r = randv(&mut rng, rows * cols);
        let f = |p: &[Vec<f64>]| {
            let (mut y, mut mu, mut rs) =
                (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
            layernorm::forward(
                &p[0], &p[1], &p[2], &mut y, &mut mu, &mut rs, rows, cols, 1e-6,
            );
            dot(&y, &r)
        };
        let (mut y, mut mu, mut rs) = (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
        layernorm::forward(
            &ins[0], &ins[1], &ins[2], &mut y, &mut mu, &mut rs, rows, cols, 1e-6,
        );
        let (mut dx, mut dg, mut db) = (vec![0.0; rows * cols], vec![0.0; cols], vec![0.0; cols]);
        layernorm::backward(
            &r, &ins[0], &ins[1], &mu, &rs, &mut dx, &mut dg, &mut db, rows, cols,
        );
        check("layernorm", &ins, &[dx, dg, db], &f);
    }
}

#[test]
fn gelu_grads() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 37;
    let ins = vec![(0..n)
        .map(|_| rng.gen_range(-4.0..4.0))
        .collect::<Vec<f64>>()];
    let r = randv(&mut rng, n);
    let f = |p: &[Vec<f64>]| {
        let mut y = vec![0.0; n];
        gelu::forward(&p[0], &mut y, n);
        dot(&y, &r)
    };
    let mut dx = vec![0.0; n];
    gelu::backward(&r, &ins[0], &mut dx, n);
    check("gelu", &ins, &[dx], &f);
}

#[test]
fn attention_grads() {
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = AttnDims {
            seqs: rng.gen_range(1..4),
            len: rng.gen_range(1..7),
            heads: rng.gen_range(1..3),
            head_dim: rng.gen_range(1..5),
        };
        let c = d.heads * d.head_dim;
        let ins = vec![randv(&mut rng, d.seqs * d.len * 3 * c)];
        let r = randv(&mut rng, d.seqs * d.len * c);
        let f = |p: &[Vec<f64>]| {
            let mut out = vec![0.0; d.seqs * d.len * c];
            let mut probs = vec![0.0; d.seqs * d.heads * d.len * d.len];
            attention::forward(&p[0], &mut out, &mut probs, d);
            dot(&out, &r)
        };
        let mut out = vec![0.0; d.seqs * d.len * c];
        let mut probs = vec![0.0; d.seqs * d.heads * d.len * d.len];
        attention::forward(&ins[0], &mut out, &mut probs, d);
        let mut dq = vec![0.0; ins[0].len()];
        attention::backward(&r, &ins[0], &probs, &mut dq, d);
        check("attention", &ins, &[dq], &f);
    }
}

fn embed_dims(rng: &mut ChaCha8Rng) -> EmbedDims {
    let patches = rng.gen_range(2..5);
    EmbedDims {
        batch: rng.gen_range(1..=patches),
        frames: rng.gen_range(1..4),
        patches,
        dim: rng.gen_range(1..4),
    }
}

#[test]
fn embed_tokens_grads_both_modes() {
    for seed in 0..4 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = embed_dims(&mut rng);
        let src = if seed % 2 == 0 {
            TempTokenSource::Compat
        } else {
            TempTokenSource::Clean
        };
        let (t, n, c) = (d.frames, d.patches, d.dim);
        let ins = vec![
            randv(&mut rng, d.batch * t * n * c),
            randv(&mut rng, c),
            randv(&mut rng, (n + 1) * c),
            randv(&mut rng, (t + 1) * c),
            randv(&mut rng, c),
        ];
        let r = randv(&mut rng, d.batch * d.tokens() * c);
        let f = |p: &[Vec<f64>]| {
            let mut tok = vec![0.0; d.batch * d.tokens() * c];
            tokens::embed_fwd(&p[0], &p[1], &p[2], &p[3], &p[4], &mut tok, d, src);
            dot(&tok, &r)
        };
        let mut g: Vec<Vec<f64>> = ins.iter().map(|v| vec![0.0; v.len()]).collect();
        let [de, dc, dp, dt, dtemp] = &mut g[..] else {
            unreachable!()
        };
        tokens::embed_bwd(&r, de, dc, dp, dt, dtemp, d, src);
        check("embed_tokens", &ins, &g, &f);
    }
}

#[test]
fn gather_and_merge_grads() {
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = embed_dims(&mut rng);
        let (t, n, c) = (d.frames, d.patches, d.dim);
        let ntok = d.batch * d.tokens() * c;
        let nr = d.batch * n * (t + 1) * c;
        let nv = d.batch * t * (n + 1) * c;
        // temporal gather
        let ins = vec![randv(&mut rng, ntok)];
        let r = randv(&mut rng, nr);
        let f = |p: &[Vec<f64>]| {
            let mut s = vec![0.0; nr];
            tokens::temporal_gather_fwd(&p[0], &mut s, d);
            dot(&s, &r)
        };
        let mut g = vec![0.0; ntok];
        tokens::temporal_gather_bwd(&r, &mut g, d);
        check("temporal_gather", &ins, &[g], &f);
        // spatial gather
        let ins = vec![randv(&mut rng, ntok), randv(&mut rng, nr)];
        let r = randv(&mut rng, nv);
        let f = |p: &[Vec<f64>]| {
            let mut s = vec![0.0; nv];
            tokens::spatial_gather_fwd(&p[0], &p[1], &mut s, d);
            dot(&s, &r)
        };
        let (mut g0, mut g1) = (vec![0.0; ntok], vec![0.0; nr]);
        tokens::spatial_gather_bwd(&r, &mut g0, &mut g1, d);
        check("spatial_gather", &ins, &[g0, g1], &f);
        // merge
        let ins = vec![
            randv(&mut rng, ntok),
            randv(&mut rng, nr),
            randv(&mut rng, nv),
        ];
        let r = randv(&mut rng, ntok);
        let f = |p: &[Vec<f64>]| {
            let mut y = vec![0.0; ntok];
            tokens::merge_fwd(&p[0], &p[1], &p[2], &mut y, d);
            dot(&y, &r)
        };
        let (mut g0, mut g1, mut g2) = (vec![0.0; ntok], vec![0.0; nr], vec![0.0; nv]);
        tokens::merge_bwd(&r, &mut g0, &mut g1, &mut g2, d);
        check("merge", &ins, &[g0, g1, g2], &f);
        // row gather (the hm-map / cls / s_cls selections)
        let rows = ntok / c;
        let idx: Vec<u32> = (0..rows as u32).rev().step_by(2).collect();
        let ins = vec![randv(&mut rng, ntok)];
        let r = randv(&mut rng, idx.len() * c);
        let f = |p: &[Vec<f64>]| {
            let mut y = vec![0.0; idx.len() * c];
            tokens::gather_rows(&p[0], &idx, &mut y, c);
            dot(&y, &r)
        };
        let mut g = vec![0.0; ntok];
        tokens::scatter_add_rows(&r, &idx, &mut g, c);
        check("gather_rows", &ins, &[g], &f);
    }
}

#[test]
fn conv3d_grads() {
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = Conv3dDims {
            batch: rng.gen_range(1..3),
            frames: rng.gen_range(1..5),
            cells: rng.gen_range(1..4),
            cin: rng.gen_range(1..4),
            cout: rng.gen_range(1..4),
        };
        let rows = d.batch * d.frames * d.cells;
        let ins = vec![
            randv(&mut rng, rows * d.cin),
            randv(&mut rng, d.cout * d.cin * 3),
            randv(&mut rng, d.cout),
        ];
        let r = randv(&mut rng, rows * d.cout);
        let f = |p: &[Vec<f64>]| {
            let mut y = vec![0.0; rows * d.cout];
            conv3d::forward(&p[0], &p[1], &p[2], &mut y, d);
            dot(&y, &r)
        };
        let (mut dx, mut dw, mut db) = (
            vec![0.0; rows * d.cin],
            vec![0.0; ins[1].len()],
            vec![0.0; d.cout],
        );
        conv3d::backward(&r, &ins[0], &ins[1], Some(&mut dx), &mut dw, &mut db, d);
        check("conv3d", &ins, &[dx, dw, db], &f);
    }
}

#[test]
fn batchnorm_train_grads() {
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (rows, ch) = (rng.gen_range(2..9), rng.gen_range(1..4));
        let ins = vec![
            randv(&mut rng, rows * ch),
            randv(&mut rng, ch),
            randv(&mut rng, ch),
        ];
        let r = randv(&mut rng, rows * ch);
        let run = |p: &[Vec<f64>]| {
            let (mut rm, mut rv) = (vec![0.0; ch], vec![1.0; ch]);
            let (mut y, mut mu, mut rs) = (vec![0.0; rows * ch], vec![0.0; ch], vec![0.0; ch]);
            batchnorm::forward(
                &p[0], &p[1], &p[2], &mut rm, &mut rv, &mut y, &mut mu, &mut rs, rows, ch, true,
                0.05, 1e-5,
            );
            (y, mu, rs)
        };
        let f = |p: &[Vec<f64>]| dot(&run(p).0, &r);
        let (_, mu, rs) = run(&ins);
        let (mut dx, mut dg, mut db) = (vec![0.0; rows * ch], vec![0.0; ch], vec![0.0; ch]);
        batchnorm::backward(
            &r, &ins[0], &ins[1], &mu, &rs, &mut dx, &mut dg, &mut db, rows, ch,
        );
        check("batchnorm", &ins, &[dx, dg, db], &f);
    }
}

#[test]
fn batchnorm_running_stats_use_unbiased_variance() {
    let x = [1.0f64, 2.0, 4.0, 7.0];
    let (mut rm, mut rv) = (vec![0.0], vec![1.0]);
    let (mut y, mut mu, mut rs) = (vec![0.0; 4], vec![0.0], vec![0.0]);
    batchnorm::forward(
        &x,
        &[1.0],
        &[0.0],
        &mut rm,
        &mut rv,
        &mut y,
        &mut mu,
        &mut rs,
        4,
        1,
        true,
        0.05,
        0.0,
    );
    let mean = 3.5;
    let ss: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    assert!((rm[0] - 0.05 * mean).abs() < 1e-12);
    assert!((rv[0] - (0.95 + 0.05 * ss / 3.0)).abs() < 1e-12);
    assert!((rs[0] - 1.0 / (ss / 4.0).sqrt()).abs() < 1e-12);
}

#[test]
fn loss_grads() {
    // Inputs on a dyadic grid and h = 2^-10 are exact in f32, so the f64 loss differences are exact
    // up to O(h²) curvature (≤ 1e-6 relative here).
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (b, t, cells) = (2usize, 4usize, 8usize);
    let q = |rng: &mut ChaCha8Rng, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| rng.gen_range(-64i32..64) as f32 / 32.0)
            .collect()
    };
    let hm = q(&mut rng, b * t * cells);
    let target = q(&mut rng, b * t * cells);
    let mask: Vec<f32> = (0..b * t * cells)
        .map(|i| if i % 5 == 0 { 0.0 } else { 1.0 })
        .collect();
    let cls = q(&mut rng, b);
    let labels = vec![0.0, 1.0];
    let tl = q(&mut rng, b * t);
    let tl_t: Vec<f64> = (0..b * t).map(|i| (i % 3) as f64 / 2.0).collect();
    let w = LossWeights::default();
    let out = combined_loss(&hm, &target, &mask, &cls, &labels, &tl, &tl_t, w);
    let h = 1.0f32 / 1024.0;
    let fd = |which: usize, i: usize| {
        let eval = |delta: f32| {
            let (mut a, mut c, mut s) = (hm.clone(), cls.clone(), tl.clone());
            match which {
                0 => a[i] += delta,
                1 => c[i] += delta,
                _ => s[i] += delta,
            }
            combined_loss(&a, &target, &mask, &c, &labels, &s, &tl_t, w).total
        };
        (eval(h) - eval(-h)) / (2.0 * h as f64)
    };
    for (which, g) in [&out.d_hm, &out.d_cls, &out.d_temp_loc]
        .into_iter()
        .enumerate()
    {
        for (i, &gi) in g.iter().enumerate() {
            let num = fd(which, i);
            assert!(
                (num - gi as f64).abs() <= 1e-6 * num.abs().max(1e-2),
                "loss grad {which}/{i}: {gi} vs {num}"
            );
        }
    }
    // masked cells contribute neither loss nor gradient
    assert!(out
        .d_hm
        .iter()
        .zip(&mask)
        .all(|(g, m)| *m != 0.0 || *g == 0.0));
}

#[test]
fn dropout_and_drop_path_are_their_own_backward() {
    use kernels::{Backend, CpuBackend};
    let be = CpuBackend;
    let mut x = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    be.scale_groups(&mut x, &[0.0, 2.0, 1.0], 2);
    assert_eq!(x, vec![0.0, 0.0, 6.0, 8.0, 5.0, 6.0]);
    let m = vec![0.0f32, 1.25, 1.25, 0.0, 1.25, 1.25];
    be.mul_inplace(&mut x, &m, 6);
    assert_eq!(x, vec![0.0, 0.0, 7.5, 0.0, 6.25, 7.5]);
}
