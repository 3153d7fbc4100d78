//! NCCL collectives for data-parallel training on GPUs (one process per GPU). libnccl is loaded
//! at run time (cudarc's dynamic loading), so builds and CPU machines need no NCCL; a missing
//! library is an [`NcclError::NoLibrary`], checked before cudarc touches it.
//!
//! [`GradComm`] is one rank's communicator: rank 0 makes a unique id ([`GradComm::new_id`]), the
//! training cluster hands its 128 bytes to every process (`pipeline::nccl_id`), and each rank
//! joins with [`GradComm::from_id`] on its [`CudaBackend`]'s stream, so collectives are ordered
//! after the backward pass and before the optimizer without host synchronisation. Sums only:
//! callers pre-scale their gradients by their weight.
//!
//! Only single-rank use runs here ([`grad_comm_self_check`], called by the device check
//! binary); multi-GPU and multi-node training through NCCL is untested.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::safe::{group_end, group_start, Comm, Id, ReduceOp};

use super::backend::CudaBuf;
use super::device::{driver_available, CudaBackend};
use crate::backend::Backend;

/// Bytes in an NCCL unique id (`NCCL_UNIQUE_ID_BYTES`).
pub const ID_BYTES: usize = 128;

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
    #[error("NCCL communicator: {0}")]
    Invalid(String),
    #[error("NCCL self-check: {0}")]
    Mismatch(String),
}

/// Whether libnccl can be loaded.
pub fn nccl_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::nccl::sys::is_culib_present() }
}

/// The CUDA driver and libnccl both load (checked before any cudarc NCCL call, which would
/// panic without them).
pub fn check_available() -> Result<(), NcclError> {
    if !driver_available() {
        return Err(NcclError::NoDriver);
    }
    if !nccl_available() {
        return Err(NcclError::NoLibrary);
    }
    Ok(())
}

fn nccl(op: &'static str) -> impl Fn(cudarc::nccl::result::NcclError) -> NcclError {
    move |e| NcclError::Nccl {
        op,
        code: format!("{:?}", e.0),
    }
}

fn drv(during: &'static str) -> impl Fn(cudarc::driver::DriverError) -> NcclError {
    move |e| NcclError::Driver(format!("{during}: {e}"))
}

/// One rank's NCCL communicator for summing gradients across the ranks of a training cluster,
/// bound to a backend's stream.
#[derive(Debug)]
pub struct GradComm {
    comm: Comm,
    stream: Arc<CudaStream>,
}

impl GradComm {
    /// A fresh unique id (rank 0 only; hand its bytes to every other rank).
    pub fn new_id() -> Result<[u8; ID_BYTES], NcclError> {
        check_available()?;
        let id = Id::new().map_err(nccl("get unique id"))?;
        // c_char is i8 or u8 depending on the target: reinterpret the bits either way
        #[allow(clippy::unnecessary_cast)]
        Ok(id.internal().map(|c| c as u8))
    }

    /// Joins the communicator of `world` ranks as `rank`. Blocks until every rank has joined
    /// (NCCL's bootstrap: there is no timeout, so call it only once the other ranks are known
    /// to be alive, e.g. right after they received the id).
    pub fn from_id(
        backend: &CudaBackend,
        rank: usize,
        world: usize,
        id: &[u8; ID_BYTES],
    ) -> Result<Self, NcclError> {
        if world == 0 || rank >= world || i32::try_from(world).is_err() {
            return Err(NcclError::Invalid(format!(
                "rank {rank} is not in 0..{world}"
            )));
        }
        check_available()?;
        let stream = backend.stream().clone();
        let id = Id::uninit(id.map(|b| b as std::ffi::c_char));
        let comm = Comm::from_rank(stream.clone(), rank, world, id).map_err(nccl("init rank"))?;
        Ok(Self { comm, stream })
    }

    /// This rank's index.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.comm.world_size()
    }

    /// Sums a contiguous f32 buffer over every rank, in place (queued on the stream).
    pub fn sum_in_place(&self, buf: &mut CudaSlice<f32>) -> Result<(), NcclError> {
        self.comm
            .all_reduce_in_place(buf, &ReduceOp::Sum)
            .map(drop)
            .map_err(nccl("all-reduce"))
    }

    /// Sums each backend buffer over every rank, in place, as one NCCL group (one fused launch
    /// instead of one per buffer). Every rank passes buffers of the same lengths in the same
    /// order.
    pub fn sum_buffers_in_place(&self, bufs: &mut [CudaBuf]) -> Result<(), NcclError> {
        let mut spans = Vec::with_capacity(bufs.len());
        for (i, b) in bufs.iter_mut().enumerate() {
            let s = b.slice_mut().ok_or_else(|| {
                NcclError::Invalid(format!(
                    "buffer {i} is unavailable (its allocation failed earlier)"
                ))
            })?;
            spans.push(s);
        }
        group_start().map_err(nccl("group start"))?;
        let mut queued = Ok(());
        for s in &mut spans {
            if let Err(e) = self.comm.all_reduce_in_place(&mut **s, &ReduceOp::Sum) {
                queued = Err(nccl("all-reduce")(e));
                break;
            }
        }
        // the group must be closed even when an enqueue failed
        let ended = group_end().map(drop).map_err(nccl("group end"));
        queued.and(ended)
    }

    /// Sums a short host vector (counters, losses) over every rank; returns once the result is
    /// back on the host.
    pub fn sum_scalars(&self, values: &mut [f64]) -> Result<(), NcclError> {
        if values.is_empty() {
            return Ok(());
        }
        let mut dev = self
            .stream
            .clone_htod(values)
            .map_err(drv("uploading scalars"))?;
        self.comm
            .all_reduce_in_place(&mut dev, &ReduceOp::Sum)
            .map_err(nccl("all-reduce"))?;
        let host = self
            .stream
            .clone_dtoh(&dev)
            .map_err(drv("downloading scalars"))?;
        values.copy_from_slice(&host);
        Ok(())
    }
}

/// Sum-all-reduces `data` over a one-rank communicator on GPU `ordinal` (the result equals the
/// input): proves libnccl loads, a communicator initialises and a collective runs on this GPU.
pub fn single_rank_all_reduce(ordinal: usize, data: &[f32]) -> Result<Vec<f32>, NcclError> {
    check_available()?;
    let ctx = CudaContext::new(ordinal).map_err(drv("creating the context"))?;
    let stream = ctx.default_stream();
    let send = stream.clone_htod(data).map_err(drv("upload"))?;
    let mut recv = stream
        .alloc_zeros::<f32>(data.len())
        .map_err(drv("allocation"))?;
    let id = Id::new().map_err(nccl("get unique id"))?;
    let comm = Comm::from_rank(stream.clone(), 0, 1, id).map_err(nccl("init rank"))?;
    comm.all_reduce(&send, &mut recv, &ReduceOp::Sum)
        .map_err(nccl("all-reduce"))?;
    stream.clone_dtoh(&recv).map_err(drv("download"))
}

/// Values in the self-check's gradient (1 Mi).
const CHECK_LEN: usize = 1 << 20;

/// The self-check's weight: a power of two, so `weight · x` is exact for every test value.
const CHECK_WEIGHT: f32 = 0.5;

/// Test values in [-1, 1) with 24 significant bits (splitmix64), none so small that halving
/// them leaves the normal range: `CHECK_WEIGHT · x` is exact.
fn check_values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// The training path on one rank: a 1-rank [`GradComm`] from a fresh id on GPU `ordinal`, a
/// 1 Mi-value gradient split into three backend buffers (1000, 1 and the rest), scaled on the
/// device by the weight 0.5 (the backend's `scale_groups`) and summed by one grouped NCCL
/// call; then a contiguous slice and a scalar vector. With one rank the sum is the input, and
/// halving is exact, so every value must equal `0.5 · x` bit for bit (tolerance 0). This
/// checks the plumbing (library, communicator, stream order, buffer addressing), not the
/// arithmetic of a multi-rank sum. Needs everything [`CudaBackend::new`] needs, plus libnccl.
pub fn grad_comm_self_check(ordinal: usize) -> Result<String, NcclError> {
    check_available()?;
    let be = CudaBackend::new(ordinal).map_err(|e| NcclError::Driver(e.to_string()))?;
    let id = GradComm::new_id()?;
    let comm = GradComm::from_id(&be, 0, 1, &id)?;
    let x = check_values(0x6e63_636c, CHECK_LEN);
    let splits = [0, 1000, 1001, CHECK_LEN];
    let mut bufs: Vec<CudaBuf> = splits
        .windows(2)
        .map(|w| <CudaBackend as Backend>::upload(&be, &x[w[0]..w[1]]))
        .collect();
    for b in &mut bufs {
        let n = be.len(b);
        be.scale_groups(b, &[CHECK_WEIGHT], n);
    }
    comm.sum_buffers_in_place(&mut bufs)?;
    let mut got = Vec::with_capacity(CHECK_LEN);
    for b in &bufs {
        got.extend(<CudaBackend as Backend>::download(&be, b));
    }
    if let Some(e) = be.take_error() {
        return Err(NcclError::Driver(e.to_string()));
    }
    let want: Vec<f32> = x.iter().map(|v| CHECK_WEIGHT * v).collect();
    compare("grouped buffers", &got, &want)?;

    let mut flat = be
        .upload(&x)
        .map_err(|e| NcclError::Driver(e.to_string()))?;
    comm.sum_in_place(&mut flat)?;
    let back = be
        .download(&flat)
        .map_err(|e| NcclError::Driver(e.to_string()))?;
    compare("contiguous slice", &back, &x)?;

    let scalars = [1.5, -2.25, 1e300, 0.0];
    let mut s = scalars;
    comm.sum_scalars(&mut s)?;
    if s.map(f64::to_bits) != scalars.map(f64::to_bits) {
        return Err(NcclError::Mismatch(format!(
            "scalars {s:?}, expected {scalars:?}"
        )));
    }
    Ok(format!(
        "NCCL 1-rank GradComm on cuda:{ordinal}: {CHECK_LEN} values in 3 grouped buffers scaled \
         by {CHECK_WEIGHT} and summed, a contiguous slice and {} scalars: all bit-exact",
        scalars.len()
    ))
}

fn compare(what: &str, got: &[f32], want: &[f32]) -> Result<(), NcclError> {
    if got.len() != want.len() {
        return Err(NcclError::Mismatch(format!(
            "{what}: {} values back, expected {}",
            got.len(),
            want.len()
        )));
    }
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(NcclError::Mismatch(format!(
            "{what}: {} of {} values differ, first at {i}: {} (expected {})",
            bad.len(),
            got.len(),
            got[i],
            want[i]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a GPU or libnccl every entry point reports which is missing instead of panicking.
    #[test]
    fn missing_driver_or_library_is_an_error_not_a_panic() {
        if driver_available() && nccl_available() {
            return; // a GPU machine: the device check binary covers the real path
        }
        let missing = |e: NcclError| {
            assert!(
                matches!(e, NcclError::NoDriver | NcclError::NoLibrary),
                "{e}"
            )
        };
        missing(single_rank_all_reduce(0, &[1.0, 2.0]).unwrap_err());
        missing(GradComm::new_id().unwrap_err());
        missing(grad_comm_self_check(0).unwrap_err());
        missing(check_available().unwrap_err());
    }

    /// The self-check's premise: halving its test values is exact (so a 0-tolerance compare
    /// is the right one), and the values are not degenerate.
    #[test]
    fn self_check_values_halve_exactly() {
        let x = check_values(0x6e63_636c, CHECK_LEN);
        for &v in &x {
            let h = CHECK_WEIGHT * v;
            assert_eq!(f64::from(h), 0.5 * f64::from(v), "{v}");
            assert!((-1.0..1.0).contains(&v));
            assert!(h == 0.0 || h.is_normal(), "{v}");
        }
        let distinct: std::collections::HashSet<u32> = x.iter().map(|v| v.to_bits()).collect();
        assert!(distinct.len() > CHECK_LEN / 2, "{}", distinct.len());
        assert!(x.iter().any(|&v| v < -0.9) && x.iter().any(|&v| v > 0.9));
    }

    #[test]
    fn mismatches_name_the_first_differing_value() {
        let e = compare("t", &[1.0, 2.0, 3.0], &[1.0, 2.5, 3.5]).unwrap_err();
        assert!(
            e.to_string().contains("2 of 3 values differ, first at 1"),
            "{e}"
        );
        assert!(compare("t", &[0.0], &[-0.0]).is_err());
        assert!(compare("t", &[1.0], &[1.0, 2.0]).is_err());
        assert!(compare("t", &[1.0, -0.0], &[1.0, -0.0]).is_ok());
    }
}
