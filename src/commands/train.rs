//! `fakestormer train SPEC [--resume CKPT|auto] [--max-steps N] [--out DIR]`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::train::spec::TrainSpec;
use crate::train::{self, TrainOptions};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Train spec (e.g. specs/train-fakestormer-c23.toml).
    pub spec: PathBuf,
    /// Continue from a checkpoint written by this spec; `auto` = the run folder's latest.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many optimizer steps in total (a checkpoint is written).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Run folder instead of the spec's `output`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: TrainArgs, quiet: bool) -> anyhow::Result<i32> {
    let job = match pipeline::load_job::<TrainSpec>(&a.spec) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{e}");
            return Ok(2);
        }
    };
    let s = train::run(
        &job,
        &TrainOptions {
            resume: a.resume,
            max_steps: a.max_steps,
            out: a.out,
            quiet,
        },
    )
    .with_context(|| format!("training {}", a.spec.display()))?;
    println!(
        "{}: {} steps ({} this run), {} epochs on {}; best val acc {}; data wait {:.1}% of the loop; {} clips skipped",
        s.status,
        s.global_step,
        s.steps_this_run,
        s.epochs_completed,
        s.device,
        s.best_val_acc
            .map_or("n/a".into(), |v| format!("{v:.4} (epoch {})", s.best_epoch.unwrap_or(0))),
        100.0 * s.data_wait_fraction,
        s.failed_items
    );
    println!("run folder: {}", s.out);
    Ok(0)
}
