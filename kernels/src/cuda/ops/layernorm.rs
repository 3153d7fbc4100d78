//! LayerNorm over the last dimension (kernels/cuda/layernorm.cu).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{cfg, int, launched, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::dtype::{kernel_name, Float};
use crate::cuda::error::CudaError;
use crate::cuda::source::Family;

/// Rows summed per block in the first stage of the dγ/dβ reduction.
const ROWS_PER_BLOCK: usize = 256;

impl CudaBackend {
    /// y = (x − μ)/sqrt(σ² + eps)·γ + β per row of `cols`; saves μ and 1/sqrt(σ² + eps) per row.
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_fwd<T: Float>(
        &self,
        x: &CudaSlice<T>,
        gamma: &CudaSlice<f32>,
        beta: &CudaSlice<f32>,
        y: &mut CudaSlice<T>,
        mean: &mut CudaSlice<f32>,
        rstd: &mut CudaSlice<f32>,
        rows: usize,
        cols: usize,
        eps: f32,
    ) -> Result<(), CudaError> {
        const OP: &str = "layernorm_fwd";
        for (name, have, len) in [
            ("x", x.len(), rows * cols),
            ("gamma", gamma.len(), cols),
            ("beta", beta.len(), cols),
            ("y", y.len(), rows * cols),
            ("mean", mean.len(), rows),
            ("rstd", rstd.len(), rows),
        ] {
            need(OP, name, have, len)?;
        }
        let (r, c) = (int(OP, "rows", rows)?, int(OP, "cols", cols)?);
        let name = kernel_name::<T>("ln_fwd");
        let f = self.function(Family::LayerNorm, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x)
            .arg(gamma)
            .arg(beta)
            .arg(y)
            .arg(mean)
            .arg(rstd)
            .arg(&r)
            .arg(&c)
            .arg(&eps);
        // SAFETY: sizes checked above.
        launched(
            &name,
            unsafe { b.launch(cfg((rows.div_ceil(8).max(1) as u32, 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// dx (written) and dγ, dβ (accumulated: `+=`) from the upstream gradient g.
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_bwd<T: Float>(
        &self,
        x: &CudaSlice<T>,
        g: &CudaSlice<T>,
        gamma: &CudaSlice<f32>,
        mean: &CudaSlice<f32>,
        rstd: &CudaSlice<f32>,
        dx: &mut CudaSlice<T>,
        dgamma: &mut CudaSlice<f32>,
        dbeta: &mut CudaSlice<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "layernorm_bwd";
        for (name, have, len) in [
            ("x", x.len(), rows * cols),
            ("g", g.len(), rows * cols),
            ("gamma", gamma.len(), cols),
            ("mean", mean.len(), rows),
            ("rstd", rstd.len(), rows),
            ("dx", dx.len(), rows * cols),
            ("dgamma", dgamma.len(), cols),
            ("dbeta", dbeta.len(), cols),
        ] {
            need(OP, name, have, len)?;
        }
        let (r, c) = (int(OP, "rows", rows)?, int(OP, "cols", cols)?);
        let name = kernel_name::<T>("ln_bwd_x");
        let f = self.function(Family::LayerNorm, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x)
            .arg(g)
            .arg(gamma)
            .arg(mean)
            .arg(rstd)
            .arg(dx)
            .arg(&r)
            .arg(&c);
        // SAFETY: sizes checked above.
        launched(
            &name,
            unsafe { b.launch(cfg((rows.div_ceil(8).max(1) as u32, 1, 1), (256, 1, 1))) }.map(drop),
        )?;

        let nblocks = rows.div_ceil(ROWS_PER_BLOCK).max(1);
        let mut partial = self.zeros::<f32>(nblocks * 2 * cols)?;
        let rpb = ROWS_PER_BLOCK as i32;
        let name = kernel_name::<T>("ln_bwd_params_partial");
        let f = self.function(Family::LayerNorm, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x)
            .arg(g)
            .arg(mean)
            .arg(rstd)
            .arg(&mut partial)
            .arg(&r)
            .arg(&c)
            .arg(&rpb);
        let grid = (cols.div_ceil(32) as u32, nblocks as u32, 1);
        // SAFETY: partial holds nblocks·2·cols; the kernel reads rows·cols of x and g.
        launched(&name, unsafe { b.launch(cfg(grid, (32, 8, 1))) }.map(drop))?;
        let nb = int(OP, "nblocks", nblocks)?;
        let f = self.function(Family::LayerNorm, "ln_bwd_params_finish")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&partial).arg(&nb).arg(&c).arg(dgamma).arg(dbeta);
        // SAFETY: dgamma/dbeta hold cols elements.
        launched(
            "ln_bwd_params_finish",
            unsafe { b.launch(cfg((cols.div_ceil(256) as u32, 1, 1), (256, 1, 1))) }.map(drop),
        )
    }
}
