//! Self-blended video compositing on the device (kernels/cuda/blend.cu).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{cfg, int, launched, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::error::CudaError;
use crate::cuda::source::Family;

impl CudaBackend {
    /// fake = r·m·S + (1 − r·m)·I and boundary = 4m(1 − m) for `n` frames of `hw` pixels × `c`
    /// channels (HWC); `ratio` holds one r per frame.
    #[allow(clippy::too_many_arguments)]
    pub fn blend_fwd(
        &self,
        src: &CudaSlice<f32>,
        tgt: &CudaSlice<f32>,
        mask: &CudaSlice<f32>,
        ratio: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        boundary: &mut CudaSlice<f32>,
        n: usize,
        hw: usize,
        c: usize,
    ) -> Result<(), CudaError> {
        self.blend_fwd_any(
            "blend_fwd",
            "blend_fwd_f32",
            src,
            tgt,
            mask,
            ratio,
            out,
            boundary,
            n,
            hw,
            c,
        )
    }

    /// Gradients of [`Self::blend_fwd`] w.r.t. source, target and mask (written, not accumulated).
    #[allow(clippy::too_many_arguments)]
    pub fn blend_bwd(
        &self,
        src: &CudaSlice<f32>,
        tgt: &CudaSlice<f32>,
        mask: &CudaSlice<f32>,
        ratio: &CudaSlice<f32>,
        g_out: &CudaSlice<f32>,
        g_boundary: &CudaSlice<f32>,
        g_src: &mut CudaSlice<f32>,
        g_tgt: &mut CudaSlice<f32>,
        g_mask: &mut CudaSlice<f32>,
        n: usize,
        hw: usize,
        c: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "blend_bwd";
        let (img, px) = (n * hw * c, n * hw);
        for (name, buf, len) in [
            ("src", src.len(), img),
            ("tgt", tgt.len(), img),
            ("mask", mask.len(), px),
            ("ratio", ratio.len(), n),
            ("g_out", g_out.len(), img),
            ("g_boundary", g_boundary.len(), px),
            ("g_src", g_src.len(), img),
            ("g_tgt", g_tgt.len(), img),
            ("g_mask", g_mask.len(), px),
        ] {
            need(OP, name, buf, len)?;
        }
        let (ni, hwi, ci) = (int(OP, "n", n)?, int(OP, "hw", hw)?, int(OP, "c", c)?);
        let f = self.function(Family::Blend, "blend_bwd_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(src)
            .arg(tgt)
            .arg(mask)
            .arg(ratio)
            .arg(g_out)
            .arg(g_boundary)
            .arg(g_src)
            .arg(g_tgt)
            .arg(g_mask);
        b.arg(&ni).arg(&hwi).arg(&ci);
        // SAFETY: sizes checked above.
        launched(
            OP,
            unsafe { b.launch(cfg((self.grid_for(px), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// uint8 variant of [`Self::blend_fwd`]: the blend is truncated to uint8 like the reference.
    #[allow(clippy::too_many_arguments)]
    pub fn blend_fwd_u8(
        &self,
        src: &CudaSlice<u8>,
        tgt: &CudaSlice<u8>,
        mask: &CudaSlice<f32>,
        ratio: &CudaSlice<f32>,
        out: &mut CudaSlice<u8>,
        boundary: &mut CudaSlice<f32>,
        n: usize,
        hw: usize,
        c: usize,
    ) -> Result<(), CudaError> {
        self.blend_fwd_any(
            "blend_fwd_u8",
            "blend_fwd_u8",
            src,
            tgt,
            mask,
            ratio,
            out,
            boundary,
            n,
            hw,
            c,
        )
    }

    /// The forward launch shared by the f32 and uint8 image variants (same arguments, same grid).
    #[allow(clippy::too_many_arguments)]
    fn blend_fwd_any<T: cudarc::driver::DeviceRepr>(
        &self,
        op: &'static str,
        kernel: &'static str,
        src: &CudaSlice<T>,
        tgt: &CudaSlice<T>,
        mask: &CudaSlice<f32>,
        ratio: &CudaSlice<f32>,
        out: &mut CudaSlice<T>,
        boundary: &mut CudaSlice<f32>,
        n: usize,
        hw: usize,
        c: usize,
    ) -> Result<(), CudaError> {
        for (name, buf, len) in [
            ("src", src.len(), n * hw * c),
            ("tgt", tgt.len(), n * hw * c),
            ("mask", mask.len(), n * hw),
            ("ratio", ratio.len(), n),
            ("out", out.len(), n * hw * c),
            ("boundary", boundary.len(), n * hw),
        ] {
            need(op, name, buf, len)?;
        }
        let (ni, hwi, ci) = (int(op, "n", n)?, int(op, "hw", hw)?, int(op, "c", c)?);
        let f = self.function(Family::Blend, kernel)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(src)
            .arg(tgt)
            .arg(mask)
            .arg(ratio)
            .arg(out)
            .arg(boundary)
            .arg(&ni)
            .arg(&hwi)
            .arg(&ci);
        // SAFETY: every buffer was checked to hold the n·hw(·c) elements the kernel touches.
        launched(
            op,
            unsafe { b.launch(cfg((self.grid_for(n * hw), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }
}
