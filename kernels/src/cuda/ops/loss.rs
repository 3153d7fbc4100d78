//! Losses of spec §3 and row softmax (kernels/cuda/loss.cu). The scalar loss stays on the device.

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{cfg, int, launched, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::error::CudaError;
use crate::cuda::source::Family;

impl CudaBackend {
    fn pointwise_loss(
        &self,
        kernel: &'static str,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        n: usize,
        loss: &mut CudaSlice<f32>,
        grad: &mut CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        if n == 0 {
            return Err(CudaError::shape(kernel, "empty input"));
        }
        need(kernel, "x", x.len(), n)?;
        need(kernel, "y", y.len(), n)?;
        need(kernel, "loss", loss.len(), 1)?;
        need(kernel, "grad", grad.len(), n)?;
        let ni = int(kernel, "n", n)?;
        let f = self.function(Family::Loss, kernel)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(y).arg(&ni).arg(loss).arg(grad);
        // SAFETY: sizes checked above; single block.
        launched(
            kernel,
            unsafe { b.launch(cfg((1, 1, 1), (1024, 1, 1))) }.map(drop),
        )
    }

    /// loss[0] = mean BCE-with-logits(x, y); grad = ∂loss/∂x.
    pub fn bce_logits(
        &self,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        n: usize,
        loss: &mut CudaSlice<f32>,
        grad: &mut CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        self.pointwise_loss("bce_logits", x, y, n, loss, grad)
    }

    /// loss[0] = mean (x − y)²; grad = ∂loss/∂x.
    pub fn mse(
        &self,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        n: usize,
        loss: &mut CudaSlice<f32>,
        grad: &mut CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        self.pointwise_loss("mse", x, y, n, loss, grad)
    }

    /// y = softmax(x) per row of `cols`.
    pub fn softmax_fwd(
        &self,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "softmax_fwd";
        need(OP, "x", x.len(), rows * cols)?;
        need(OP, "y", y.len(), rows * cols)?;
        let (r, c) = (int(OP, "rows", rows)?, int(OP, "cols", cols)?);
        let f = self.function(Family::Loss, OP)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(y).arg(&r).arg(&c);
        // SAFETY: sizes checked above.
        launched(
            OP,
            unsafe { b.launch(cfg((rows.div_ceil(8).max(1) as u32, 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// dx = y·(g − Σ g·y) per row, from the forward output y.
    pub fn softmax_bwd(
        &self,
        y: &CudaSlice<f32>,
        g: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "softmax_bwd";
        need(OP, "y", y.len(), rows * cols)?;
        need(OP, "g", g.len(), rows * cols)?;
        need(OP, "dx", dx.len(), rows * cols)?;
        let (r, c) = (int(OP, "rows", rows)?, int(OP, "cols", cols)?);
        let f = self.function(Family::Loss, OP)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(y).arg(g).arg(dx).arg(&r).arg(&c);
        // SAFETY: sizes checked above.
        launched(
            OP,
            unsafe { b.launch(cfg((rows.div_ceil(8).max(1) as u32, 1, 1), (256, 1, 1))) }.map(drop),
        )
    }
}
