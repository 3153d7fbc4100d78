//! `fakestormer plot RUN_DIR`: render a training run's loss, accuracy and learning-rate curves
//! (from `RUN_DIR/metrics.jsonl`) to `RUN_DIR/plots/*.png`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Training run folder (the one holding metrics.jsonl).
    run_dir: PathBuf,
}

pub fn run(a: PlotArgs) -> anyhow::Result<i32> {
    for path in crate::plot::plot_run(&a.run_dir)? {
        println!("{}", path.display());
    }
    Ok(0)
}
