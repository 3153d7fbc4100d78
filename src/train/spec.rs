//! The train job spec (`specs/train-*.toml`): data, model, optimiser and schedule, checkpoints.
//! Defaults are the official FakeSTormer c23 recipe (spec §1, §6).

use pipeline::{ParamProblem, Params, ValidateContext};

use crate::inference::Device;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds the clip offsets, synthesis draws, batch order, initialisation and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Output folder (relative to the working directory, like pipeline specs).
    pub output: String,
    /// `cpu` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Matrix-product arithmetic on CUDA: `f32` (default, IEEE products), `tf32` or `bf16`
    /// (tensor cores, f32 accumulation; see docs/benchmarks.md). Ignored on the CPU.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub math: String,
    pub data: DataSpec,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub optim: OptimSpec,
    #[serde(default)]
    pub train: LoopSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Shard stores of the training videos (a store, or a folder of stores), relative to the spec.
    pub train: String,
    /// Shard stores for validation; defaults to `train` (then `holdout` picks the videos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<String>,
    /// Video ids (a trailing `*` matches a prefix) kept out of training and used for validation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holdout: Vec<String>,
    /// Synthesis threads (0 = all cores). Outputs do not depend on it.
    #[serde(default)]
    pub threads: usize,
    /// Batches prepared ahead of the model.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Temporal-target arithmetic: `compat` (official uint8 wrap-around) or `clean`.
    #[serde(default = "default_target_mode")]
    pub targets: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `base`, `small` or `tiny`, unless `config` names a model-config TOML file.
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// `compat` (official temp-token and embed-map behaviour) or `clean`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// MAE encoder checkpoint (`.pth`, key `model`) loaded over the default initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSpec {
    /// LinearDecayLR base learning rate (epoch 0).
    #[serde(default = "default_base_lr")]
    pub base_lr: f64,
    /// Peak learning rate = base_lr · booster, reached at `epochs / start_decay`.
    #[serde(default = "default_booster")]
    pub booster: f64,
    /// The decay starts at epoch `epochs / start_decay` (integer division, official 4).
    #[serde(default = "default_start_decay")]
    pub start_decay: u32,
    #[serde(default = "default_beta1")]
    pub beta1: f32,
    #[serde(default = "default_beta2")]
    pub beta2: f32,
    #[serde(default = "default_eps")]
    pub eps: f32,
    /// L2 decay added to the gradient (Adam, not AdamW).
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f32,
    /// SAM radius.
    #[serde(default = "default_rho")]
    pub rho: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopSpec {
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// Items per batch; each item gives a real and a fake clip (official 64 → 128 clips).
    #[serde(default = "default_batch_items")]
    pub batch_items: usize,
    /// Epochs with the backbone frozen (heads only), official 5.
    #[serde(default = "default_freeze")]
    pub freeze_backbone_epochs: u32,
    /// Batches per epoch at most (0 = all clips of the epoch).
    #[serde(default)]
    pub steps_per_epoch: u64,
    /// Full-state checkpoint every N optimizer steps (0 = only at epoch ends).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Validate every N epochs (0 = never).
    #[serde(default = "default_val_every")]
    pub val_every: u32,
    /// Clips per validation forward.
    #[serde(default = "default_val_batch")]
    pub val_batch: usize,
    /// Validation clips at most (0 = all).
    #[serde(default)]
    pub val_limit: usize,
    /// DataParallel replicas the global batch is split into (official: 4 GPUs). Each replica's
    /// item group is its own sub-batch (own BN batch statistics and temp-token source); the
    /// gradients are their clip-weighted average. Unset: one per process (`--processes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
}

fn default_seed() -> u64 {
    317
}
fn default_device() -> String {
    "cpu".into()
}
fn default_prefetch() -> usize {
    2
}
fn default_target_mode() -> String {
    "compat".into()
}
fn default_preset() -> String {
    "base".into()
}
fn default_mode() -> String {
    "compat".into()
}
fn default_base_lr() -> f64 {
    1e-7
}
fn default_booster() -> f64 {
    500.0
}
fn default_start_decay() -> u32 {
    4
}
fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.995
}
fn default_eps() -> f32 {
    1e-8
}
fn default_weight_decay() -> f32 {
    1e-4
}
fn default_rho() -> f64 {
    kernels::sam::SAM_RHO
}
fn default_epochs() -> u32 {
    200
}
fn default_batch_items() -> usize {
    64
}
fn default_freeze() -> u32 {
    5
}
fn default_checkpoint_every() -> u64 {
    500
}
fn default_val_every() -> u32 {
    1
}
fn default_val_batch() -> usize {
    32
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            preset: default_preset(),
            config: None,
            mode: default_mode(),
            init: None,
        }
    }
}

impl Default for OptimSpec {
    fn default() -> Self {
        Self {
            base_lr: default_base_lr(),
            booster: default_booster(),
            start_decay: default_start_decay(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: default_weight_decay(),
            rho: default_rho(),
        }
    }
}

impl Default for LoopSpec {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            batch_items: default_batch_items(),
            freeze_backbone_epochs: default_freeze(),
            steps_per_epoch: 0,
            checkpoint_every: default_checkpoint_every(),
            val_every: default_val_every(),
            val_batch: default_val_batch(),
            val_limit: 0,
            replicas: None,
        }
    }
}

impl Params for TrainSpec {
    fn validate(&self, ctx: &ValidateContext) -> Vec<ParamProblem> {
        let mut p = Vec::new();
        if let Err(e) = self.device.parse::<Device>() {
            p.push(ParamProblem::new("device", e).hint("`cpu`, `cuda` or `cuda:N`"));
        }
        if let Err(e) = self.math.parse::<kernels::cuda::GemmMath>() {
            p.push(ParamProblem::new("math", e).hint("`f32`, `tf32` or `bf16`"));
        }
        if !ctx.resolve(&self.data.train).exists() {
            p.push(
                ParamProblem::new(
                    "data.train",
                    format!("{} does not exist", ctx.resolve(&self.data.train).display()),
                )
                .hint("preprocess the training videos first: `fakestormer preprocess SPEC`"),
            );
        }
        if let Some(v) = &self.data.val {
            if !ctx.resolve(v).exists() {
                p.push(ParamProblem::new(
                    "data.val",
                    format!("{} does not exist", ctx.resolve(v).display()),
                ));
            }
        }
        if self.data.prefetch == 0 {
            p.push(ParamProblem::new("data.prefetch", "must be at least 1"));
        }
        if !["compat", "clean"].contains(&self.data.targets.as_str()) {
            p.push(ParamProblem::new(
                "data.targets",
                "must be `compat` or `clean`",
            ));
        }
        if let Err(e) = self.model.mode.parse::<model::network::Mode>() {
            p.push(ParamProblem::new("model.mode", e.to_string()));
        }
        match &self.model.config {
            Some(c) if !ctx.resolve(c).is_file() => p.push(ParamProblem::new(
                "model.config",
                format!("{} not found", ctx.resolve(c).display()),
            )),
            Some(_) => {}
            None => {
                if let Err(e) = model::config::ModelConfig::preset(&self.model.preset) {
                    p.push(ParamProblem::new("model.preset", e.to_string()));
                }
            }
        }
        if let Some(i) = &self.model.init {
            if !ctx.resolve(i).is_file() {
                p.push(ParamProblem::new(
                    "model.init",
                    format!("{} not found", ctx.resolve(i).display()),
                ));
            }
        }
        if !(self.optim.base_lr > 0.0 && self.optim.base_lr.is_finite()) {
            p.push(ParamProblem::new(
                "optim.base_lr",
                "must be a positive number",
            ));
        }
        if self.optim.booster.is_nan() || self.optim.booster < 1.0 {
            p.push(ParamProblem::new("optim.booster", "must be at least 1"));
        }
        if self.optim.start_decay == 0 {
            p.push(ParamProblem::new("optim.start_decay", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.optim.beta1) || !(0.0..1.0).contains(&self.optim.beta2) {
            p.push(ParamProblem::new("optim.beta1", "betas must lie in [0, 1)"));
        }
        if self.optim.rho < 0.0 {
            p.push(ParamProblem::new("optim.rho", "must not be negative"));
        }
        if self.train.epochs == 0 {
            p.push(ParamProblem::new("train.epochs", "must be at least 1"));
        }
        if self.train.batch_items == 0 {
            p.push(ParamProblem::new("train.batch_items", "must be at least 1"));
        }
        if self.train.replicas == Some(0) {
            p.push(ParamProblem::new("train.replicas", "must be at least 1"));
        }
        if self.train.val_batch == 0 {
            p.push(ParamProblem::new("train.val_batch", "must be at least 1"));
        }
        if self.train.val_every > 0 && self.data.val.is_none() && self.data.holdout.is_empty() {
            p.push(
                ParamProblem::new("train.val_every", "validation needs videos")
                    .hint("set `data.val`, or `data.holdout` ids, or `val_every = 0`"),
            );
        }
        p
    }
}

impl TrainSpec {
    /// Identity of the training trajectory: the spec without the settings that do not change
    /// what is computed (name, description, output, device and GEMM math, data threads and
    /// prefetch, checkpoint interval), so a run may be resumed on another device, precision or
    /// thread count, but not
    /// with other data, model, optimiser or schedule.
    pub fn trajectory_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut s = self.clone();
        s.name.clear();
        s.description.clear();
        s.output.clear();
        s.device.clear();
        s.math.clear();
        s.data.threads = 0;
        s.data.prefetch = 0;
        s.train.checkpoint_every = 0;
        let text = toml::to_string(&s).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}
