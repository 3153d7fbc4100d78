//! NCCL collectives for data-parallel training on GPUs (one process per GPU). libnccl is loaded
//! at run time (cudarc's dynamic loading), so builds and CPU machines need no NCCL; a missing
//! library is an [`NcclError::NoLibrary`], checked before cudarc touches it.
//!
//! Only the single-rank check runs here (the device check binary); the multi-process path (the
//! NCCL unique id handed over through the timely channel) is not wired into training yet, and
//! multi-GPU training is untested.

use cudarc::driver::CudaContext;
use cudarc::nccl::safe::{Comm, Id, ReduceOp};

use super::device::driver_available;

/// Why an NCCL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NcclError {
    #[error("no CUDA driver: libcuda.so could not be loaded")]
    NoDriver,
    #[error("NCCL not found: libnccl.so(.2) could not be loaded; install NCCL (e.g. pip nvidia-nccl-cu13) and put its directory on LD_LIBRARY_PATH")]
    NoLibrary,
    #[error("CUDA: {0}")]
    Driver(String),
    #[error("NCCL {op}: {code:?}")]
    Nccl { op: &'static str, code: String },
}

/// Whether libnccl can be loaded.
pub fn nccl_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::nccl::sys::is_culib_present() }
}

fn nccl(op: &'static str) -> impl Fn(cudarc::nccl::result::NcclError) -> NcclError {
    move |e| NcclError::Nccl {
        op,
        code: format!("{:?}", e.0),
    }
}

/// Sum-all-reduces `data` over a one-rank communicator on GPU `ordinal` (the result equals the
/// input): proves libnccl loads, a communicator initialises and a collective runs on this GPU.
pub fn single_rank_all_reduce(ordinal: usize, data: &[f32]) -> Result<Vec<f32>, NcclError> {
    if !driver_available() {
        return Err(NcclError::NoDriver);
    }
    if !nccl_available() {
        return Err(NcclError::NoLibrary);
    }
    let drv = |e: cudarc::driver::DriverError| NcclError::Driver(e.to_string());
    let ctx = CudaContext::new(ordinal).map_err(drv)?;
    let stream = ctx.default_stream();
    let send = stream.clone_htod(data).map_err(drv)?;
    let mut recv = stream.alloc_zeros::<f32>(data.len()).map_err(drv)?;
    let id = Id::new().map_err(nccl("get unique id"))?;
    let comm = Comm::from_rank(stream.clone(), 0, 1, id).map_err(nccl("init rank"))?;
    comm.all_reduce(&send, &mut recv, &ReduceOp::Sum)
        .map_err(nccl("all-reduce"))?;
    stream.clone_dtoh(&recv).map_err(drv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a GPU or libnccl the helper reports which is missing instead of panicking.
    #[test]
    fn missing_driver_or_library_is_an_error_not_a_panic() {
        if driver_available() && nccl_available() {
            return; // a GPU machine: the device check binary covers the real path
        }
        let e = single_rank_all_reduce(0, &[1.0, 2.0]).unwrap_err();
        assert!(
            matches!(e, NcclError::NoDriver | NcclError::NoLibrary),
            "{e}"
        );
    }
}
