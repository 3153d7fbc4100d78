//! Op wrappers: argument checks on the host, then one or more kernel launches on the backend's
//! stream. Buffers are plain row-major `CudaSlice`s; shapes are passed explicitly.

mod adam;
mod attention;
mod blend;
mod elementwise;
mod gelu;
mod layernorm;
mod loss;
mod patch_embed;

pub use adam::AdamHyper;
pub use attention::{AttentionShape, AttnPath, SHORT_L};
pub use elementwise::{MergeShape, RowIndex};
pub use patch_embed::PatchGeom;

use cudarc::driver::LaunchConfig;

use super::error::CudaError;

/// Fails when a buffer holds fewer than `need` elements.
pub(crate) fn need(
    op: &'static str,
    name: &str,
    have: usize,
    need: usize,
) -> Result<(), CudaError> {
    if have < need {
        return Err(CudaError::shape(
            op,
            format!("{name} has {have} elements, needs {need}"),
        ));
    }
    Ok(())
}

/// Converts a size to the kernel's `int` argument.
pub(crate) fn int(op: &'static str, name: &str, v: usize) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| CudaError::shape(op, format!("{name} = {v} exceeds i32")))
}

/// Converts a size to the kernel's `long` argument.
pub(crate) fn long(op: &'static str, name: &str, v: usize) -> Result<i64, CudaError> {
    i64::try_from(v).map_err(|_| CudaError::shape(op, format!("{name} = {v} exceeds i64")))
}

pub(crate) fn cfg(grid: (u32, u32, u32), block: (u32, u32, u32)) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: block,
        shared_mem_bytes: 0,
    }
}

/// Wraps a launch result with the kernel name.
pub(crate) fn launched(
    name: &str,
    r: Result<(), cudarc::driver::DriverError>,
) -> Result<(), CudaError> {
    r.map_err(CudaError::driver(format!("launching {name}")))
}
