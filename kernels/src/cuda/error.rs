//! Errors of the CUDA backend. Every failure mode that cudarc would turn into a panic (missing
//! driver, NVRTC or cuBLAS library) is checked first and reported as a value.

use thiserror::Error;

/// Why a CUDA operation could not run.
#[derive(Debug, Error)]
pub enum CudaError {
    /// libcuda could not be loaded: no NVIDIA driver on this machine.
    #[error("no CUDA driver: libcuda.so could not be loaded (is an NVIDIA driver installed?)")]
    NoDriver,
    /// The driver is present but reports no device with this ordinal.
    #[error("no CUDA device with ordinal {ordinal} ({count} device(s) visible)")]
    NoDevice { ordinal: usize, count: usize },
    /// libnvrtc could not be loaded, so kernels cannot be compiled.
    #[error(
        "NVRTC not found: libnvrtc.so(.13) could not be loaded; put its directory on \
         LD_LIBRARY_PATH (scripts/setup-nvrtc.sh installs it under .cache/nvrtc)"
    )]
    NoNvrtc,
    /// libcublas could not be loaded, so GEMMs cannot run.
    #[error(
        "cuBLAS not found: libcublas.so could not be loaded; put its directory on LD_LIBRARY_PATH"
    )]
    NoCublas,
    /// No directory containing `cuda_bf16.h` was found for NVRTC.
    #[error(
        "CUDA headers not found (need cuda_bf16.h): set FAKESTORMER_CUDA_INCLUDE, CUDA_HOME or \
         CUDA_PATH, or run scripts/setup-nvrtc.sh; looked in: {searched}"
    )]
    NoHeaders { searched: String },
    /// NVRTC rejected a kernel source.
    #[error("NVRTC failed to compile {family}.cu for {arch}: {log}")]
    Compile {
        family: &'static str,
        arch: String,
        log: String,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver error during {during}: {source:?}")]
    Driver {
        during: String,
        source: cudarc::driver::DriverError,
    },
    /// A cuBLAS call failed.
    #[error("cuBLAS error during {during}: {source:?}")]
    Cublas {
        during: String,
        source: cudarc::cublas::result::CublasError,
    },
    /// Arguments to an op do not describe valid buffers.
    #[error("{op}: {reason}")]
    Shape { op: &'static str, reason: String },
}

impl CudaError {
    pub(crate) fn driver(
        during: impl Into<String>,
    ) -> impl FnOnce(cudarc::driver::DriverError) -> Self {
        let during = during.into();
        move |source| CudaError::Driver { during, source }
    }

    pub(crate) fn cublas(
        during: impl Into<String>,
    ) -> impl FnOnce(cudarc::cublas::result::CublasError) -> Self {
        let during = during.into();
        move |source| CudaError::Cublas { during, source }
    }

    pub(crate) fn shape(op: &'static str, reason: impl Into<String>) -> Self {
        CudaError::Shape {
            op,
            reason: reason.into(),
        }
    }
}
