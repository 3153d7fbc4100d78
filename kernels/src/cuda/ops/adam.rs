//! SAM over Adam on device-resident f32 master weights (kernels/cuda/adam.cu, spec §6).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{cfg, launched, long, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::error::CudaError;
use crate::cuda::source::Family;

/// Blocks of the first stage of the squared-norm reduction (fixed → deterministic sums).
const NORM_BLOCKS: usize = 512;

/// Adam hyper-parameters for one step (torch.optim.Adam semantics, L2 decay in the gradient).
#[derive(Debug, Clone, Copy)]
pub struct AdamHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step count (for bias correction).
    pub step: u32,
}

impl CudaBackend {
    /// total[0] += Σ x² over `n` elements (call once per parameter tensor for the global norm).
    pub fn sq_norm_accumulate(
        &self,
        x: &CudaSlice<f32>,
        n: usize,
        total: &mut CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        const OP: &str = "sq_norm_accumulate";
        need(OP, "x", x.len(), n)?;
        need(OP, "total", total.len(), 1)?;
        let nl = long(OP, "n", n)?;
        let mut partial = self.zeros::<f32>(NORM_BLOCKS)?;
        let f = self.function(Family::Adam, "sq_sum_partial")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(&nl).arg(&mut partial);
        // SAFETY: partial holds NORM_BLOCKS = grid size entries.
        launched(
            "sq_sum_partial",
            unsafe { b.launch(cfg((NORM_BLOCKS as u32, 1, 1), (256, 1, 1))) }.map(drop),
        )?;
        let nb = NORM_BLOCKS as i32;
        let f = self.function(Family::Adam, "sq_sum_finish")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&partial).arg(&nb).arg(total);
        // SAFETY: single block reading NORM_BLOCKS partials.
        launched(
            "sq_sum_finish",
            unsafe { b.launch(cfg((1, 1, 1), (1024, 1, 1))) }.map(drop),
        )
    }

    /// SAM first step: e = ρ·g/(sqrt(sumsq) + 1e-12), w += e.
    pub fn sam_perturb(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        e: &mut CudaSlice<f32>,
        n: usize,
        sumsq: &CudaSlice<f32>,
        rho: f32,
    ) -> Result<(), CudaError> {
        const OP: &str = "sam_perturb";
        need(OP, "w", w.len(), n)?;
        need(OP, "g", g.len(), n)?;
        need(OP, "e", e.len(), n)?;
        need(OP, "sumsq", sumsq.len(), 1)?;
        let nl = long(OP, "n", n)?;
        let f = self.function(Family::Adam, OP)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(w).arg(g).arg(e).arg(&nl).arg(sumsq).arg(&rho);
        // SAFETY: sizes checked above.
        launched(
            OP,
            unsafe { b.launch(cfg((self.grid_for(n), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// Adam step on w with gradient g and moments m, v; with `restore = Some(e)` first undoes the
    /// SAM perturbation (w −= e), fusing SAM's second step.
    #[allow(clippy::too_many_arguments)]
    pub fn adam_step(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        restore: Option<&CudaSlice<f32>>,
        n: usize,
        hp: AdamHyper,
    ) -> Result<(), CudaError> {
        const OP: &str = "adam_step";
        if hp.step == 0 {
            return Err(CudaError::shape(OP, "step count is 1-based"));
        }
        for (name, have) in [
            ("w", w.len()),
            ("g", g.len()),
            ("m", m.len()),
            ("v", v.len()),
        ] {
            need(OP, name, have, n)?;
        }
        let flag: i32 = restore.is_some().into();
        // The kernel never reads e when flag = 0, but it needs a valid pointer: reuse g.
        let e = match restore {
            Some(e) => {
                need(OP, "e", e.len(), n)?;
                e
            }
            None => g,
        };
        let nl = long(OP, "n", n)?;
        let bc1 = 1.0 - hp.beta1.powi(hp.step as i32);
        let bc2 = 1.0 - hp.beta2.powi(hp.step as i32);
        let f = self.function(Family::Adam, OP)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(w).arg(g).arg(m).arg(v).arg(e).arg(&flag).arg(&nl);
        b.arg(&hp.lr)
            .arg(&hp.beta1)
            .arg(&hp.beta2)
            .arg(&hp.eps)
            .arg(&hp.weight_decay)
            .arg(&bc1)
            .arg(&bc2);
        // SAFETY: sizes checked above.
        launched(
            OP,
            unsafe { b.launch(cfg((self.grid_for(n), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }
}
