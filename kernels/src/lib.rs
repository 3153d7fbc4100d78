//! kernels crate.
