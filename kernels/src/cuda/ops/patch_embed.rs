//! Patch embedding: im2col on the device (kernels/cuda/patch_embed.cu) + cuBLAS GEMM + bias.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{cfg, int, launched, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::dtype::{kernel_name, Float};
use crate::cuda::error::CudaError;
use crate::cuda::gemm::{GemmMath, GemmShape};
use crate::cuda::source::Family;

/// Clip batch geometry: input B×Cin×T×H×W, square patches of `patch` pixels, `dim` output channels.
#[derive(Debug, Clone, Copy)]
pub struct PatchGeom {
    pub batch: usize,
    pub in_ch: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub patch: usize,
    pub dim: usize,
}

impl PatchGeom {
    /// Patches per frame.
    pub fn patches(&self) -> usize {
        (self.height / self.patch) * (self.width / self.patch)
    }
    /// Rows of the unfolded matrix, ordered (b, t, n).
    pub fn rows(&self) -> usize {
        self.batch * self.frames * self.patches()
    }
    /// Columns of the unfolded matrix (Cin·p·p), ordered (cin, kh, kw).
    pub fn k(&self) -> usize {
        self.in_ch * self.patch * self.patch
    }
    /// Input elements.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_ch * self.frames * self.height * self.width
    }
    fn check(&self, op: &'static str) -> Result<[i32; 6], CudaError> {
        if self.patch == 0
            || self.patch > self.height
            || self.patch > self.width
            || self.dim == 0
            || self.rows() == 0
        {
            return Err(CudaError::shape(
                op,
                format!("invalid patch geometry {self:?}"),
            ));
        }
        Ok([
            int(op, "batch", self.batch)?,
            int(op, "in_ch", self.in_ch)?,
            int(op, "frames", self.frames)?,
            int(op, "height", self.height)?,
            int(op, "width", self.width)?,
            int(op, "patch", self.patch)?,
        ])
    }
}

impl CudaBackend {
    /// cols[rows, k] = im2col(x).
    pub fn patch_unfold<T: Float>(
        &self,
        geom: PatchGeom,
        x: &CudaSlice<f32>,
        cols: &mut CudaSlice<T>,
    ) -> Result<(), CudaError> {
        const OP: &str = "patch_unfold";
        let [b_, c_, t_, h_, w_, p_] = geom.check(OP)?;
        need(OP, "x", x.len(), geom.input_len())?;
        need(OP, "cols", cols.len(), geom.rows() * geom.k())?;
        let name = kernel_name::<T>("patch_unfold");
        let f = self.function(Family::PatchEmbed, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x)
            .arg(cols)
            .arg(&b_)
            .arg(&c_)
            .arg(&t_)
            .arg(&h_)
            .arg(&w_)
            .arg(&p_);
        // SAFETY: sizes checked above.
        launched(
            &name,
            unsafe {
                b.launch(cfg(
                    (self.grid_for(geom.rows() * geom.k()), 1, 1),
                    (256, 1, 1),
                ))
            }
            .map(drop),
        )
    }

    /// g_x = col2im(g_cols) (written; pixels outside the patch grid get 0).
    pub fn patch_fold<T: Float>(
        &self,
        geom: PatchGeom,
        g_cols: &CudaSlice<T>,
        g_x: &mut CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        const OP: &str = "patch_fold";
        let [b_, c_, t_, h_, w_, p_] = geom.check(OP)?;
        need(OP, "g_cols", g_cols.len(), geom.rows() * geom.k())?;
        need(OP, "g_x", g_x.len(), geom.input_len())?;
        let name = kernel_name::<T>("patch_fold");
        let f = self.function(Family::PatchEmbed, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(g_cols)
            .arg(g_x)
            .arg(&b_)
            .arg(&c_)
            .arg(&t_)
            .arg(&h_)
            .arg(&w_)
            .arg(&p_);
        // SAFETY: sizes checked above.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(geom.input_len()), 1, 1), (256, 1, 1))) }
                .map(drop),
        )
    }

    /// out[rows, dim] = im2col(x)·Wᵀ + bias, W = [dim, Cin·p·p] (Conv2d weight flattened);
    /// `cols` is scratch of rows·k elements kept for the backward.
    #[allow(clippy::too_many_arguments)]
    pub fn patch_embed_fwd<T: Float>(
        &self,
        geom: PatchGeom,
        x: &CudaSlice<f32>,
        weight: &CudaSlice<T>,
        bias: &CudaSlice<f32>,
        cols: &mut CudaSlice<T>,
        out: &mut CudaSlice<T>,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        self.patch_unfold(geom, x, cols)?;
        let shape = GemmShape {
            m: geom.rows(),
            n: geom.dim,
            k: geom.k(),
            trans_a: false,
            trans_b: true,
        };
        self.gemm(shape, cols, weight, out, 1.0, 0.0, math)?;
        self.bias_add(out, bias, geom.rows(), geom.dim)
    }

    /// Accumulates g_weight += g_outᵀ·cols and g_bias += Σ_rows g_out (f32 masters). The input
    /// pixels need no gradient in training; use [`Self::patch_fold`] on g_out·W when they do.
    #[allow(clippy::too_many_arguments)]
    pub fn patch_embed_bwd<T: Float>(
        &self,
        geom: PatchGeom,
        cols: &CudaSlice<T>,
        g_out: &CudaSlice<T>,
        g_weight: &mut CudaSlice<f32>,
        g_bias: &mut CudaSlice<f32>,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        let shape = GemmShape {
            m: geom.dim,
            n: geom.k(),
            k: geom.rows(),
            trans_a: true,
            trans_b: false,
        };
        self.gemm(shape, g_out, cols, g_weight, 1.0, 1.0, math)?;
        self.col_sum_accumulate(g_out, geom.rows(), geom.dim, g_bias)
    }
}
