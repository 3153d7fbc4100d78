//! `fakestormer train SPEC [--resume CKPT|auto] [--max-steps N] [--out DIR]`
//! `[--processes N --process I --hostfile F]` (data-parallel: one replica per process).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::cluster::ClusterArgs;
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
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Cluster: seconds a rank waits for the others at a gradient exchange before giving up
    /// (must cover rank 0's validation).
    #[arg(long, default_value_t = 1800)]
    pub peer_timeout: u64,
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
            cluster: a.cluster.options(),
            peer_timeout: Some(std::time::Duration::from_secs(a.peer_timeout)),
        },
    )
    .with_context(|| format!("training {}", a.spec.display()))?;
    if s.processes > 1 && a.cluster.process != 0 {
        println!(
            "rank {} of {}: {} steps; outputs are written by rank 0",
            a.cluster.process, s.processes, s.global_step
        );
        return Ok(0);
    }
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
