//! One training iteration as the official trainer does it (spec §6): loss (§3.1), SAM's two
//! passes on the same batch with a global-norm perturbation, then Adam with L2 decay.

use crate::network::{Network, Trace};
use crate::ModelError;
use kernels::loss::{combined_loss, LossOutput, LossWeights};
use kernels::sam::perturbation_scale;
use kernels::{AdamParams, Backend};
use rand_chacha::ChaCha8Rng;

/// A training batch on the host (the official loader's tensors).
#[derive(Debug, Clone)]
pub struct TrainBatch {
    /// Clips `[B, 3, T, H, W]`.
    pub x: Vec<f32>,
    /// Number of clips.
    pub batch: usize,
    /// Clip labels `[B]` (0 real, 1 fake).
    pub labels: Vec<f32>,
    /// hm target `[B, 1, T, g, g]`.
    pub hm_target: Vec<f32>,
    /// Mask-out keep map, same shape as `hm_target` (1 keep, 0 masked).
    pub mask: Vec<f32>,
    /// temp_loc target `[B, T]` (float64 like the official loader).
    pub temp_loc_target: Vec<f64>,
}

/// Adam + SAM hyper-parameters (official: lr from the schedule, betas .9/.995, eps 1e-8,
/// weight decay 1e-4, ρ 0.05).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimConfig {
    /// Learning rate.
    pub lr: f32,
    /// Adam β1.
    pub beta1: f32,
    /// Adam β2.
    pub beta2: f32,
    /// Adam ε.
    pub eps: f32,
    /// L2 decay added to the gradient.
    pub weight_decay: f32,
    /// SAM radius.
    pub rho: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-7,
            beta1: 0.9,
            beta2: 0.995,
            eps: 1e-8,
            weight_decay: 1e-4,
            rho: kernels::sam::SAM_RHO,
        }
    }
}

/// Optimizer state: Adam moments per parameter and the step counter.
pub struct Optimizer<B: Backend> {
    /// Hyper-parameters.
    pub cfg: OptimConfig,
    /// First moments (one per parameter).
    pub m: Vec<B::Buf>,
    /// Second moments.
    pub v: Vec<B::Buf>,
    /// Per-parameter Adam step count (parameters without a gradient are not stepped).
    pub steps: Vec<u64>,
}

impl<B: Backend> Optimizer<B> {
    /// Fresh state for a network.
    pub fn new(be: &B, net: &Network<B>, cfg: OptimConfig) -> Self {
        let m = net.inv.params.iter().map(|p| be.zeros(p.numel())).collect();
        let v = net.inv.params.iter().map(|p| be.zeros(p.numel())).collect();
        Self {
            cfg,
            m,
            v,
            steps: vec![0; net.inv.params.len()],
        }
    }
}

/// Losses of both SAM passes and the pass-1 gradient norm.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Pass-1 loss (used for logging/accuracy, like the official trainer).
    pub pass1: LossOutput,
    /// Pass-2 loss at the perturbed weights.
    pub pass2: LossOutput,
    /// Global L2 norm of the pass-1 gradients.
    pub grad_norm: f64,
    /// Pass-1 cls logits, one per clip (the official trainer's accuracy uses them).
    pub cls: Vec<f32>,
}

/// Result of one forward/backward pass.
pub struct Pass<B: Backend> {
    /// Loss values and output gradients.
    pub loss: LossOutput,
    /// cls logits, one per clip.
    pub cls: Vec<f32>,
    /// Parameter gradients (zero for parameters without a gradient, see [`Network::has_grad`]).
    pub grads: Vec<B::Buf>,
    /// Saved activations (outputs and BN internals included).
    pub trace: Trace<B>,
}

/// Forward (training mode) + loss + backward.
pub fn loss_and_grads<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    batch: &TrainBatch,
    rng: &mut ChaCha8Rng,
    frozen_backbone: bool,
) -> Result<Pass<B>, ModelError> {
    let x = be.upload(&batch.x);
    loss_and_grads_on(be, net, &x, batch, rng, frozen_backbone)
}

/// [`loss_and_grads`] on clips already on the device (`x` = `batch.x` uploaded), so the two
/// passes of a SAM step share one upload.
pub fn loss_and_grads_on<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    x: &B::Buf,
    batch: &TrainBatch,
    rng: &mut ChaCha8Rng,
    frozen_backbone: bool,
) -> Result<Pass<B>, ModelError> {
    let tr = net.forward(be, x, batch.batch, true, rng)?;
    let (cls, tl, hm) = (
        be.download(&tr.cls),
        be.download(&tr.temp_loc),
        be.download(&tr.hm),
    );
    let n = batch.batch;
    let t = net.cfg.num_frames;
    if batch.labels.len() != n
        || batch.temp_loc_target.len() != n * t
        || batch.hm_target.len() != hm.len()
        || batch.mask.len() != hm.len()
    {
        return Err(ModelError::Input(format!(
            "targets: expected labels [{n}], temp_loc_target [{n}×{t}], hm_target/mask [{}]",
            hm.len()
        )));
    }
    let loss = combined_loss(
        &hm,
        &batch.hm_target,
        &batch.mask,
        &cls,
        &batch.labels,
        &tl,
        &batch.temp_loc_target,
        LossWeights::default(),
    );
    let mut grads: Vec<B::Buf> = net.inv.params.iter().map(|p| be.zeros(p.numel())).collect();
    let (dc, dt, dh) = (
        be.upload(&loss.d_cls),
        be.upload(&loss.d_temp_loc),
        be.upload(&loss.d_hm),
    );
    net.backward(be, &tr, &dc, &dt, &dh, &mut grads, frozen_backbone)?;
    Ok(Pass {
        loss,
        cls,
        grads,
        trace: tr,
    })
}

/// SAM `first_step`: `e = ρ·g/(‖g‖₂ + 1e-12)` over the parameters flagged in `has`, `w += e`.
/// Returns the perturbations (None where no gradient) and ‖g‖.
pub fn sam_perturb<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    grads: &[B::Buf],
    has: &[bool],
    rho: f64,
) -> (Vec<Option<B::Buf>>, f64) {
    let sumsq: f64 = grads
        .iter()
        .zip(has)
        .filter(|(_, &h)| h)
        .map(|(g, _)| be.sum_squares(g, be.len(g)))
        .sum();
    let scale = perturbation_scale(rho, sumsq) as f32;
    let mut e = Vec::with_capacity(grads.len());
    for (i, g) in grads.iter().enumerate() {
        if has[i] {
            let n = be.len(g);
            let mut ei = be.zeros(n);
            be.axpy(scale, g, &mut ei, n);
            be.axpy(1.0, &ei, &mut net.weights.params[i], n);
            e.push(Some(ei));
        } else {
            e.push(None);
        }
    }
    (e, sumsq.sqrt())
}

/// SAM `second_step`: `w −= e`, then Adam with the pass-2 gradients (parameters without a
/// gradient are skipped, as PyTorch skips `grad is None`).
pub fn sam_restore_and_adam<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    opt: &mut Optimizer<B>,
    e: &[Option<B::Buf>],
    grads: &[B::Buf],
) {
    for (i, g) in grads.iter().enumerate() {
        if let Some(ei) = &e[i] {
            let n = be.len(ei);
            be.axpy(-1.0, ei, &mut net.weights.params[i], n);
            opt.steps[i] += 1;
            let h = AdamParams {
                lr: opt.cfg.lr,
                beta1: opt.cfg.beta1,
                beta2: opt.cfg.beta2,
                eps: opt.cfg.eps,
                weight_decay: opt.cfg.weight_decay,
                step: opt.steps[i],
            };
            be.adam_step(
                &mut net.weights.params[i],
                g,
                &mut opt.m[i],
                &mut opt.v[i],
                n,
                h,
            );
        }
    }
}

/// One SAM(Adam) iteration on `batch`: pass 1, perturb by `ρ·g/‖g‖`, pass 2, restore, Adam.
pub fn sam_step<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    opt: &mut Optimizer<B>,
    batch: &TrainBatch,
    rng: &mut ChaCha8Rng,
    frozen_backbone: bool,
) -> Result<StepReport, ModelError> {
    let x = be.upload(&batch.x);
    sam_step_on(be, net, opt, &x, batch, rng, frozen_backbone)
}

/// [`sam_step`] on clips already on the device (`x` = `batch.x` uploaded, e.g. through
/// [`Backend::start_upload`] while the previous step ran); `batch.x` itself is not read.
pub fn sam_step_on<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    opt: &mut Optimizer<B>,
    x: &B::Buf,
    batch: &TrainBatch,
    rng: &mut ChaCha8Rng,
    frozen_backbone: bool,
) -> Result<StepReport, ModelError> {
    let has = net.has_grad(frozen_backbone);
    let p1 = loss_and_grads_on(be, net, x, batch, rng, frozen_backbone)?;
    let (e, grad_norm) = sam_perturb(be, net, &p1.grads, &has, opt.cfg.rho);
    // Pass 1's activations and gradients are dead once the weights are perturbed: free them
    // before pass 2 so a step needs one pass's activation memory, not two.
    let Pass {
        loss: loss1,
        cls: cls1,
        ..
    } = p1;
    let p2 = loss_and_grads_on(be, net, x, batch, rng, frozen_backbone)?;
    sam_restore_and_adam(be, net, opt, &e, &p2.grads);
    Ok(StepReport {
        pass1: loss1,
        pass2: p2.loss,
        grad_norm,
        cls: cls1,
    })
}
