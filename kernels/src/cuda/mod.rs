//! CUDA backend: hand-written kernels (kernels/cuda/*.cu) compiled at run time by NVRTC and loaded
//! once per device, plus cuBLAS GEMMs, all through cudarc with dynamic loading — the binary links
//! no CUDA library, and a machine without a driver, GPU, NVRTC or cuBLAS gets a [`CudaError`].

mod backend;
mod device;
mod dtype;
mod error;
mod gemm;
pub mod nccl;
mod ops;
mod source;
mod upload;

pub use backend::CudaBuf;
pub use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream};
pub use device::{cublas_available, driver_available, CudaBackend, OpTime};
pub use dtype::Float;
pub use error::CudaError;
pub use gemm::{GemmMath, GemmShape};
pub use ops::{AdamHyper, AttentionShape, AttnPath, MergeShape, PatchGeom, RowIndex, SHORT_L};
pub use source::{
    arch_for, compile_family, find_include_dir, include_candidates, nvrtc_available, sass_arch,
    Family, INCLUDE_ENV,
};
