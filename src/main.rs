//! `fakestormer`: preprocess deepfake-video corpora, train and evaluate FakeSTormer, check videos —
//! every job driven by a declarative, reproducible pipeline spec.

mod commands;
mod inference;
mod plot;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fakestormer", version, about, long_about = None)]
struct Cli {
    /// Only errors on stderr (no progress bars, no info logs).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline spec (on this process, or as one process of a cluster).
    Run(commands::run::RunArgs),
    /// Preprocess videos into shard stores (face crops + landmarks) with a preprocess spec.
    Preprocess(commands::preprocess::PreprocessArgs),
    /// List, verify or export shard stores.
    #[command(subcommand)]
    Shards(commands::shards::ShardsCommand),
    /// Check or print pipeline specs.
    #[command(subcommand)]
    Spec(commands::spec::SpecCommand),
    /// Build manifests (one JSON line per video) for the public corpora or a folder.
    #[command(subcommand)]
    Manifest(commands::manifest::ManifestCommand),
    /// Inspect, convert and run the FakeSTormer network.
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
    /// Preview or dump self-blended training clips sampled from shard stores.
    #[command(subcommand)]
    Synth(commands::synth::SynthCommand),
    /// Train the detector on real videos and their self-blended fakes (a train spec).
    Train(commands::train::TrainArgs),
    /// Render loss/accuracy/learning-rate curves of a training run to PNG.
    Plot(commands::plot::PlotArgs),
    /// Evaluate a detector on a test set: per-video scores, AUC/AP/AR/mF1/ACC/EER, ROC curve.
    Eval(Box<commands::eval::EvalArgs>),
    /// Check video files: fake probability per video and per clip, optional explanation image.
    Detect(commands::detect::DetectArgs),
}

fn main() {
    let cli = Cli::parse();
    let filter = if cli.quiet { "error" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(a) => commands::run::run(a, cli.quiet),
        Command::Preprocess(a) => commands::preprocess::run(a, cli.quiet),
        Command::Shards(c) => commands::shards::run(c),
        Command::Spec(c) => commands::spec::run(c),
        Command::Manifest(c) => commands::manifest::run(c),
        Command::Model(c) => commands::model::run(c),
        Command::Synth(c) => commands::synth::run(c),
        Command::Train(a) => commands::train::run(a, cli.quiet),
        Command::Plot(a) => commands::plot::run(a),
        Command::Eval(a) => commands::eval::run(*a, cli.quiet),
        Command::Detect(a) => commands::detect::run(a, cli.quiet),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
