//! `fakestormer preprocess --manifest M --out DIR [--spec SPEC]`: runs a preprocess spec (the
//! built-in default unless `--spec` is given) over manifest M, writing one shard store per video
//! under `DIR/shards/`. Runs are incremental (docs/incremental.md): `DIR/index.jsonl` records what
//! each store was made from, and a rerun processes only added and changed videos and retires the
//! stores of removed ones.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::cluster::ClusterArgs;

/// `specs/preprocess-default.toml`, built into the binary so `preprocess` works from any folder.
const DEFAULT_SPEC: &str = include_str!("../../specs/preprocess-default.toml");

#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Manifest of the videos (one JSON line per video); replaces the spec's `[source] manifest`.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Output folder (shard stores under `shards/`, and `report.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// Preprocess spec (default: the built-in specs/preprocess-default.toml).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Re-hash every input file instead of trusting an unchanged size and modification time.
    #[arg(long)]
    pub rehash: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Replaces the `manifest = ...` line of the `[source]` table with `manifest`.
fn with_manifest(text: &str, manifest: &Path) -> anyhow::Result<String> {
    let value = serde_json::to_string(&manifest.display().to_string())?;
    let mut table = String::new();
    let mut replaced = false;
    let mut out = String::with_capacity(text.len() + value.len());
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            table = t.trim_end().to_owned();
        }
        let is_key = t
            .strip_prefix("manifest")
            .is_some_and(|r| r.trim_start().starts_with('='));
        if table == "[source]" && is_key && !replaced {
            out.push_str(&format!("manifest = {value}\n"));
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    anyhow::ensure!(
        replaced,
        "the spec has no `manifest = ...` line in its [source] table to replace"
    );
    Ok(out)
}

pub fn run(args: PreprocessArgs, quiet: bool) -> anyhow::Result<i32> {
    let registry = super::registry();
    let (path, text) = match &args.spec {
        Some(p) => (
            p.clone(),
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => (
            std::env::current_dir()?.join("preprocess-default.toml"),
            DEFAULT_SPEC.to_owned(),
        ),
    };
    let manifest = std::path::absolute(&args.manifest)
        .with_context(|| format!("resolving {}", args.manifest.display()))?;
    let text = with_manifest(&text, &manifest)?;
    let spec = pipeline::parse_spec(&path, &text, &registry).map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = pipeline::RunOptions {
        out_dir: Some(args.out.clone()),
        quiet,
        cancel: super::run::cancel_flag(),
    };
    let report = pipeline::incremental::run(
        &spec,
        registry,
        &args.cluster.options(),
        &opts,
        &stages::catalog::incremental_layout(),
        &pipeline::incremental::IncrementalOptions {
            rehash: args.rehash,
        },
    )
    .with_context(|| format!("preprocessing into {}", args.out.display()))?;
    let Some(report) = report else {
        if !quiet {
            eprintln!(
                "process {} done; process 0 writes the report",
                args.cluster.process
            );
        }
        return Ok(0);
    };
    super::run::summarize(&report, &args.out, quiet);
    if let Some(i) = &report.incremental {
        println!(
            "incremental: {} added, {} changed, {} retired, {} unchanged, {} failed ({} processed)",
            i.added, i.changed, i.retired, i.unchanged, i.failed, i.processed
        );
    }
    Ok(if report.status == "interrupted" {
        130
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::with_manifest;
    use std::path::Path;

    #[test]
    fn only_the_source_manifest_is_replaced() {
        let spec = "name = \"x\"\n[source]\nsplit = \"a\"\nmanifest = \"old.jsonl\"\n[sink]\nmanifest = 1\n";
        let got = with_manifest(spec, Path::new("/d/m \"q\".jsonl")).unwrap();
        assert_eq!(
            got,
            "name = \"x\"\n[source]\nsplit = \"a\"\nmanifest = \"/d/m \\\"q\\\".jsonl\"\n[sink]\nmanifest = 1\n"
        );
        assert!(with_manifest("[source]\n", Path::new("m")).is_err());
    }
}
