//! Fused divided space-time attention (kernels/cuda/attention.cu): one launch per direction,
//! head split/merge done inside the kernels.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{cfg, int, launched, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::dtype::{kernel_name, Float};
use crate::cuda::error::CudaError;
use crate::cuda::source::Family;

/// Grid or block dimensions.
type Dim3 = (u32, u32, u32);

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
    /// (grid, block) for one kernel of attention.cu: 4 rows per warp, up to 8 warps per block, fewer
    /// for head_dim > 64 so the tiles fit the kernels' 47 KiB static shared pool (the forward keeps
    /// 4 warps there, the backward kernels, which stage two row sets, 2). Mirrors the launch rule
    /// documented in attention.cu and used by tests/emu/attention_driver.cpp.
    fn launch_dims(&self, kernel: AttnKernel) -> Result<(Dim3, Dim3), CudaError> {
        let max_warps = match (self.head_dim <= 64, kernel) {
            (true, _) => 8,
            (false, AttnKernel::Forward) => 4,
            (false, AttnKernel::Backward) => 2,
        };
        let warps = self.len.div_ceil(ROWS_PER_WARP).min(max_warps);
        let rows = ROWS_PER_WARP * warps;
        let seqs = u32::try_from(self.seqs)
            .map_err(|_| CudaError::shape("attention", "too many sequences"))?;
        let tiles = u32::try_from(self.len.div_ceil(rows))
            .map_err(|_| CudaError::shape("attention", "sequence too long"))?;
        Ok(((seqs, self.heads as u32, tiles), (32 * warps as u32, 1, 1)))
    }
}

/// Rows (queries or keys) each warp owns in attention.cu (`RW`).
const ROWS_PER_WARP: usize = 4;

/// Which attention kernel a launch is for: they differ in shared-memory use per row.
#[derive(Debug, Clone, Copy)]
enum AttnKernel {
    Forward,
    Backward,
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
        let (grid, block) = shape.launch_dims(AttnKernel::Forward)?;
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
        // SAFETY: buffer sizes checked against the shape; head_dim ≤ MAXD.
        launched(&name, unsafe { b.launch(cfg(grid, block)) }.map(drop))
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
        let (grid, block) = shape.launch_dims(AttnKernel::Backward)?;
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
        launched(&name_q, unsafe { b.launch(cfg(grid, block)) }.map(drop))?;
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
        launched(&name_kv, unsafe { b.launch(cfg(grid, block)) }.map(drop))
    }
}
