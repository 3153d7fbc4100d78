//! The CUDA backend constructor must report a missing driver/GPU/NVRTC/cuBLAS as an error value,
//! never a panic (cudarc itself panics when a library is missing and is called anyway).

use kernels::cuda::{cublas_available, driver_available, nvrtc_available, CudaBackend, CudaError};

#[test]
fn constructor_reports_missing_pieces_without_panicking() {
    let result = std::panic::catch_unwind(|| CudaBackend::new(0));
    let result = result.expect("CudaBackend::new panicked");
    if !driver_available() {
        match result {
            Err(CudaError::NoDriver) => {}
            other => panic!("no libcuda on this machine, expected Err(NoDriver), got {other:?}"),
        }
    } else if !nvrtc_available() {
        assert!(
            matches!(result, Err(CudaError::NoNvrtc)),
            "expected Err(NoNvrtc), got {result:?}"
        );
    } else if !cublas_available() {
        assert!(
            matches!(result, Err(CudaError::NoCublas)),
            "expected Err(NoCublas), got {result:?}"
        );
    } else if let Err(e) = &result {
        // A driver without a usable device must still be a described error.
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn out_of_range_ordinal_is_an_error() {
    let result = std::panic::catch_unwind(|| CudaBackend::new(usize::MAX))
        .expect("CudaBackend::new panicked");
    assert!(result.is_err(), "device ordinal usize::MAX cannot exist");
}

#[test]
fn error_messages_tell_how_to_fix() {
    assert!(CudaError::NoNvrtc
        .to_string()
        .contains("scripts/setup-nvrtc.sh"));
    assert!(CudaError::NoDriver.to_string().contains("driver"));
}
