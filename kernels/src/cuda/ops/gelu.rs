//! Exact-erf GELU (kernels/cuda/gelu.cu).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{cfg, launched, long, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::dtype::{kernel_name, Float};
use crate::cuda::error::CudaError;
use crate::cuda::source::Family;

impl CudaBackend {
    /// y = x·Φ(x) over `n` elements.
    pub fn gelu_fwd<T: Float>(
        &self,
        x: &CudaSlice<T>,
        y: &mut CudaSlice<T>,
        n: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "gelu_fwd";
        need(OP, "x", x.len(), n)?;
        need(OP, "y", y.len(), n)?;
        let nl = long(OP, "n", n)?;
        let name = kernel_name::<T>("gelu_fwd");
        let f = self.function(Family::Gelu, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(y).arg(&nl);
        // SAFETY: sizes checked above.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(n), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// dx = g·(Φ(x) + x·φ(x)) over `n` elements.
    pub fn gelu_bwd<T: Float>(
        &self,
        x: &CudaSlice<T>,
        g: &CudaSlice<T>,
        dx: &mut CudaSlice<T>,
        n: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "gelu_bwd";
        need(OP, "x", x.len(), n)?;
        need(OP, "g", g.len(), n)?;
        need(OP, "dx", dx.len(), n)?;
        let nl = long(OP, "n", n)?;
        let name = kernel_name::<T>("gelu_bwd");
        let f = self.function(Family::Gelu, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(g).arg(dx).arg(&nl);
        // SAFETY: sizes checked above.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(n), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }
}
