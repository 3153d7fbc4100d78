//! The CPU backend through the generic conformance harness (exercises the harness itself; the
//! CUDA backend runs the same harness against the CPU reference).

#[test]
fn cpu_backend_passes_conformance() {
    kernels::conformance::check_against_cpu(&kernels::CpuBackend, 1e-6).unwrap();
}

#[test]
fn conformance_harness_really_compares() {
    // with a negative tolerance every comparison must fail, so the harness cannot pass vacuously
    let e = kernels::conformance::check_against_cpu(&kernels::CpuBackend, -1.0).unwrap_err();
    assert!(e.starts_with("linear_fwd"), "{e}");
}
