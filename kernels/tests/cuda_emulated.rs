//! Runs the CUDA C kernels on the CPU under a host emulation of the CUDA subset they use
//! (tests/emu/cuda_emu.h: block threads as fibers, barriers for __syncthreads and warp
//! shuffles), compiled with clang++, against double-precision references written in the drivers.
//! This checks the kernels' index math, online softmax, reductions and barriers without a GPU;
//! timing and real-hardware behaviour are left to scripts/gpu-check.sh. Needs clang++ (C++20);
//! fails with a message when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::collections::HashMap;

use kernels::cuda::Family;
use kernels::{Backend, CpuBackend, EmbedDims, TempTokenSource};

/// Compiles `family`'s source with the emulation header and `driver` appended; returns the binary.
fn build(family: Family, driver: &str) -> PathBuf {
    build_with(family, driver, None)
}

/// [`build`] with an optional `-D` define selecting a part of a shared driver.
fn build_with(family: Family, driver: &str, define: Option<&str>) -> PathBuf {
    let emu = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emu");
    let source = family
        .source()
        .replacen("#include <cuda_bf16.h>", "#include \"cuda_emu.h\"", 1);
    assert!(
        source.contains("cuda_emu.h"),
        "common.cuh no longer includes cuda_bf16.h as expected"
    );
    let driver_src = std::fs::read_to_string(emu.join(driver)).expect("driver source");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("emu_{}", family.name()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cpp = dir.join(format!("{}.cpp", family.name()));
    std::fs::write(&cpp, format!("{source}\n{driver_src}")).expect("write source");
    let exe = dir.join(format!(
        "{}{}",
        family.name(),
        define.map(|d| format!("_{d}")).unwrap_or_default()
    ));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "clang++".into());
    let out = Command::new(&cxx)
        .args(define.map(|d| format!("-D{d}")))
        .args(["-std=c++20", "-O1", "-U_FORTIFY_SOURCE", "-w", "-I"])
        .arg(&emu)
        .arg(&cpp)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| {
            panic!("{cxx} not runnable ({e}); install clang (apt-get install clang)")
        });
    assert!(
        out.status.success(),
        "{cxx} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Builds and runs a self-checking driver that prints `name relative_error` lines.
fn compile_and_run(family: Family, driver: &str) -> Vec<(String, f64)> {
    let exe = build(family, driver);
    let run = Command::new(&exe).output().expect("run emulated kernels");
    assert!(
        run.status.success(),
        "emulated run failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| {
            let (name, v) = l.split_once(' ').expect("name value");
            (
                name.to_string(),
                v.trim().parse::<f64>().unwrap_or(f64::INFINITY),
            )
        })
        .collect()
}

fn check(results: &[(String, f64)], expected: usize) {
    assert_eq!(results.len(), expected, "driver printed {results:?}");
    for (name, rel) in results {
        // f32 kernels: summation-order differences only; bf16 storage: 8-bit mantissa rounding.
        let tol = if name.starts_with("bf16") { 1e-2 } else { 1e-5 };
        assert!(*rel <= tol, "{name}: relative error {rel:.3e} > {tol:.0e}");
    }
}

#[test]
fn attention_kernels_match_reference_under_emulation() {
    check(
        &compile_and_run(Family::Attention, "attention_driver.cpp"),
        31,
    );
}

#[test]
fn layernorm_kernels_match_reference_under_emulation() {
    check(
        &compile_and_run(Family::LayerNorm, "layernorm_driver.cpp"),
        4,
    );
}

/// Runs a file-exchange driver (tests/emu/emu_io.h): writes `inputs`, passes `args`, reads every
/// `<name>.out` the driver wrote.
fn run_io(
    family: Family,
    driver: &str,
    inputs: &[(&str, &[f32])],
    args: &[usize],
) -> HashMap<String, Vec<f32>> {
    run_io_with(family, driver, None, inputs, args)
}

/// [`run_io`] with an optional `-D` define selecting a part of a shared driver.
fn run_io_with(
    family: Family,
    driver: &str,
    define: Option<&str>,
    inputs: &[(&str, &[f32])],
    args: &[usize],
) -> HashMap<String, Vec<f32>> {
    let exe = build_with(family, driver, define);
    let dir = exe.with_extension("io");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("io dir");
    for (name, data) in inputs {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("write input");
    }
    let run = Command::new(&exe)
        .arg(&dir)
        .args(args.iter().map(|a| a.to_string()))
        .output()
        .expect("run emulated kernels");
    assert!(
        run.status.success(),
        "emulated run failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_dir(&dir)
        .expect("io dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "out"))
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read output");
            let v = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (
                e.path().file_stem().unwrap().to_string_lossy().into_owned(),
                v,
            )
        })
        .collect()
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - *w as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn assert_close(outputs: &HashMap<String, Vec<f32>>, name: &str, want: &[f32]) {
    let got = outputs
        .get(name)
        .unwrap_or_else(|| panic!("driver wrote no {name}"));
    let e = rel_err(got, want);
    assert!(
        e <= 1e-5,
        "{name}: relative error {e:.3e} vs the CPU backend"
    );
}

/// Deterministic inputs in [-1, 1) (xorshift; no RNG crate needed).
fn gen(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            ((*seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

#[test]
fn token_layout_kernels_match_cpu_backend_under_emulation() {
    let d = EmbedDims {
        batch: 2,
        frames: 4,
        patches: 6,
        dim: 40,
    };
    let (b, t, n, c) = (d.batch, d.frames, d.patches, d.dim);
    let mut s = 7u64;
    let e = gen(&mut s, b * t * n * c);
    let (cls, pos, time, temp) = (
        gen(&mut s, c),
        gen(&mut s, (n + 1) * c),
        gen(&mut s, (t + 1) * c),
        gen(&mut s, c),
    );
    let ntok = b * d.tokens() * c;
    let (dtok, tok, acc_tok) = (gen(&mut s, ntok), gen(&mut s, ntok), gen(&mut s, ntok));
    let (r, acc_r) = (
        gen(&mut s, b * n * (t + 1) * c),
        gen(&mut s, b * n * (t + 1) * c),
    );
    let (v, acc_v) = (
        gen(&mut s, b * t * (n + 1) * c),
        gen(&mut s, b * t * (n + 1) * c),
    );
    let (acc_pos, acc_time, acc_c) = (
        gen(&mut s, (n + 1) * c),
        gen(&mut s, (t + 1) * c),
        gen(&mut s, c),
    );
    let out = run_io(
        Family::Tokens,
        "tokens_driver.cpp",
        &[
            ("e", &e),
            ("cls", &cls),
            ("pos", &pos),
            ("time", &time),
            ("temp", &temp),
            ("dtok", &dtok),
            ("tok", &tok),
            ("r", &r),
            ("v", &v),
            ("acc_tok", &acc_tok),
            ("acc_r", &acc_r),
            ("acc_v", &acc_v),
            ("acc_pos", &acc_pos),
            ("acc_time", &acc_time),
            ("acc_c", &acc_c),
        ],
        &[b, t, n, c],
    );
    let cpu = CpuBackend;
    for (src, sfx) in [
        (TempTokenSource::Clean, "_clean"),
        (TempTokenSource::Compat, "_compat"),
    ] {
        let mut y = vec![0.0; ntok];
        cpu.embed_tokens_fwd(&e, &cls, &pos, &time, &temp, &mut y, d, src);
        assert_close(&out, &format!("tokens{sfx}"), &y);
        let mut de = vec![0.0; e.len()];
        let (mut dcls, mut dpos, mut dtime, mut dtemp) = (
            acc_c.clone(),
            acc_pos.clone(),
            acc_time.clone(),
            acc_c.clone(),
        );
        cpu.embed_tokens_bwd(
            &dtok, &mut de, &mut dcls, &mut dpos, &mut dtime, &mut dtemp, d, src,
        );
        for (name, want) in [
            ("de", &de),
            ("dcls", &dcls),
            ("dpos", &dpos),
            ("dtime", &dtime),
            ("dtemp", &dtemp),
        ] {
            assert_close(&out, &format!("{name}{sfx}"), want);
        }
    }
    let mut tseq = vec![0.0; r.len()];
    cpu.temporal_gather_fwd(&tok, &mut tseq, d);
    assert_close(&out, "tseq", &tseq);
    let mut d1 = acc_tok.clone();
    cpu.temporal_gather_bwd(&r, &mut d1, d);
    assert_close(&out, "tgather_bwd", &d1);
    let mut sseq = vec![0.0; v.len()];
    cpu.spatial_gather_fwd(&tok, &r, &mut sseq, d);
    assert_close(&out, "sseq", &sseq);
    let (mut d2, mut dr2) = (acc_tok.clone(), acc_r.clone());
    cpu.spatial_gather_bwd(&v, &mut d2, &mut dr2, d);
    assert_close(&out, "sgather_bwd_tok", &d2);
    assert_close(&out, "sgather_bwd_r", &dr2);
    let mut y = vec![0.0; ntok];
    cpu.merge_fwd(&tok, &r, &v, &mut y, d);
    assert_close(&out, "merge", &y);
    let (mut d3, mut dr3, mut dv3) = (acc_tok.clone(), acc_r.clone(), acc_v.clone());
    cpu.merge_bwd(&tok, &mut d3, &mut dr3, &mut dv3, d);
    assert_close(&out, "merge_bwd_tok", &d3);
    assert_close(&out, "merge_bwd_r", &dr3);
    assert_close(&out, "merge_bwd_v", &dv3);
}

#[test]
fn batchnorm_kernels_match_cpu_backend_under_emulation() {
    let (rows, ch, rows_per_block) = (70, 40, 16);
    let mut s = 11u64;
    let x: Vec<f32> = gen(&mut s, rows * ch)
        .iter()
        .map(|v| 3.0 * v + 0.5)
        .collect();
    let (gamma, beta, rm, dy, acc) = (
        gen(&mut s, ch),
        gen(&mut s, ch),
        gen(&mut s, ch),
        gen(&mut s, rows * ch),
        gen(&mut s, 2 * ch),
    );
    let rv: Vec<f32> = gen(&mut s, ch)
        .iter()
        .map(|v| 1.0 + 0.5 * v.abs())
        .collect();
    let out = run_io(
        Family::BatchNorm,
        "batchnorm_driver.cpp",
        &[
            ("x", &x),
            ("gamma", &gamma),
            ("beta", &beta),
            ("rm", &rm),
            ("rv", &rv),
            ("dy", &dy),
            ("acc", &acc),
        ],
        &[rows, ch, rows_per_block],
    );
    let cpu = CpuBackend;
    for (train, sfx) in [(true, "_train"), (false, "_eval")] {
        let (mut rmc, mut rvc) = (rm.clone(), rv.clone());
        let (mut y, mut mean, mut rstd) = (vec![0.0; rows * ch], vec![0.0; ch], vec![0.0; ch]);
        cpu.batchnorm_fwd(
            &x, &gamma, &beta, &mut rmc, &mut rvc, &mut y, &mut mean, &mut rstd, rows, ch, train,
            0.05, 1e-5,
        );
        let mut dx = vec![0.0; rows * ch];
        let (mut dg, mut db) = (acc[..ch].to_vec(), acc[ch..].to_vec());
        cpu.batchnorm_bwd(
            &dy, &x, &gamma, &mean, &rstd, &mut dx, &mut dg, &mut db, rows, ch,
        );
        for (name, want) in [
            ("y", &y),
            ("mean", &mean),
            ("rstd", &rstd),
            ("rm", &rmc),
            ("rv", &rvc),
            ("dx", &dx),
            ("dgamma", &dg),
            ("dbeta", &db),
        ] {
            assert_close(&out, &format!("{name}{sfx}"), want);
        }
    }
}

#[test]
fn elementwise_kernels_match_references_under_emulation() {
    let (rows, cols, per, rpb) = (96usize, 40usize, 4usize, 16usize);
    let n = rows * cols;
    let mut s = 13u64;
    let (x, a, bias, acc) = (
        gen(&mut s, n),
        gen(&mut s, n),
        gen(&mut s, cols),
        gen(&mut s, cols),
    );
    let scale: Vec<f32> = (0..rows / per)
        .map(|i| if i % 3 == 0 { 0.0 } else { 1.0 / 0.7 })
        .collect();
    let idx: Vec<u32> = (0..rows as u32).rev().step_by(2).collect();
    let idxf: Vec<f32> = idx.iter().map(|&i| i as f32).collect();
    let out = run_io(
        Family::Elementwise,
        "elementwise_driver.cpp",
        &[
            ("x", &x),
            ("a", &a),
            ("bias", &bias),
            ("scale", &scale),
            ("acc", &acc),
            ("idx", &idxf),
        ],
        &[rows, cols, per, rpb],
    );
    let cpu = CpuBackend;
    let at = |i: usize| scale[i / cols / per];
    assert_close(
        &out,
        "bias_add",
        &(0..n).map(|i| x[i] + bias[i % cols]).collect::<Vec<_>>(),
    );
    assert_close(
        &out,
        "drop_path",
        &(0..n).map(|i| x[i] * at(i)).collect::<Vec<_>>(),
    );
    assert_close(
        &out,
        "residual_drop_path",
        &(0..n).map(|i| a[i] + x[i] * at(i)).collect::<Vec<_>>(),
    );
    assert_close(
        &out,
        "add",
        &(0..n).map(|i| a[i] + x[i]).collect::<Vec<_>>(),
    );
    let cs: Vec<f32> = (0..cols)
        .map(|c| acc[c] + (0..rows).map(|r| x[r * cols + c]).sum::<f32>())
        .collect();
    assert_close(&out, "col_sum", &cs);
    let (g, sl, pos) = (per, 3, 1);
    let bb = rows / (g * sl);
    let mut merged = vec![0.0; bb * cols];
    let mut gsrc = vec![0.0; n];
    for b in 0..bb {
        for c in 0..cols {
            let m: f32 = (0..g)
                .map(|k| x[((b * g + k) * sl + pos) * cols + c])
                .sum::<f32>()
                / g as f32;
            merged[b * cols + c] = a[b * 3 * cols + c] + m;
            for k in 0..g {
                gsrc[((b * g + k) * sl + pos) * cols + c] = bias[c] / g as f32;
            }
        }
    }
    assert_close(&out, "token_merge_fwd", &merged);
    assert_close(&out, "token_merge_bwd", &gsrc);
    let mut gathered = vec![0.0; idx.len() * cols];
    cpu.gather_rows(&x, &idx, &mut gathered, cols);
    assert_close(&out, "gather", &gathered);
    let mut scattered = a.clone();
    cpu.scatter_add_rows(&gathered, &idx, &mut scattered, cols);
    assert_close(&out, "scatter_add", &scattered);
    let rounded: Vec<f32> = x
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    assert_close(&out, "cast_roundtrip", &rounded);
    let mut y = a.clone();
    cpu.axpy(-0.75, &x, &mut y, n);
    assert_close(&out, "axpy", &y);
    let mut xm = x.clone();
    cpu.mul_inplace(&mut xm, &a, n);
    assert_close(&out, "mul_inplace", &xm);
    let mut xs = x.clone();
    cpu.scale_groups(&mut xs, &scale, per * cols);
    assert_close(&out, "scale_groups", &xs);
}

#[test]
fn gelu_loss_adam_kernels_match_references_under_emulation() {
    let mut s = 17u64;
    let cpu = CpuBackend;
    let n = 3000;
    let x: Vec<f32> = gen(&mut s, n).iter().map(|v| 4.0 * v).collect();
    let g = gen(&mut s, n);
    let out = run_io_with(
        Family::Gelu,
        "misc_driver.cpp",
        Some("FAMILY_GELU"),
        &[("x", &x), ("g", &g)],
        &[0, 0, 0, 0],
    );
    let (mut y, mut dx) = (vec![0.0; n], vec![0.0; n]);
    cpu.gelu_fwd(&x, &mut y, n);
    cpu.gelu_bwd(&g, &x, &mut dx, n);
    assert_close(&out, "y", &y);
    assert_close(&out, "dx", &dx);

    let (rows, cols) = (20, 150);
    let t: Vec<f32> = gen(&mut s, n).iter().map(|v| 0.5 + 0.5 * v).collect();
    let out = run_io_with(
        Family::Loss,
        "misc_driver.cpp",
        Some("FAMILY_LOSS"),
        &[("x", &x), ("t", &t)],
        &[rows, cols, 0, 0],
    );
    let nf = n as f64;
    let bce: f64 = x
        .iter()
        .zip(&t)
        .map(|(&v, &y)| {
            (v as f64).max(0.0) - v as f64 * y as f64 + (-(v as f64).abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / nf;
    let bce_g: Vec<f32> = x
        .iter()
        .zip(&t)
        .map(|(&v, &y)| ((1.0 / (1.0 + (-(v as f64)).exp()) - y as f64) / nf) as f32)
        .collect();
    assert_close(&out, "bce_loss", &[bce as f32]);
    assert_close(&out, "bce_grad", &bce_g);
    let mse: f64 = x
        .iter()
        .zip(&t)
        .map(|(&a, &b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / nf;
    assert_close(&out, "mse_loss", &[mse as f32]);
    assert_close(
        &out,
        "mse_grad",
        &x.iter()
            .zip(&t)
            .map(|(&a, &b)| 2.0 * (a - b) / n as f32)
            .collect::<Vec<_>>(),
    );
    let mut sy = vec![0.0; rows * cols];
    let mut sdx = vec![0.0; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let z: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
        for c in 0..cols {
            sy[r * cols + c] = (((row[c] - m) as f64).exp() / z) as f32;
        }
        let dot: f64 = (0..cols)
            .map(|c| (t[r * cols + c] * sy[r * cols + c]) as f64)
            .sum();
        for c in 0..cols {
            sdx[r * cols + c] = (sy[r * cols + c] as f64 * (t[r * cols + c] as f64 - dot)) as f32;
        }
    }
    assert_close(&out, "softmax_y", &sy);
    assert_close(&out, "softmax_dx", &sdx);

    let m = 5000;
    let w = gen(&mut s, m);
    let g: Vec<f32> = gen(&mut s, m).iter().map(|v| 1e-2 * v).collect();
    let g2: Vec<f32> = gen(&mut s, m).iter().map(|v| 1e-2 * v).collect();
    let m0: Vec<f32> = gen(&mut s, m).iter().map(|v| 1e-3 * v).collect();
    let v0: Vec<f32> = gen(&mut s, m).iter().map(|v| 1e-5 * v.abs()).collect();
    let out = run_io_with(
        Family::Adam,
        "misc_driver.cpp",
        Some("FAMILY_ADAM"),
        &[("w", &w), ("g", &g), ("g2", &g2), ("m", &m0), ("v", &v0)],
        &[0, 0, 0, 0],
    );
    let ss: f64 = g.iter().map(|&v| (v as f64).powi(2)).sum();
    assert_close(&out, "sumsq", &[ss as f32]);
    let sc = 0.05 / (ss.sqrt() + 1e-12);
    assert_close(
        &out,
        "perturbed",
        &w.iter()
            .zip(&g)
            .map(|(&a, &b)| (a as f64 + sc * b as f64) as f32)
            .collect::<Vec<_>>(),
    );
    let (mut wr, mut mr, mut vr) = (w.clone(), m0.clone(), v0.clone());
    let h = kernels::AdamParams {
        lr: 5e-5,
        beta1: 0.9,
        beta2: 0.995,
        eps: 1e-8,
        weight_decay: 1e-4,
        step: 3,
    };
    cpu.adam_step(&mut wr, &g2, &mut mr, &mut vr, m, h);
    assert_close(&out, "w", &wr);
    assert_close(&out, "m", &mr);
    assert_close(&out, "v", &vr);
}

#[test]
fn blend_patch_conv3d_kernels_match_references_under_emulation() {
    let mut s = 19u64;
    let (n, hw, c) = (3usize, 50usize, 3usize);
    let src: Vec<f32> = gen(&mut s, n * hw * c)
        .iter()
        .map(|v| (127.5 * (v + 1.0)).floor())
        .collect();
    let tgt: Vec<f32> = gen(&mut s, n * hw * c)
        .iter()
        .map(|v| (127.5 * (v + 1.0)).floor())
        .collect();
    let mask: Vec<f32> = gen(&mut s, n * hw).iter().map(|v| 0.5 + 0.5 * v).collect();
    let ratio = vec![0.3, 0.75, 1.0];
    let (go, gb) = (gen(&mut s, n * hw * c), gen(&mut s, n * hw));
    let out = run_io_with(
        Family::Blend,
        "misc_driver.cpp",
        Some("FAMILY_BLEND"),
        &[
            ("src", &src),
            ("tgt", &tgt),
            ("mask", &mask),
            ("ratio", &ratio),
            ("go", &go),
            ("gb", &gb),
        ],
        &[n, hw, c, 0],
    );
    let mut want = vec![0.0; n * hw * c];
    let (mut ws, mut wt, mut wm, mut wb, mut w8) = (
        want.clone(),
        want.clone(),
        vec![0.0; n * hw],
        vec![0.0; n * hw],
        want.clone(),
    );
    for p in 0..n * hw {
        let (m, r) = (mask[p], ratio[p / hw]);
        let mut gm = 0.0;
        for ch in 0..c {
            let i = p * c + ch;
            want[i] = r * m * src[i] + (1.0 - r * m) * tgt[i];
            w8[i] = want[i].clamp(0.0, 255.0).trunc();
            ws[i] = r * m * go[i];
            wt[i] = (1.0 - r * m) * go[i];
            gm += (src[i] - tgt[i]) * go[i];
        }
        wb[p] = 4.0 * m * (1.0 - m);
        wm[p] = r * gm + 4.0 * (1.0 - 2.0 * m) * gb[p];
    }
    for (name, w) in [
        ("out", &want),
        ("boundary", &wb),
        ("g_src", &ws),
        ("g_tgt", &wt),
        ("g_mask", &wm),
        ("out_u8", &w8),
    ] {
        assert_close(&out, name, w);
    }

    let (b, t, img, p) = (1usize, 2usize, 24usize, 8usize);
    let x = gen(&mut s, b * 3 * t * img * img);
    let out = run_io_with(
        Family::PatchEmbed,
        "misc_driver.cpp",
        Some("FAMILY_PATCH"),
        &[("x", &x)],
        &[b, t, img, p],
    );
    let mut cols = vec![0.0; b * t * (img / p) * (img / p) * 3 * p * p];
    CpuBackend.patchify(&x, &mut cols, b, 3, t, img, img, p);
    assert_close(&out, "cols", &cols);
    assert_close(&out, "fold", &x);

    let (b, t, cells, cin) = (2usize, 4usize, 5usize, 6usize);
    let rows = b * t * cells;
    let x = gen(&mut s, rows * cin);
    let dcols = gen(&mut s, rows * 3 * cin);
    let out = run_io_with(
        Family::Conv3d,
        "misc_driver.cpp",
        Some("FAMILY_CONV3D"),
        &[("x", &x), ("dcols", &dcols)],
        &[b, t, cells, cin],
    );
    let mut want_cols = vec![0.0; rows * 3 * cin];
    let mut want_dx = vec![0.0; rows * cin];
    for bb in 0..b {
        for tt in 0..t {
            for sc in 0..cells {
                let row = (bb * t + tt) * cells + sc;
                for ci in 0..cin {
                    for k in 0..3 {
                        let ts = tt as isize + k as isize - 1;
                        if (0..t as isize).contains(&ts) {
                            let src_row = (bb * t + ts as usize) * cells + sc;
                            want_cols[row * 3 * cin + ci * 3 + k] = x[src_row * cin + ci];
                            want_dx[src_row * cin + ci] += dcols[row * 3 * cin + ci * 3 + k];
                        }
                    }
                }
            }
        }
    }
    assert_close(&out, "cols", &want_cols);
    assert_close(&out, "dx", &want_dx);
}
