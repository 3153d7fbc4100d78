//! Fused divided space-time attention (kernels/cuda/attention.cu): one launch per direction,
//! head split/merge done inside the kernels.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::{int, launched, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::dtype::{kernel_name, Float};
use crate::cuda::error::CudaError;
use crate::cuda::source::Family;

/// `seqs` independent sequences of `len` tokens, `heads` heads of `head_dim` (≤ 128).
/// Temporal attention: seqs = B·196, len = T+1; spatial: seqs = B·T, len = 197.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub seqs: usize,
    pub len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn check(&self, op: &'static str) -> Result<(), CudaError> {
        if self.head_dim == 0 || self.head_dim > 128 {
            return Err(CudaError::shape(
                op,
                format!("head_dim {} not in 1..=128", self.head_dim),
            ));
        }
        if self.seqs == 0 || self.len == 0 || self.heads == 0 {
            return Err(CudaError::shape(op, format!("empty attention {self:?}")));
        }
        if self.heads > 65535 {
            return Err(CudaError::shape(
                op,
                format!("{} heads exceed the grid limit", self.heads),
            ));
        }
        Ok(())
    }
    fn tokens(&self) -> usize {
        self.seqs * self.len
    }
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Reference scale 1/sqrt(head_dim).
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
    /// Launch configuration of one kernel of attention.cu: 4 rows per warp, up to 8 warps per
    /// block (fewer for short sequences, and for head_dim > 64 so the tiles stay within the 48 KiB
    /// of dynamic shared memory a launch gets without opting in), and the shared bytes for the
    /// tile layout at the top of that kernel. Mirrored by tests/emu/attention_driver.cpp.
    fn launch(&self, kernel: AttnKernel) -> Result<LaunchConfig, CudaError> {
        let max_warps = match (self.head_dim <= 64, kernel) {
            (true, _) => 8,
            (false, AttnKernel::Forward) => 4,
            (false, _) => 2,
        };
        let warps = self.len.div_ceil(ROWS_PER_WARP).min(max_warps);
        let rows = ROWS_PER_WARP * warps;
        let seqs = u32::try_from(self.seqs)
            .map_err(|_| CudaError::shape("attention", "too many sequences"))?;
        let tiles = u32::try_from(self.len.div_ceil(rows))
            .map_err(|_| CudaError::shape("attention", "sequence too long"))?;
        let shared = 4 * shared_floats(kernel, self.head_dim, warps);
        if shared > MAX_SHARED_BYTES {
            return Err(CudaError::shape(
                "attention",
                format!("{kernel:?} tiles need {shared} bytes of shared memory for {self:?}"),
            ));
        }
        Ok(LaunchConfig {
            grid_dim: (seqs, self.heads as u32, tiles),
            block_dim: (32 * warps as u32, 1, 1),
            shared_mem_bytes: shared as u32,
        })
    }
}

/// Rows (queries or keys) each warp owns in attention.cu (`RW`).
const ROWS_PER_WARP: usize = 4;
/// Rows per streamed tile in attention.cu (`TILE`, one per lane).
const TILE: usize = 32;
/// Dynamic shared memory a launch may use without opting in to more.
const MAX_SHARED_BYTES: usize = 48 * 1024;

/// Which attention kernel a launch is for: they differ in shared-memory use per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttnKernel {
    Forward,
    BackwardQ,
    BackwardKv,
}

/// f32 slots of shared memory `kernel` uses with `warps` warps at `head_dim`: the tile layout
/// declared at the top of each kernel in attention.cu, rows padded to `attn_stride`.
fn shared_floats(kernel: AttnKernel, head_dim: usize, warps: usize) -> usize {
    let ld = head_dim.div_ceil(8) * 8 + 4;
    let rows = ROWS_PER_WARP * warps;
    let per_warp = ROWS_PER_WARP * TILE;
    match kernel {
        // q block, K and V tiles, one probability row per warp row
        AttnKernel::Forward => (rows + 2 * TILE) * ld + warps * per_warp,
        // q and dO blocks, K and V tiles, dS rows
        AttnKernel::BackwardQ => (2 * rows + 2 * TILE) * ld + warps * per_warp,
        // k and v blocks, q and dO tiles, lse and delta tiles, P and dS rows
        AttnKernel::BackwardKv => (2 * rows + 2 * TILE) * ld + 2 * TILE + 2 * warps * per_warp,
    }
}

impl CudaBackend {
    /// out[S, L, H·D] = softmax((scale·q)·kᵀ)·v per head, from qkv[S, L, 3, H, D]; saves lse[S, H, L].
    pub fn attention_fwd<T: Float>(
        &self,
        shape: AttentionShape,
        qkv: &CudaSlice<T>,
        out: &mut CudaSlice<T>,
        lse: &mut CudaSlice<f32>,
        scale: f32,
    ) -> Result<(), CudaError> {
        const OP: &str = "attention_fwd";
        shape.check(OP)?;
        need(OP, "qkv", qkv.len(), 3 * shape.tokens() * shape.width())?;
        need(OP, "out", out.len(), shape.tokens() * shape.width())?;
        need(OP, "lse", lse.len(), shape.tokens() * shape.heads)?;
        let (l, h, d) = (
            int(OP, "len", shape.len)?,
            int(OP, "heads", shape.heads)?,
            int(OP, "head_dim", shape.head_dim)?,
        );
        let config = shape.launch(AttnKernel::Forward)?;
        let name = kernel_name::<T>("attn_fwd");
        let f = self.function(Family::Attention, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(qkv)
            .arg(out)
            .arg(lse)
            .arg(&l)
            .arg(&h)
            .arg(&d)
            .arg(&scale);
        // SAFETY: buffer sizes checked against the shape; head_dim ≤ MAXD; shared bytes per layout.
        launched(&name, unsafe { b.launch(config) }.map(drop))
    }

    /// dqkv (fully written) from dout, given the forward's qkv, out and lse. `delta` is scratch of
    /// S·H·L f32 (Σ dO·O per row).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_bwd<T: Float>(
        &self,
        shape: AttentionShape,
        qkv: &CudaSlice<T>,
        out: &CudaSlice<T>,
        dout: &CudaSlice<T>,
        lse: &CudaSlice<f32>,
        delta: &mut CudaSlice<f32>,
        dqkv: &mut CudaSlice<T>,
        scale: f32,
    ) -> Result<(), CudaError> {
        const OP: &str = "attention_bwd";
        shape.check(OP)?;
        let (tok, w) = (shape.tokens(), shape.width());
        need(OP, "qkv", qkv.len(), 3 * tok * w)?;
        need(OP, "out", out.len(), tok * w)?;
        need(OP, "dout", dout.len(), tok * w)?;
        need(OP, "lse", lse.len(), tok * shape.heads)?;
        need(OP, "delta", delta.len(), tok * shape.heads)?;
        need(OP, "dqkv", dqkv.len(), 3 * tok * w)?;
        let (l, h, d) = (
            int(OP, "len", shape.len)?,
            int(OP, "heads", shape.heads)?,
            int(OP, "head_dim", shape.head_dim)?,
        );
        let config_q = shape.launch(AttnKernel::BackwardQ)?;
        let config_kv = shape.launch(AttnKernel::BackwardKv)?;
        let name_q = kernel_name::<T>("attn_bwd_q");
        let fq = self.function(Family::Attention, &name_q)?;
        let mut b = self.stream.launch_builder(&fq);
        b.arg(qkv)
            .arg(out)
            .arg(dout)
            .arg(lse)
            .arg(&mut *delta)
            .arg(&mut *dqkv)
            .arg(&l)
            .arg(&h)
            .arg(&d)
            .arg(&scale);
        // SAFETY: sizes checked above.
        launched(&name_q, unsafe { b.launch(config_q) }.map(drop))?;
        let name_kv = kernel_name::<T>("attn_bwd_kv");
        let fkv = self.function(Family::Attention, &name_kv)?;
        let mut b = self.stream.launch_builder(&fkv);
        b.arg(qkv)
            .arg(dout)
            .arg(lse)
            .arg(&*delta)
            .arg(dqkv)
            .arg(&l)
            .arg(&h)
            .arg(&d)
            .arg(&scale);
        // SAFETY: sizes checked above.
        launched(&name_kv, unsafe { b.launch(config_kv) }.map(drop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every head_dim the shape check admits, at every block width the launch rule can pick,
    /// stays within the shared memory a launch gets without opting in.
    #[test]
    fn tile_layouts_fit_default_shared_memory() {
        for head_dim in 1..=128 {
            for len in [1, 5, 17, 33, 197, 1000] {
                let shape = AttentionShape {
                    seqs: 1,
                    len,
                    heads: 1,
                    head_dim,
                };
                for kernel in [
                    AttnKernel::Forward,
                    AttnKernel::BackwardQ,
                    AttnKernel::BackwardKv,
                ] {
                    let c = shape.launch(kernel).expect("launch config");
                    assert!(
                        c.shared_mem_bytes as usize <= MAX_SHARED_BYTES,
                        "{kernel:?} D={head_dim} L={len}: {} bytes",
                        c.shared_mem_bytes
                    );
                    assert!(c.block_dim.0.is_multiple_of(32) && c.block_dim.0 <= 256);
                    let rows = ROWS_PER_WARP * (c.block_dim.0 as usize / 32);
                    assert!(c.grid_dim.2 as usize * rows >= len);
                }
            }
        }
    }
}
