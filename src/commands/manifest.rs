//! `fakestormer manifest build`: one JSONL row per video for a public corpus or a folder.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use pipeline::manifest::build::{build, relativize, BuildOptions, DATASETS};

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Build a manifest from a corpus laid out as distributed (see the README for each layout).
    Build {
        /// ff++, celeb-df-v2, dfdc, dfdcp, dfd, dfw, diffswap.
        #[arg(long, required_unless_present = "from_dir")]
        dataset: Option<String>,
        /// Corpus root folder.
        #[arg(long, required_unless_present = "from_dir")]
        root: Option<PathBuf>,
        /// c0 (alias raw), c23 or c40 where the corpus has compression levels.
        #[arg(long)]
        compression: Option<String>,
        /// Keep only this split (train, val, test).
        #[arg(long)]
        split: Option<String>,
        /// A plain folder of videos labelled by a CSV (columns path,label; extra columns kept).
        #[arg(long, conflicts_with_all = ["dataset", "root"])]
        from_dir: Option<PathBuf>,
        /// Labels CSV for --from-dir (default DIR/labels.csv).
        #[arg(long, requires = "from_dir")]
        labels: Option<PathBuf>,
        /// Hash every video (sha256) into the manifest.
        #[arg(long)]
        sha256: bool,
        /// Where to write the manifest (paths in it become relative to its folder).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: ManifestCommand) -> anyhow::Result<i32> {
    let ManifestCommand::Build {
        dataset,
        root,
        compression,
        split,
        from_dir,
        labels,
        sha256,
        out,
    } = cmd;
    let (dataset, root) = match from_dir {
        Some(d) => ("from-dir".to_owned(), d),
        None => (
            dataset.context("--dataset is required")?,
            root.context("--root is required")?,
        ),
    };
    if !DATASETS.contains(&dataset.as_str()) {
        anyhow::bail!(
            "unknown dataset `{dataset}`; one of: {}",
            DATASETS.join(", ")
        );
    }
    let mut opts = BuildOptions::new(root);
    opts.compression = compression;
    opts.split = split;
    opts.labels = labels;
    opts.hash = sha256;
    let outcome = build(&dataset, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    for p in &outcome.problems {
        eprintln!("problem: {p}");
    }
    let mut rows = outcome.rows;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir)?;
    relativize(&mut rows, &dir).context("making paths relative to the manifest")?;
    pipeline::manifest::write_manifest(&out, &rows)
        .with_context(|| format!("writing {}", out.display()))?;
    let fakes = rows.iter().filter(|r| r.label == 1).count();
    eprintln!(
        "{}: {} videos ({} real, {} fake), {} problem(s)",
        out.display(),
        rows.len(),
        rows.len() - fakes,
        fakes,
        outcome.problems.len()
    );
    Ok(if outcome.problems.is_empty() { 0 } else { 3 })
}
