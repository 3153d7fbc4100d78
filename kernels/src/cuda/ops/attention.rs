//! Divided space-time attention (kernels/cuda/attention.cu). Three formulations:
//! - tiled fused kernels (any L, f32 or bf16 storage; head split/merge inside the kernels), which
//!   save the log-sum-exp and recompute probabilities in the backward;
//! - a one-warp-per-head fused kernel for very short sequences (temporal, L = T+1 ≤ 8), which
//!   saves the probabilities;
//! - for longer sequences in f32 storage, cuBLAS pointer-batched GEMMs for QKᵀ, PV and their
//!   gradients (tensor cores in TF32 math) that read the heads where the qkv GEMM left them and
//!   write where the next op reads (no permute copies), around a row-softmax kernel — several
//!   times faster than CUDA-core FMAs at L = 197.
//!
//! [`AttentionShape::path`] picks the formulation the f32 `Backend` path uses.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::{cfg, int, launched, long, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::dtype::{kernel_name, Float};
use crate::cuda::error::CudaError;
use crate::cuda::gemm::{GemmMath, GemmShape, HeadLayout};
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

/// How the f32 `Backend` path computes attention for a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnPath {
    /// One warp per (sequence, head), everything in registers: L ≤ [`SHORT_L`], D ≤ 64.
    Short,
    /// cuBLAS pointer-batched GEMMs on the row layouts, around a row-softmax kernel.
    Gemm,
}

/// Longest sequence of the one-warp kernel (`SHORT_L` in attention.cu).
pub const SHORT_L: usize = 8;
/// Largest head dim of the one-warp kernel (32 · `SHORT_C`).
const SHORT_D: usize = 64;
/// Warps per block of the one-warp kernel (`SHORT_WARPS`).
const SHORT_WARPS: usize = 4;

impl AttentionShape {
    /// The formulation for this shape; both save what the backward needs in `probs`
    /// (`[seqs, heads, len, len]` probabilities).
    pub fn path(&self) -> AttnPath {
        if self.len <= SHORT_L && self.head_dim <= SHORT_D {
            AttnPath::Short
        } else {
            AttnPath::Gemm
        }
    }
    fn probs(&self) -> usize {
        self.seqs * self.heads * self.len * self.len
    }
    /// Elements of one `[seqs, len, heads·head_dim]` tensor (out, dout; a third of qkv).
    fn elems(&self) -> usize {
        self.tokens() * self.width()
    }
    /// The shape is valid and `qkv` and the merged-heads tensor (`out` or `dout`, named `what`)
    /// hold its tokens: the checks every attention entry point starts with.
    fn need_io(
        &self,
        op: &'static str,
        qkv: usize,
        (what, len): (&str, usize),
    ) -> Result<(), CudaError> {
        self.check(op)?;
        need(op, "qkv", qkv, 3 * self.elems())?;
        need(op, what, len, self.elems())
    }
    fn short_launch(&self) -> Result<LaunchConfig, CudaError> {
        let blocks = u32::try_from((self.seqs * self.heads).div_ceil(SHORT_WARPS))
            .map_err(|_| CudaError::shape("attention", "too many sequences"))?;
        Ok(cfg((blocks, 1, 1), (32 * SHORT_WARPS as u32, 1, 1)))
    }
    /// The row-major GEMMs of one (sequence, head), each batched over seqs·heads: scores QKᵀ,
    /// PV, and in the backward dP = dO·Vᵀ, dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q.
    fn gemm_shapes(&self) -> AttnGemms {
        let (l, d) = (self.len, self.head_dim);
        let g = |m, n, k, trans_a, trans_b| GemmShape {
            m,
            n,
            k,
            trans_a,
            trans_b,
        };
        AttnGemms {
            scores: g(l, l, d, false, true),
            pv: g(l, d, l, false, false),
            dp: g(l, l, d, false, true),
            dv: g(l, d, l, true, false),
            dq: g(l, d, l, false, false),
            dk: g(l, d, l, true, false),
        }
    }
}

impl AttentionShape {
    /// Where each (sequence, head) matrix lives for the in-place GEMM formulation: q, k, v inside
    /// `[S, L, 3, H, D]` qkv rows (and the same for dqkv), probabilities `[S, H, L, L]`, outputs
    /// `[S, L, H·D]` (and dout).
    fn head_layouts(&self) -> AttnLayouts {
        let (l, h, d) = (self.len, self.heads, self.head_dim);
        let c = h * d;
        let qkv = |part: usize| HeadLayout {
            offset: part * c,
            stride_s: l * 3 * c,
            stride_h: d,
            ld: 3 * c,
        };
        AttnLayouts {
            q: qkv(0),
            k: qkv(1),
            v: qkv(2),
            p: HeadLayout {
                offset: 0,
                stride_s: h * l * l,
                stride_h: l * l,
                ld: l,
            },
            o: HeadLayout {
                offset: 0,
                stride_s: l * c,
                stride_h: d,
                ld: c,
            },
        }
    }
}

/// [`AttentionShape::head_layouts`].
#[derive(Debug, Clone, Copy)]
struct AttnLayouts {
    q: HeadLayout,
    k: HeadLayout,
    v: HeadLayout,
    p: HeadLayout,
    o: HeadLayout,
}

/// GEMM shapes of the batched-GEMM formulation ([`AttentionShape::gemm_shapes`]).
#[derive(Debug, Clone, Copy)]
struct AttnGemms {
    scores: GemmShape,
    pv: GemmShape,
    dp: GemmShape,
    dv: GemmShape,
    dq: GemmShape,
    dk: GemmShape,
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
        shape.need_io(OP, qkv.len(), ("out", out.len()))?;
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
        shape.need_io(OP, qkv.len(), ("dout", dout.len()))?;
        let (tok, w) = (shape.tokens(), shape.width());
        need(OP, "out", out.len(), tok * w)?;
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

impl CudaBackend {
    /// The f32 `Backend` path's forward: `out` from `qkv`, saving probabilities in `probs`
    /// (`[seqs, heads, len, len]`), by [`AttentionShape::path`].
    pub fn attention_probs_fwd(
        &self,
        shape: AttentionShape,
        qkv: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        probs: &mut CudaSlice<f32>,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        const OP: &str = "attention_fwd";
        shape.need_io(OP, qkv.len(), ("out", out.len()))?;
        need(OP, "probs", probs.len(), shape.probs())?;
        let scale = shape.scale();
        match shape.path() {
            AttnPath::Short => self.attention_short_fwd(shape, qkv, out, probs, scale),
            AttnPath::Gemm => self.attention_heads_fwd(shape, qkv, out, probs, scale, math),
        }
    }

    /// Backward of [`Self::attention_probs_fwd`]: overwrites `dqkv`.
    pub fn attention_probs_bwd(
        &self,
        shape: AttentionShape,
        qkv: &CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        probs: &CudaSlice<f32>,
        dqkv: &mut CudaSlice<f32>,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        const OP: &str = "attention_bwd";
        shape.need_io(OP, qkv.len(), ("dout", dout.len()))?;
        need(OP, "probs", probs.len(), shape.probs())?;
        need(OP, "dqkv", dqkv.len(), 3 * shape.elems())?;
        let scale = shape.scale();
        match shape.path() {
            AttnPath::Short => self.attention_short_bwd(shape, qkv, dout, probs, dqkv, scale),
            AttnPath::Gemm => self.attention_heads_bwd(shape, qkv, dout, probs, dqkv, scale, math),
        }
    }

    /// One-warp kernel forward (L ≤ 8, D ≤ 64), f32 or bf16 storage; probabilities in f32.
    pub fn attention_short_fwd<T: Float>(
        &self,
        shape: AttentionShape,
        qkv: &CudaSlice<T>,
        out: &mut CudaSlice<T>,
        probs: &mut CudaSlice<f32>,
        scale: f32,
    ) -> Result<(), CudaError> {
        const OP: &str = "attention_short_fwd";
        self.short_checks(OP, shape, qkv.len(), ("out", out.len()), probs.len())?;
        let args = short_args(OP, shape)?;
        let name = kernel_name::<T>("attn_short_fwd");
        let f = self.function(Family::Attention, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(qkv).arg(out).arg(probs);
        for a in &args {
            b.arg(a);
        }
        b.arg(&scale);
        // SAFETY: sizes checked against the shape; L ≤ SHORT_L and D ≤ SHORT_D.
        launched(&name, unsafe { b.launch(shape.short_launch()?) }.map(drop))
    }

    /// One-warp kernel backward from the saved probabilities: overwrites `dqkv`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_short_bwd<T: Float>(
        &self,
        shape: AttentionShape,
        qkv: &CudaSlice<T>,
        dout: &CudaSlice<T>,
        probs: &CudaSlice<f32>,
        dqkv: &mut CudaSlice<T>,
        scale: f32,
    ) -> Result<(), CudaError> {
        const OP: &str = "attention_short_bwd";
        self.short_checks(OP, shape, qkv.len(), ("dout", dout.len()), probs.len())?;
        need(OP, "dqkv", dqkv.len(), 3 * shape.elems())?;
        let args = short_args(OP, shape)?;
        let name = kernel_name::<T>("attn_short_bwd");
        let f = self.function(Family::Attention, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(qkv).arg(dout).arg(probs).arg(dqkv);
        for a in &args {
            b.arg(a);
        }
        b.arg(&scale);
        // SAFETY: as in the forward.
        launched(&name, unsafe { b.launch(shape.short_launch()?) }.map(drop))
    }

    fn short_checks(
        &self,
        op: &'static str,
        shape: AttentionShape,
        qkv: usize,
        io: (&str, usize),
        probs: usize,
    ) -> Result<(), CudaError> {
        shape.need_io(op, qkv, io)?;
        if shape.path() != AttnPath::Short {
            return Err(CudaError::shape(
                op,
                format!("needs len ≤ {SHORT_L} and head_dim ≤ {SHORT_D}, got {shape:?}"),
            ));
        }
        need(op, "probs", probs, shape.probs())
    }

    /// Launch shape of the row-softmax kernels: one warp per row, 8 rows per block.
    fn softmax_config(rows: usize, len: usize) -> Result<(LaunchConfig, i64, i32), CudaError> {
        const OP: &str = "attention_softmax";
        let warps = 8usize;
        let blocks = u32::try_from(rows.div_ceil(warps))
            .map_err(|_| CudaError::shape(OP, "too many rows"))?;
        Ok((
            cfg((blocks, 1, 1), (32 * warps as u32, 1, 1)),
            long(OP, "rows", rows)?,
            int(OP, "len", len)?,
        ))
    }

    /// Row softmax in place over `rows` rows of `len`.
    fn softmax_rows_fwd(
        &self,
        p: &mut CudaSlice<f32>,
        rows: usize,
        len: usize,
    ) -> Result<(), CudaError> {
        need("attention_softmax", "p", p.len(), rows * len)?;
        let (config, r, l) = Self::softmax_config(rows, len)?;
        let f = self.function(Family::Attention, "softmax_rows_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(p).arg(&r).arg(&l);
        // SAFETY: p holds rows·len elements; one warp per row.
        launched("softmax_rows_f32", unsafe { b.launch(config) }.map(drop))
    }

    /// Softmax backward in place: `grad ← p ⊙ (grad − Σ p·grad)` per row.
    fn softmax_rows_bwd(
        &self,
        p: &CudaSlice<f32>,
        grad: &mut CudaSlice<f32>,
        rows: usize,
        len: usize,
    ) -> Result<(), CudaError> {
        need("attention_softmax", "p", p.len(), rows * len)?;
        need("attention_softmax", "grad", grad.len(), rows * len)?;
        let (config, r, l) = Self::softmax_config(rows, len)?;
        let f = self.function(Family::Attention, "softmax_rows_bwd_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(p).arg(grad).arg(&r).arg(&l);
        // SAFETY: p and grad hold rows·len elements; one warp per row.
        launched(
            "softmax_rows_bwd_f32",
            unsafe { b.launch(config) }.map(drop),
        )
    }

    /// The batched-GEMM formulation reading heads in place (pointer-array batching): no permutes.
    fn attention_heads_fwd(
        &self,
        shape: AttentionShape,
        qkv: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        probs: &mut CudaSlice<f32>,
        scale: f32,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        let (s, h, g, l) = (
            shape.seqs,
            shape.heads,
            shape.gemm_shapes(),
            shape.head_layouts(),
        );
        self.gemm_heads(
            g.scores,
            s,
            h,
            (qkv, l.q),
            (qkv, l.k),
            (probs, l.p),
            scale,
            0.0,
            math,
        )?;
        self.softmax_rows_fwd(probs, s * h * shape.len, shape.len)?;
        self.gemm_heads(
            g.pv,
            s,
            h,
            (&*probs, l.p),
            (qkv, l.v),
            (out, l.o),
            1.0,
            0.0,
            math,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_heads_bwd(
        &self,
        shape: AttentionShape,
        qkv: &CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        probs: &CudaSlice<f32>,
        dqkv: &mut CudaSlice<f32>,
        scale: f32,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        let (s, h, g, l) = (
            shape.seqs,
            shape.heads,
            shape.gemm_shapes(),
            shape.head_layouts(),
        );
        let mut ds = self.scratch::<f32>(shape.probs())?;
        self.gemm_heads(
            g.dp,
            s,
            h,
            (dout, l.o),
            (qkv, l.v),
            (&mut ds, l.p),
            1.0,
            0.0,
            math,
        )?;
        self.gemm_heads(
            g.dv,
            s,
            h,
            (probs, l.p),
            (dout, l.o),
            (&mut *dqkv, l.v),
            1.0,
            0.0,
            math,
        )?;
        self.softmax_rows_bwd(probs, &mut ds, s * h * shape.len, shape.len)?;
        self.gemm_heads(
            g.dq,
            s,
            h,
            (&ds, l.p),
            (qkv, l.k),
            (&mut *dqkv, l.q),
            scale,
            0.0,
            math,
        )?;
        self.gemm_heads(
            g.dk,
            s,
            h,
            (&ds, l.p),
            (qkv, l.q),
            (dqkv, l.k),
            scale,
            0.0,
            math,
        )
    }
}

/// The `(S, L, H, D)` ints of the one-warp kernels.
fn short_args(op: &'static str, shape: AttentionShape) -> Result<[i32; 4], CudaError> {
    Ok([
        int(op, "seqs", shape.seqs)?,
        int(op, "len", shape.len)?,
        int(op, "heads", shape.heads)?,
        int(op, "head_dim", shape.head_dim)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttnDims, Backend, CpuBackend};
    use rand::{Rng, SeedableRng};

    /// [`CudaBackend::gemm_heads`] on the host: matrix (s, h) of each operand at its layout.
    #[allow(clippy::too_many_arguments)]
    fn host_gemm_heads(
        g: GemmShape,
        sh: AttentionShape,
        (a, la): (&[f64], HeadLayout),
        (b, lb): (&[f64], HeadLayout),
        (c, lc): (&mut [f64], HeadLayout),
        alpha: f64,
    ) {
        let (m, n, k) = (g.m, g.n, g.k);
        for s in 0..sh.seqs {
            for h in 0..sh.heads {
                let at = |l: HeadLayout| l.offset + s * l.stride_s + h * l.stride_h;
                let (a0, b0, c0) = (at(la), at(lb), at(lc));
                for i in 0..m {
                    for j in 0..n {
                        let mut acc = 0.0;
                        for t in 0..k {
                            let x = if g.trans_a {
                                a[a0 + t * la.ld + i]
                            } else {
                                a[a0 + i * la.ld + t]
                            };
                            let y = if g.trans_b {
                                b[b0 + j * lb.ld + t]
                            } else {
                                b[b0 + t * lb.ld + j]
                            };
                            acc += x * y;
                        }
                        c[c0 + i * lc.ld + j] = alpha * acc;
                    }
                }
            }
        }
    }

    fn host_softmax(p: &mut [f64], l: usize) {
        for row in p.chunks_mut(l) {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            row.iter_mut().for_each(|x| *x = (*x - m).exp());
            let z: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= z);
        }
    }

    fn host_softmax_bwd(p: &[f64], g: &mut [f64], l: usize) {
        for (grow, prow) in g.chunks_mut(l).zip(p.chunks(l)) {
            let dot: f64 = grow.iter().zip(prow).map(|(a, b)| a * b).sum();
            grow.iter_mut()
                .zip(prow)
                .for_each(|(x, p)| *x = p * (*x - dot));
        }
    }

    /// The in-place formulation (`attention_heads_fwd/bwd`: pointer-batched GEMMs reading and
    /// writing the row layouts directly), run on the host with the same shapes and layouts,
    /// equals the CPU backend's attention; every dqkv element is written (NaN-poisoned start).
    #[test]
    fn in_place_gemm_formulation_matches_the_cpu_attention() {
        let sh = AttentionShape {
            seqs: 3,
            len: 11,
            heads: 2,
            head_dim: 5,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let n = sh.elems();
        let qkv: Vec<f32> = (0..3 * n).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let dout: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let d = AttnDims {
            seqs: sh.seqs,
            len: sh.len,
            heads: sh.heads,
            head_dim: sh.head_dim,
        };
        let cpu = CpuBackend;
        let mut out = cpu.zeros(n);
        let mut probs = cpu.zeros(sh.probs());
        cpu.attention_fwd(&qkv, &mut out, &mut probs, d);
        let mut dqkv = cpu.zeros(3 * n);
        cpu.attention_bwd(&dout, &qkv, &probs, &mut dqkv, d);

        let (g, l, len) = (sh.gemm_shapes(), sh.head_layouts(), sh.len);
        let scale = sh.scale() as f64;
        let x: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
        let dy: Vec<f64> = dout.iter().map(|&v| v as f64).collect();
        let mut p = vec![f64::NAN; sh.probs()];
        host_gemm_heads(g.scores, sh, (&x, l.q), (&x, l.k), (&mut p, l.p), scale);
        host_softmax(&mut p, len);
        let mut o = vec![f64::NAN; n];
        host_gemm_heads(g.pv, sh, (&p, l.p), (&x, l.v), (&mut o, l.o), 1.0);
        let mut ds = vec![f64::NAN; sh.probs()];
        let mut dx = vec![f64::NAN; 3 * n];
        host_gemm_heads(g.dp, sh, (&dy, l.o), (&x, l.v), (&mut ds, l.p), 1.0);
        host_gemm_heads(g.dv, sh, (&p, l.p), (&dy, l.o), (&mut dx, l.v), 1.0);
        host_softmax_bwd(&p, &mut ds, len);
        host_gemm_heads(g.dq, sh, (&ds, l.p), (&x, l.k), (&mut dx, l.q), scale);
        host_gemm_heads(g.dk, sh, (&ds, l.p), (&x, l.q), (&mut dx, l.k), scale);

        let close = |want: &[f32], got: &[f64], what: &str| {
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                assert!(
                    (*w as f64 - g).abs() <= 1e-5 * (1.0 + g.abs()),
                    "{what}[{i}]: cpu {w} vs {g}"
                );
            }
        };
        close(&probs, &p, "probs");
        close(&out, &o, "out");
        close(&dqkv, &dx, "dqkv");
    }

    /// The layouts' extents are exactly the buffers the model allocates: the last matrix of each
    /// operand ends at the buffer's end (no out-of-bounds reach, no part left unaddressed).
    #[test]
    fn head_layouts_end_at_the_buffer_ends() {
        let sh = AttentionShape {
            seqs: 4,
            len: 197,
            heads: 12,
            head_dim: 64,
        };
        let (l, n, c) = (sh.head_layouts(), sh.elems(), sh.width());
        let (s, h, len, d) = (sh.seqs, sh.heads, sh.len, sh.head_dim);
        assert_eq!(l.v.extent(s, h, len, d), 3 * n);
        assert_eq!(l.q.extent(s, h, len, d), 3 * n - 2 * c);
        assert_eq!(l.o.extent(s, h, len, d), n);
        assert_eq!(l.p.extent(s, h, len, len), sh.probs());
    }

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
