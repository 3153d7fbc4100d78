//! `fakestormer run SPEC`: executes a pipeline spec and writes its outputs and `report.json`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::cluster::ClusterArgs;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline spec (TOML).
    pub spec: PathBuf,
    /// Output folder (default: the spec's `output`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Installs the Ctrl-C handler: the first press stops admitting items (those in flight finish and
/// are committed atomically), a second press exits at once.
pub fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting now");
            std::process::exit(130);
        }
        eprintln!(
            "interrupt: finishing items in flight, starting no new ones (Ctrl-C again to abort)"
        );
    });
    flag
}

pub fn run(args: RunArgs, quiet: bool) -> anyhow::Result<i32> {
    let registry = super::registry();
    let spec = pipeline::load_spec(&args.spec, &registry).map_err(|e| anyhow::anyhow!("{e}"))?;
    execute(&spec, registry, &args.cluster, args.out, quiet)
}

/// Runs a loaded spec with Ctrl-C handling, prints the outcome, and returns the exit code (130
/// when interrupted). Every command that runs a pipeline goes through here.
pub fn execute(
    spec: &pipeline::LoadedSpec,
    registry: std::sync::Arc<pipeline::Registry>,
    cluster: &ClusterArgs,
    out: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<i32> {
    execute_with(spec, registry, cluster, out, quiet, false)
}

/// [`execute`]; `rehash` re-reads every input file of an incremental run.
pub fn execute_with(
    spec: &pipeline::LoadedSpec,
    registry: std::sync::Arc<pipeline::Registry>,
    cluster: &ClusterArgs,
    out: Option<PathBuf>,
    quiet: bool,
    rehash: bool,
) -> anyhow::Result<i32> {
    let Some(report) = execute_report_with(spec, registry, cluster, out, quiet, rehash)? else {
        return Ok(0);
    };
    Ok(if report.status == "interrupted" {
        130
    } else {
        0
    })
}

/// [`execute`], returning the run report (`None` on cluster processes other than 0, which do
/// not hold it) for commands that continue with the results (`eval`, `detect`).
pub fn execute_report(
    spec: &pipeline::LoadedSpec,
    registry: std::sync::Arc<pipeline::Registry>,
    cluster: &ClusterArgs,
    out: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<Option<pipeline::report::RunReport>> {
    execute_report_with(spec, registry, cluster, out, quiet, false)
}

/// The one place a pipeline runs: a spec whose sink is the shard store runs incrementally (only
/// added or changed items, retired stores removed, `index.jsonl` kept).
fn execute_report_with(
    spec: &pipeline::LoadedSpec,
    registry: std::sync::Arc<pipeline::Registry>,
    cluster: &ClusterArgs,
    out: Option<PathBuf>,
    quiet: bool,
    rehash: bool,
) -> anyhow::Result<Option<pipeline::report::RunReport>> {
    let opts = pipeline::RunOptions {
        out_dir: out.clone(),
        quiet,
        cancel: cancel_flag(),
    };
    let report = if spec.spec.sink.kind == stages::catalog::SHARD_STORE_KIND {
        pipeline::incremental::run(
            spec,
            registry,
            &cluster.options(),
            &opts,
            &stages::catalog::incremental_layout(),
            &pipeline::incremental::IncrementalOptions { rehash },
        )
        .map_err(anyhow::Error::from)
    } else {
        pipeline::run(spec, registry, &cluster.options(), &opts).map_err(anyhow::Error::from)
    }
    .with_context(|| format!("running {}", spec.path.display()))?;
    let Some(report) = report else {
        if !quiet {
            eprintln!(
                "process {} done; process 0 writes the report",
                cluster.process
            );
        }
        return Ok(None);
    };
    let out = out.unwrap_or_else(|| PathBuf::from(&spec.spec.output));
    summarize(&report, &out, quiet);
    if let Some(i) = &report.incremental {
        println!(
            "incremental: {} added, {} changed, {} retired, {} unchanged, {} failed ({} processed)",
            i.added, i.changed, i.retired, i.unchanged, i.failed, i.processed
        );
    }
    Ok(Some(report))
}

/// Prints the run's outcome: counts, failed items with reasons, where the report is.
pub fn summarize(report: &pipeline::report::RunReport, out: &std::path::Path, quiet: bool) {
    if quiet {
        return;
    }
    let c = &report.counts;
    eprintln!(
        "{}: {} items, {} ok, {} failed, {} not started in {:.1}s (spec {} {})",
        report.status,
        c.total,
        c.completed,
        c.failed,
        c.not_started,
        report.wall_seconds,
        report.provenance.spec_name,
        &report.provenance.spec_hash[..12]
    );
    for s in &report.stages {
        eprintln!(
            "  {:>14}: {} in, {} out, {} failed, {} skipped, {:.1} rec/s/thread, peak queue {}/{}",
            s.stage,
            s.records_in,
            s.records_out,
            s.failed,
            s.skipped,
            s.records_per_busy_second,
            s.peak_queued,
            s.capacity
        );
    }
    for f in &report.failed {
        eprintln!("  FAILED {} at {}: {}", f.item, f.stage, f.reason);
    }
    eprintln!("report: {}", out.join("report.json").display());
}
