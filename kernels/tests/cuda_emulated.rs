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
    let exe = dir.join(family.name());
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "clang++".into());
    let out = Command::new(&cxx)
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
        10,
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
    let exe = build(family, driver);
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
