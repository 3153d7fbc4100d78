//! Device check for a lent GPU machine (run by scripts/gpu-check.sh): every CUDA op against the
//! CPU reference on fresh random inputs (outputs poisoned with NaN first, so an element a kernel
//! forgets to write shows up as an infinite error), then kernel timings with device events, the
//! `tiny` model forward/backward CUDA vs CPU, and the `base` training step throughput.
//!
//! Usage: gpu_check [--skip-ops] [--skip-timing] [--skip-model] [--skip-base]
//! Exit status: 0 all checks within tolerance, 1 a check failed, 2 no usable GPU.

// Check helpers mirror the op signatures they exercise.
#![allow(clippy::too_many_arguments)]

mod fixtures;
mod model_check;
mod native_ops;
mod report;
mod timing;
mod trait_ops;
mod upload;

use kernels::cuda::CudaBackend;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--cpu-fixtures") {
        // The fixture section on the CPU reference: checks the check without a GPU.
        let mut rep = report::Report::default();
        fixtures::run(&kernels::CpuBackend, &mut rep, || None);
        println!("{} checks, {} failed", rep.checks, rep.failures.len());
        std::process::exit(i32::from(!rep.failures.is_empty()));
    }
    let be = match CudaBackend::new(0) {
        Ok(be) => be,
        Err(e) => {
            eprintln!("gpu_check: no usable GPU: {e}");
            std::process::exit(2);
        }
    };
    let name = be
        .device_name()
        .unwrap_or_else(|e| format!("unknown ({e})"));
    println!("# gpu_check on {name} (NVRTC arch {})", be.arch());
    let mut rep = report::Report::default();
    let t0 = std::time::Instant::now();
    if !has("--skip-ops") {
        println!("\n## Op parity: CUDA vs CPU reference (rel = ||cuda - ref|| / ||ref||)");
        report::Report::header();
        trait_ops::run(&be, &mut rep);
        // The model crate's own conformance harness (odd shapes, max-magnitude-relative 1e-5).
        rep.checks += 1;
        match kernels::conformance::check_against_cpu(&be, 1e-5) {
            Ok(()) => println!(
                "{:<44} {:>5} {:>11} {:>8}  ok",
                "kernels::conformance (all Backend ops)", "f32", "-", "1e-5"
            ),
            Err(e) => rep.fail(&format!("kernels::conformance: {e}")),
        }
        if let Some(e) = be.take_error() {
            rep.fail(&format!("CUDA error during Backend op checks: {e}"));
        }
        native_ops::run(&be, &mut rep);
        println!("(ops done in {:.1} s)", t0.elapsed().as_secs_f64());
    }
    if !has("--skip-timing") {
        println!("\n## Kernel timings (CUDA events, 3 warm-up + 20 runs, median)");
        timing::run(&be, &mut rep);
    }
    if !has("--skip-model") {
        println!("\n## Model `tiny`: CUDA vs CPU (f32)");
        report::Report::header();
        model_check::tiny_parity(&be, &mut rep);
        println!("\n## Model `tiny` on CUDA vs the official PyTorch fixtures (../shared/fixtures)");
        report::Report::header();
        fixtures::run(&be, &mut rep, || be.take_error().map(|e| e.to_string()));
    }
    if !has("--skip-base") {
        println!("\n## Model `base` training step on CUDA (f32 Backend path)");
        model_check::base_step(&be, &name, &mut rep);
    }
    if !has("--skip-upload") {
        println!("\n## Batch upload on the copy stream (Backend::start_upload / finish_upload)");
        upload::run(&be, &mut rep);
    }
    if !has("--skip-nccl") {
        println!("\n## NCCL: single-rank all-reduce (multi-GPU training is untested)");
        nccl_check(&mut rep);
    }
    if let Some(e) = be.take_error() {
        rep.fail(&format!("sticky CUDA error: {e}"));
    }
    println!(
        "\ntotal {:.1} s; {} checks, {} failed",
        t0.elapsed().as_secs_f64(),
        rep.checks,
        rep.failures.len()
    );
    for f in &rep.failures {
        println!("FAILED: {f}");
    }
    std::process::exit(if rep.failures.is_empty() { 0 } else { 1 });
}

/// A one-rank sum all-reduce returns its input: libnccl loads, a communicator initialises and a
/// collective runs on GPU 0. A missing libnccl is reported and skipped (the CUDA backend itself
/// does not need NCCL).
fn nccl_check(rep: &mut report::Report) {
    use kernels::cuda::nccl;
    if !nccl::nccl_available() {
        println!("NCCL: {}  SKIPPED", nccl::NcclError::NoLibrary);
        return;
    }
    let data: Vec<f32> = (0..4099).map(|i| (i as f32).sin()).collect();
    rep.checks += 1;
    match nccl::single_rank_all_reduce(0, &data) {
        Ok(out)
            if out
                .iter()
                .zip(&data)
                .all(|(a, b)| a.to_bits() == b.to_bits()) =>
        {
            println!("NCCL single-rank all-reduce of 4099 f32: bit-identical  ok")
        }
        Ok(_) => rep.fail("NCCL single-rank all-reduce changed the data"),
        Err(e) => rep.fail(&format!("NCCL single-rank all-reduce: {e}")),
    }
    // The training path's communicator (id handed over as bytes, grouped in-place sums of
    // backend buffers, scalars) on one rank.
    rep.checks += 1;
    match nccl::grad_comm_self_check(0) {
        Ok(what) => println!("{what}  ok"),
        Err(e) => rep.fail(&format!("NCCL GradComm self-check: {e}")),
    }
}
