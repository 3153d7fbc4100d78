//! Runs the CUDA C kernels on the CPU under a host emulation of the CUDA subset they use
//! (tests/emu/cuda_emu.h: block threads as fibers, barriers for __syncthreads and warp
//! shuffles), compiled with clang++, against double-precision references written in the drivers.
//! This checks the kernels' index math, online softmax, reductions and barriers without a GPU;
//! timing and real-hardware behaviour are left to scripts/gpu-check.sh. Needs clang++ (C++20);
//! fails with a message when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use kernels::cuda::Family;

fn compile_and_run(family: Family, driver: &str) -> Vec<(String, f64)> {
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
