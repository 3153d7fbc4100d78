//! Tensor ops of the FakeSTormer network with explicit forward and backward functions.
//!
//! [`backend::Backend`] is the boundary the model is written against; [`cpu::CpuBackend`] is the
//! reference implementation; [`cuda::CudaBackend`] runs the same ops on an NVIDIA GPU. The generic functions in [`cpu`] also run in f64, which the
//! finite-difference gradient checks use. Host-side pieces that act on tiny tensors (losses,
//! learning-rate schedule, SAM scaling) live in [`loss`], [`schedule`] and [`sam`].

// Explicit llm.c-style kernels take their dimensions as plain arguments.
#![allow(clippy::too_many_arguments)]

pub mod backend;
pub mod conformance;
pub mod cpu;
pub mod cuda;
pub mod loss;
pub mod real;
pub mod sam;
pub mod schedule;
pub mod tensor;

pub use backend::{
    AdamParams, AttnDims, Backend, Conv3dDims, EmbedDims, PendingUpload, TempTokenSource,
};
pub use cpu::CpuBackend;
pub use tensor::Tensor;

/// Errors from kernel-level helpers.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A buffer has the wrong number of elements.
    #[error("{what}: expected {expected} elements, got {got}")]
    ShapeMismatch {
        /// Which buffer.
        what: String,
        /// Expected element count.
        expected: usize,
        /// Actual element count.
        got: usize,
    },
}
