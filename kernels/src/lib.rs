//! kernels crate: tensor ops for the FakeSTormer model (CPU reference and CUDA backend).

pub mod cuda;
