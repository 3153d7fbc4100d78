//! `fakestormer train SPEC`: shard stores → clip sampler → SBV synthesis → batches (on the data
//! thread, see [`loader`]) → SAM(Adam) steps on CPU or CUDA, with per-epoch validation, the best
//! checkpoint by validation accuracy, full-state checkpoints every N steps and exact resume.
//!
//! Outputs in the run folder: `metrics.jsonl` (per step and per epoch), `checkpoint.safetensors`
//! (latest full state), `best.safetensors` and `final.safetensors` (model weights only, what
//! `eval` and `detect` load), `failed.jsonl` (clips that could not be used) and `report.json`.

pub mod loader;
pub mod metrics_log;
pub mod nccl;
pub mod replicas;
pub mod schedule;
pub mod spec;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use kernels::Backend;
use kernels::PendingUpload;
use model::checkpoint::{self, Progress};
use model::config::ModelConfig;
use model::network::{Mode, Network};
use model::train::{sam_step_on, OptimConfig, Optimizer};
use pipeline::allreduce::{AllReduce, LocalReduce};
use pipeline::{ClusterOptions, LoadedJob};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use stages::clips::ShardSet;
use stages::synth::sbv::SbvConfig;
use stages::synth::targets::TargetMode;

use crate::inference::Device;
use loader::{EpochPlan, FailedItem, Loader, LoaderConfig, VideoFilter};
use metrics_log::MetricsLog;
use replicas::{replicated_sam_step, DeviceGradSum};
use schedule::LinearDecay;
use spec::TrainSpec;
use validate::{validate, ValConfig, ValSet};

/// Keeps the dropout/drop-path stream apart from the initialisation stream of the same seed.
const DROPOUT_SALT: u64 = 0x4452_4f50_5041_5448;

/// Command-line settings that are not part of the spec (they do not change the result).
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from this checkpoint (`auto`: the run folder's `checkpoint.safetensors`).
    pub resume: Option<PathBuf>,
    /// Stop (with a checkpoint) once the run has taken this many optimizer steps in total.
    pub max_steps: Option<u64>,
    /// Run folder instead of the spec's `output`.
    pub out: Option<PathBuf>,
    pub quiet: bool,
    /// Cluster training: one replica per process (`--processes`, `--process`, `--hostfile`).
    pub cluster: ClusterOptions,
    /// How long a cluster rank waits for the others at an all-reduce (None: 30 minutes, which
    /// must cover rank 0's validation).
    pub peer_timeout: Option<Duration>,
}

/// What `report.json` says about a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub spec: String,
    pub spec_hash: String,
    pub device: String,
    pub model: String,
    pub parameters: usize,
    pub status: String,
    pub epochs_completed: u32,
    pub global_step: u64,
    pub steps_this_run: u64,
    pub resumed_from: Option<String>,
    pub best_val_acc: Option<f64>,
    pub best_epoch: Option<u32>,
    pub last_val_acc: Option<f64>,
    /// Fraction of the training loop's time spent waiting for the data thread.
    pub data_wait_fraction: f64,
    pub mean_step_s: f64,
    pub clips_per_s: f64,
    pub failed_items: usize,
    pub wall_s: f64,
    pub out: String,
    /// DataParallel replicas per global batch (see [`replicas`]).
    pub replicas: usize,
    /// Processes that trained (one replica each when > 1). On a cluster, `failed_items` and
    /// `failed.jsonl` cover rank 0's share; the other ranks log their skipped clips.
    pub processes: usize,
}

/// What a step's metrics record says (one replica or all of them).
struct StepLog {
    loss: f64,
    loss_hm: f64,
    loss_cls: f64,
    loss_spatial: f64,
    loss_pass2: f64,
    grad_norm: f64,
    clips: usize,
    correct: usize,
    replica_clips: Option<Vec<u64>>,
}

/// The network configuration a spec names.
pub fn model_config(job: &LoadedJob<TrainSpec>) -> anyhow::Result<ModelConfig> {
    let m = &job.spec.model;
    Ok(match &m.config {
        Some(path) => {
            let p = job.resolve(path);
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            ModelConfig::from_toml(&text).with_context(|| p.display().to_string())?
        }
        None => ModelConfig::preset(&m.preset)?,
    })
}

/// Runs (or resumes) a training job to its end, or to `max_steps`. On a cluster every process
/// calls this with its own `--process`; the summary of rank 0 describes the run (the others
/// write nothing).
pub fn run(job: &LoadedJob<TrainSpec>, opts: &TrainOptions) -> anyhow::Result<Summary> {
    let n = opts.cluster.processes;
    let replicas = job.spec.train.replicas.unwrap_or(n);
    if n <= 1 {
        return on_device(job, opts, replicas, &mut LocalReduce);
    }
    if replicas != n {
        bail!(
            "`train.replicas = {replicas}` but --processes {n}: cluster training runs one replica per process (set replicas = {n} or leave it unset)"
        );
    }
    let (job2, opts2) = (Arc::new(job.clone()), Arc::new(opts.clone()));
    let timeout = opts.peer_timeout.unwrap_or(Duration::from_secs(1800));
    pipeline::allreduce::execute(&opts.cluster, timeout, move |ar| {
        on_device(&job2, &opts2, replicas, ar)
    })?
}

fn on_device(
    job: &LoadedJob<TrainSpec>,
    opts: &TrainOptions,
    replicas: usize,
    ar: &mut dyn AllReduce,
) -> anyhow::Result<Summary> {
    let math: kernels::cuda::GemmMath = job.spec.math.parse().map_err(anyhow::Error::msg)?;
    match job
        .spec
        .device
        .parse::<Device>()
        .map_err(anyhow::Error::msg)?
    {
        Device::Cpu => run_on(
            &kernels::CpuBackend,
            "cpu".into(),
            job,
            opts,
            replicas,
            ar,
            None,
        ),
        // one process per GPU, gradients summed on the devices by NCCL
        Device::Cuda(first) if ar.ranks() > 1 => {
            let (mut be, comm, n) = nccl::join(first, &opts.cluster, ar)?;
            be.set_gemm_math(math);
            let name = be.device_name().unwrap_or_else(|_| "CUDA device".into());
            let device = format!(
                "cuda:{n} ({name}, {} math), NCCL rank {} of {}",
                math.name(),
                ar.rank(),
                ar.ranks()
            );
            run_on(&be, device, job, opts, replicas, ar, Some(&comm))
        }
        Device::Cuda(n) => {
            let mut be = kernels::cuda::CudaBackend::new(n).with_context(|| {
                format!("device cuda:{n} (set `device = \"cpu\"` to train without a GPU)")
            })?;
            be.set_gemm_math(math);
            let name = be.device_name().unwrap_or_else(|_| "CUDA device".into());
            run_on(
                &be,
                format!("cuda:{n} ({name}, {} math)", math.name()),
                job,
                opts,
                replicas,
                ar,
                None,
            )
        }
    }
}

/// Model weights only (what `eval` and `detect` load), with the model configuration in the
/// metadata so they rebuild the same network.
fn save_weights<B: Backend>(be: &B, net: &Network<B>, path: &Path) -> anyhow::Result<()> {
    let meta = std::collections::HashMap::from([(
        model::safetensors_io::MODEL_CONFIG_KEY.to_string(),
        net.cfg.to_toml(),
    )]);
    model::safetensors_io::write_safetensors_meta(path, &net.state_dict(be), Some(meta))
        .with_context(|| format!("writing {}", path.display()))
}

/// A received batch whose clips (single replica) are on their way to the device
/// ([`Backend::start_upload`]); the host copy of the clips is moved into the upload.
struct Staged<B: Backend> {
    packet: loader::Prepared,
    clips: Option<PendingUpload<B::Buf>>,
}

impl<B: Backend> Staged<B> {
    fn new(be: &B, mut packet: loader::Prepared, replicas: usize) -> Self {
        let clips = match packet.parts.first_mut() {
            Some(Some(b)) if replicas == 1 => Some(be.start_upload(std::mem::take(&mut b.x))),
            _ => None,
        };
        Self { packet, clips }
    }
}

/// Trains on `be`; `device_sum` (cluster runs on GPUs) sums the gradients on the device instead
/// of through `ar`.
#[allow(clippy::too_many_arguments)]
fn run_on<B: Backend>(
    be: &B,
    device: String,
    job: &LoadedJob<TrainSpec>,
    opts: &TrainOptions,
    replicas: usize,
    ar: &mut dyn AllReduce,
    device_sum: Option<&dyn DeviceGradSum<B>>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let s = &job.spec;
    let out = opts.out.clone().unwrap_or_else(|| PathBuf::from(&s.output));
    // rank 0 writes every output; the other ranks only train
    let writer = ar.rank() == 0;
    let local = if ar.ranks() > 1 {
        ar.rank()..ar.rank() + 1
    } else {
        0..replicas
    };
    if writer {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    }

    // model, optimiser, schedule
    let cfg = model_config(job)?;
    let mode: Mode = s.model.mode.parse()?;
    let mut net = Network::new(be, cfg, mode)?;
    net.init_default(be, s.seed);
    if let Some(init) = &s.model.init {
        let path = job.resolve(init);
        let sd = model::api::read_weights(&path)?;
        let mapped = model::init::map_mae_keys(&sd);
        let missing = net
            .load_partial(be, &mapped)
            .with_context(|| format!("loading {}", path.display()))?;
        tracing::info!(
            loaded = mapped.len(),
            left_at_init = missing.len(),
            "initialised the backbone from {}",
            path.display()
        );
    }
    let sched = LinearDecay {
        base: s.optim.base_lr,
        booster: s.optim.booster,
        epochs: s.train.epochs,
        start_decay: s.optim.start_decay,
    };
    let mut opt = Optimizer::new(
        be,
        &net,
        OptimConfig {
            lr: sched.lr(0) as f32,
            beta1: s.optim.beta1,
            beta2: s.optim.beta2,
            eps: s.optim.eps,
            weight_decay: s.optim.weight_decay,
            rho: s.optim.rho,
        },
    );
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ DROPOUT_SALT);
    let trajectory = s.trajectory_hash();
    let mut progress = Progress {
        spec_hash: trajectory.clone(),
        ..Progress::default()
    };
    let ckpt = out.join("checkpoint.safetensors");
    let metrics_path = out.join("metrics.jsonl");
    let mut resumed_from = None;
    let mut epoch_so_far = Vec::new();
    let mut log: Option<MetricsLog> = match &opts.resume {
        Some(r) => {
            let path = if r.as_os_str() == "auto" {
                ckpt.clone()
            } else {
                r.clone()
            };
            let (p, r) = checkpoint::load(&path, be, &mut net, &mut opt)
                .with_context(|| format!("resuming from {}", path.display()))?;
            if p.spec_hash != trajectory {
                bail!(
                    "{} was written by another spec (trajectory hash {}…, this spec {}…): resume with the spec that started the run (only name, description, output, device, data threads/prefetch and the checkpoint interval may change)",
                    path.display(),
                    p.spec_hash.get(..12).unwrap_or(&p.spec_hash),
                    &trajectory[..12]
                );
            }
            progress = p;
            rng = r;
            resumed_from = Some(path.display().to_string());
            tracing::info!(
                epoch = progress.epoch,
                batch = progress.batch,
                step = progress.global_step,
                "resuming from {}",
                path.display()
            );
            if writer {
                let (log, current) = MetricsLog::resume(&metrics_path, &progress)?;
                epoch_so_far = current;
                Some(log)
            } else {
                None
            }
        }
        None if writer => Some(MetricsLog::create(&metrics_path)?),
        None => None,
    };

    // data
    let train_dir = job.resolve(&s.data.train);
    let train_set = Arc::new(
        ShardSet::open(&train_dir)
            .with_context(|| format!("opening shard stores under {}", train_dir.display()))?,
    );
    let holdout = &s.data.holdout;
    let train_filter = if holdout.is_empty() {
        VideoFilter::All
    } else {
        VideoFilter::Except(holdout.clone())
    };
    let val = if s.train.val_every > 0 && writer {
        let (dir, filter) = match &s.data.val {
            Some(v) if holdout.is_empty() => (job.resolve(v), VideoFilter::All),
            Some(v) => (job.resolve(v), VideoFilter::Only(holdout.clone())),
            None => (train_dir.clone(), VideoFilter::Only(holdout.clone())),
        };
        let set = ShardSet::open(&dir)
            .with_context(|| format!("opening validation stores under {}", dir.display()))?;
        let v = ValSet::new(set, &filter, s.seed, s.train.val_limit);
        if v.clips.is_empty() {
            bail!(
                "no validation clips: no video under {} with ≥ 4 stored frames matches the filter",
                dir.display()
            );
        }
        Some(v)
    } else {
        None
    };
    let sbv = SbvConfig {
        out_size: cfg.img_size,
        grid: cfg.grid(),
        target_mode: if s.data.targets == "clean" {
            TargetMode::Clean
        } else {
            TargetMode::Compat
        },
        ..SbvConfig::default()
    };
    let threads = match s.data.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let val_cfg = ValConfig {
        seed: s.seed,
        sbv: sbv.clone(),
        clips_per_forward: s.train.val_batch,
        threads,
    };
    let plan_len = |epoch: u32| {
        EpochPlan::new(
            &train_set,
            &train_filter,
            s.seed,
            epoch as u64,
            s.train.batch_items,
            s.train.steps_per_epoch,
        )
        .batches
        .len() as u64
    };
    let first_len = plan_len(progress.epoch.min(s.train.epochs.saturating_sub(1)));
    if first_len == 0 {
        bail!(
            "no training clips: no video under {} with ≥ 4 stored frames (after the holdout filter)",
            train_dir.display()
        );
    }
    let loader = Loader::start(
        train_set.clone(),
        LoaderConfig {
            seed: s.seed,
            filter: train_filter.clone(),
            items: s.train.batch_items,
            max_batches: s.train.steps_per_epoch,
            epochs: s.train.epochs as u64,
            sbv: sbv.clone(),
            threads,
            prefetch: s.data.prefetch,
            replicas,
            local: local.clone(),
        },
        progress.epoch as u64,
        progress.batch,
    )?;

    let total_steps = opts
        .max_steps
        .unwrap_or(first_len * s.train.epochs as u64)
        .max(progress.global_step);
    let bar = if opts.quiet || !writer {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total_steps)
    };
    bar.set_style(
        ProgressStyle::with_template("train {bar:30} {pos}/{len} steps {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(progress.global_step);

    let mut failed: Vec<FailedItem> = Vec::new();
    let (mut wait_total, mut step_total, mut clips_total) = (0.0f64, 0.0f64, 0usize);
    let mut steps_this_run = 0u64;
    let mut last_val = None;
    let mut stopped = false;
    let mut saved_at = None;
    // The next batch, already received, its clips travelling to the device (single replica):
    // the copy overlaps the current step instead of delaying the next one.
    let mut ahead: Option<Staged<B>> = None;
    'epochs: for epoch in progress.epoch..s.train.epochs {
        let n = plan_len(epoch);
        let lr = sched.lr(epoch);
        opt.cfg.lr = lr as f32;
        let frozen = epoch < s.train.freeze_backbone_epochs;
        let (mut ep_loss, mut ep_correct, mut ep_clips) = (0.0f64, 0usize, 0usize);
        // a resumed epoch continues the running means of the steps it already took
        for r in std::mem::take(&mut epoch_so_far) {
            let (loss, acc, n) = (r["loss"].as_f64(), r["acc"].as_f64(), r["clips"].as_u64());
            if let (Some(loss), Some(acc), Some(n)) = (loss, acc, n) {
                ep_loss += loss * n as f64;
                ep_correct += (acc * n as f64).round() as usize;
                ep_clips += n as usize;
            }
        }
        while progress.batch < n {
            if opts.max_steps.is_some_and(|m| progress.global_step >= m) {
                stopped = true;
                break 'epochs;
            }
            let t0 = Instant::now();
            let Staged { packet: p, clips } = match ahead.take() {
                Some(a) => a,
                None => Staged::new(
                    be,
                    loader
                        .rx
                        .recv()
                        .context("the data thread stopped unexpectedly")?,
                    replicas,
                ),
            };
            let wait = t0.elapsed().as_secs_f64();
            if (p.epoch, p.index) != (epoch as u64, progress.batch) {
                bail!(
                    "internal: data thread sent batch {}/{} while the model expected {}/{}",
                    p.epoch,
                    p.index,
                    epoch,
                    progress.batch
                );
            }
            for f in &p.failed {
                tracing::warn!(epoch = f.epoch, clip = %f.clip, "clip skipped: {}", f.reason);
            }
            failed.extend(p.failed);
            progress.batch += 1;
            let t1 = Instant::now();
            if replicas == 1 {
                // start the following batch's upload if the data thread has it ready
                if let Ok(next) = loader.rx.try_recv() {
                    ahead = Some(Staged::new(be, next, replicas));
                }
            }
            let r = if replicas == 1 {
                let (Some(b), Some(clips)) = (p.parts.into_iter().next().flatten(), clips) else {
                    continue;
                };
                let x = be.finish_upload(clips);
                let r = sam_step_on(be, &mut net, &mut opt, &x, &b, &mut rng, frozen)
                    .with_context(|| format!("epoch {epoch}, batch {}", p.index))?;
                let correct = r
                    .cls
                    .iter()
                    .zip(&b.labels)
                    .filter(|(z, y)| (**z >= 0.0) == (**y >= 0.5))
                    .count();
                StepLog {
                    loss: r.pass1.total,
                    loss_hm: r.pass1.hm,
                    loss_cls: r.pass1.cls,
                    loss_spatial: r.pass1.temp_loc,
                    loss_pass2: r.pass2.total,
                    grad_norm: r.grad_norm,
                    clips: b.batch,
                    correct,
                    replica_clips: None,
                }
            } else {
                let r = replicated_sam_step(
                    be,
                    &mut net,
                    &mut opt,
                    &p.parts,
                    local.start,
                    replicas,
                    &mut rng,
                    frozen,
                    ar,
                    device_sum,
                )
                .with_context(|| format!("epoch {epoch}, batch {}", p.index))?;
                let Some(r) = r else {
                    continue;
                };
                StepLog {
                    loss: r.loss,
                    loss_hm: r.loss_hm,
                    loss_cls: r.loss_cls,
                    loss_spatial: r.loss_spatial,
                    loss_pass2: r.loss_pass2,
                    grad_norm: r.grad_norm,
                    clips: r.clips,
                    correct: r.correct,
                    replica_clips: Some(r.replica_clips),
                }
            };
            let step_s = t1.elapsed().as_secs_f64();
            progress.global_step += 1;
            steps_this_run += 1;
            wait_total += wait;
            step_total += step_s;
            clips_total += r.clips;
            let correct = r.correct;
            ep_loss += r.loss * r.clips as f64;
            ep_correct += correct;
            ep_clips += r.clips;
            let acc = correct as f64 / r.clips as f64;
            let mut record = json!({
                "kind": "step", "epoch": epoch, "step": progress.global_step, "batch": p.index,
                "lr": lr, "loss": r.loss, "loss_hm": r.loss_hm, "loss_cls": r.loss_cls,
                "loss_spatial": r.loss_spatial, "loss_pass2": r.loss_pass2, "acc": acc,
                "grad_norm": r.grad_norm, "clips": r.clips, "frozen_backbone": frozen,
                "data_wait": wait / (wait + step_s), "prep_s": p.prep_s, "step_s": step_s,
            });
            if let Some(rc) = &r.replica_clips {
                record["replica_clips"] = json!(rc);
            }
            if let Some(log) = log.as_mut() {
                log.write(&record)?;
            }
            bar.set_position(progress.global_step);
            bar.set_message(format!(
                "epoch {epoch} loss {:.4} acc {acc:.2} wait {:.0}%",
                r.loss,
                100.0 * wait / (wait + step_s)
            ));
            #[allow(clippy::manual_is_multiple_of)]
            // `is_multiple_of` needs Rust 1.87, MSRV is 1.86
            if writer
                && s.train.checkpoint_every > 0
                && progress.global_step % s.train.checkpoint_every == 0
            {
                checkpoint::save(&ckpt, be, &net, &opt, &progress, &rng)?;
                saved_at = Some(progress.global_step);
            }
        }

        // epoch end: validation, best weights, epoch record, checkpoint
        let mut val_json = json!(null);
        let mut improved = false;
        if let Some(v) = &val {
            if s.train.val_every > 0 && (epoch + 1) % s.train.val_every == 0 {
                bar.set_message(format!("epoch {epoch} validating {} clips", v.clips.len()));
                let r = validate(be, &mut net, v, &val_cfg, epoch as u64)
                    .with_context(|| format!("validation after epoch {epoch}"))?;
                improved = progress.best_val_acc.is_none_or(|b| r.acc > b);
                if improved {
                    progress.best_val_acc = Some(r.acc);
                    progress.best_epoch = Some(epoch);
                    save_weights(be, &net, &out.join("best.safetensors"))?;
                }
                tracing::info!(
                    epoch,
                    val_acc = r.acc,
                    val_loss = r.loss,
                    improved,
                    "validated"
                );
                failed.extend(r.failed.iter().cloned());
                last_val = Some(r.acc);
                val_json = json!({"acc": r.acc, "loss": r.loss, "clips": r.clips});
            }
        }
        let epoch_record = json!({
            "kind": "epoch", "epoch": epoch, "step": progress.global_step, "lr": lr,
            "train_loss": if ep_clips > 0 { json!(ep_loss / ep_clips as f64) } else { json!(null) },
            "train_acc": if ep_clips > 0 { json!(ep_correct as f64 / ep_clips as f64) } else { json!(null) },
            "val_acc": val_json["acc"], "val_loss": val_json["loss"], "best": improved,
        });
        progress.epoch = epoch + 1;
        progress.batch = 0;
        if let Some(log) = log.as_mut() {
            log.write(&epoch_record)?;
            checkpoint::save(&ckpt, be, &net, &opt, &progress, &rng)?;
            saved_at = Some(progress.global_step);
        }
    }
    drop(loader);
    bar.finish_and_clear();
    if writer {
        if stopped && saved_at != Some(progress.global_step) {
            checkpoint::save(&ckpt, be, &net, &opt, &progress, &rng)?;
        }
        save_weights(be, &net, &out.join("final.safetensors"))?;
    }

    let mut failed_lines = String::new();
    for f in &failed {
        failed_lines.push_str(&serde_json::to_string(f)?);
        failed_lines.push('\n');
    }
    if writer {
        pipeline::atomic_file::write_atomic(&out.join("failed.jsonl"), failed_lines.as_bytes())?;
    }
    let summary = Summary {
        spec: job.path.display().to_string(),
        spec_hash: job.hash.clone(),
        device,
        model: format!("{cfg:?}"),
        parameters: net.inv.num_params(),
        status: if stopped {
            "stopped at --max-steps"
        } else {
            "completed"
        }
        .into(),
        epochs_completed: progress.epoch,
        global_step: progress.global_step,
        steps_this_run,
        resumed_from,
        best_val_acc: progress.best_val_acc,
        best_epoch: progress.best_epoch,
        last_val_acc: last_val,
        data_wait_fraction: if wait_total + step_total > 0.0 {
            wait_total / (wait_total + step_total)
        } else {
            0.0
        },
        mean_step_s: if steps_this_run > 0 {
            step_total / steps_this_run as f64
        } else {
            0.0
        },
        clips_per_s: if step_total > 0.0 {
            clips_total as f64 / (wait_total + step_total)
        } else {
            0.0
        },
        failed_items: failed.len(),
        wall_s: started.elapsed().as_secs_f64(),
        out: out.display().to_string(),
        replicas,
        processes: ar.ranks(),
    };
    if writer {
        pipeline::atomic_file::write_atomic(
            &out.join("report.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
    }
    Ok(summary)
}
