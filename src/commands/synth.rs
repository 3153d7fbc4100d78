//! `fakestormer synth preview|dump`: look at (preview grid) or inspect (safetensors dump) the
//! self-blended clips the detector trains on, sampled from shard stores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use stages::clips::{ClipRef, ShardSet};
use stages::synth::batch::{self, BatchKey};
use stages::synth::preview;
use stages::synth::sbv::{self, ClipInput, ItemKey, SbvConfig};

#[derive(Debug, Args)]
pub struct Source {
    /// A shard store, or a folder with shard stores in sub-folders.
    #[arg(long)]
    shards: PathBuf,
    /// Number of clips (the first N clips of the epoch).
    #[arg(long, default_value_t = 4)]
    items: usize,
    #[arg(long, default_value_t = 317)]
    seed: u64,
    /// Epoch: picks the per-video start offsets (0 in epoch 0) and the synthesis draws.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
}

#[derive(Debug, Subcommand)]
pub enum SynthCommand {
    /// Render a PNG grid per clip: real frames, fake frames, blend mask, boundary map and the
    /// 14×14 target.
    Preview {
        #[command(flatten)]
        src: Source,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the synthesized batch (clips and every target) as safetensors.
    Dump {
        #[command(flatten)]
        src: Source,
        #[arg(long)]
        out: PathBuf,
        /// Synthesis threads (the output does not depend on it).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

/// A clip that could not be used, and why.
struct Failure {
    item: usize,
    clip: String,
    reason: String,
}

/// A loaded clip with its index among the epoch's clips (its item number).
type Loaded = (usize, ClipRef, ClipInput);

/// The first `items` clips, loaded; clips that fail to load are reported, not fatal.
fn load(src: &Source) -> anyhow::Result<(Vec<Loaded>, Vec<Failure>)> {
    if src.items == 0 {
        bail!("--items must be at least 1");
    }
    let set = ShardSet::open(&src.shards)
        .with_context(|| format!("opening shard stores under {}", src.shards.display()))?;
    let clips = set.clips(src.seed, src.epoch);
    if clips.is_empty() {
        bail!(
            "{}: no video has {} stored frames",
            src.shards.display(),
            stages::clips::CLIP_FRAMES
        );
    }
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (item, clip) in clips.into_iter().take(src.items).enumerate() {
        match set.load(&clip) {
            Ok(input) => ok.push((item, clip, input)),
            Err(e) => failed.push(Failure {
                item,
                clip: clip.to_string(),
                reason: e.to_string(),
            }),
        }
    }
    Ok((ok, failed))
}

fn key(src: &Source, item: usize) -> ItemKey {
    ItemKey {
        seed: src.seed,
        epoch: src.epoch,
        item: item as u64,
    }
}

/// Lists failed items on stderr and a summary on stdout (`out`: the file written, if any).
fn report(failed: &[Failure], done: usize, out: Option<&Path>) {
    for f in failed {
        eprintln!("item {} ({}): failed: {}", f.item, f.clip, f.reason);
    }
    let wrote = out.map_or("nothing written".to_string(), |p| {
        format!("wrote {}", p.display())
    });
    println!("{done} clips synthesized, {} failed; {wrote}", failed.len());
}

/// Runs a `synth` subcommand; exit code 0 when the output was written (failed items are listed
/// on stderr), an error when no item could be synthesized.
pub fn run(cmd: SynthCommand) -> anyhow::Result<i32> {
    match cmd {
        SynthCommand::Preview { src, out } => {
            let (inputs, mut failed) = load(&src)?;
            let cfg = SbvConfig {
                keep_debug: true,
                ..SbvConfig::default()
            };
            let mut pairs = Vec::new();
            for (item, clip, input) in &inputs {
                match sbv::synthesize(input, key(&src, *item), &cfg) {
                    Ok(p) => pairs.push(p),
                    Err(e) => failed.push(Failure {
                        item: *item,
                        clip: clip.to_string(),
                        reason: e.to_string(),
                    }),
                }
            }
            failed.sort_by_key(|f| f.item);
            if pairs.is_empty() {
                report(&failed, 0, None);
                bail!("no clip could be synthesized; nothing written");
            }
            preview::write_png(&pairs, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            report(&failed, pairs.len(), Some(&out));
            Ok(0)
        }
        SynthCommand::Dump { src, out, threads } => {
            let (loaded, mut failed) = load(&src)?;
            let keys: Vec<ItemKey> = loaded.iter().map(|(i, _, _)| key(&src, *i)).collect();
            let inputs: Vec<ClipInput> = loaded.iter().map(|(_, _, c)| c.clone()).collect();
            let results =
                batch::synthesize_items(&inputs, &keys, &SbvConfig::default(), threads.max(1))?;
            let mut pairs = Vec::new();
            let mut meta = HashMap::new();
            for ((item, clip, _), r) in loaded.iter().zip(results) {
                match r {
                    Ok(p) => {
                        let k = pairs.len();
                        meta.insert(format!("item.{k}.clip"), clip.to_string());
                        meta.insert(format!("item.{k}.index"), item.to_string());
                        pairs.push(p);
                    }
                    Err(e) => failed.push(Failure {
                        item: *item,
                        clip: clip.to_string(),
                        reason: e.to_string(),
                    }),
                }
            }
            failed.sort_by_key(|f| f.item);
            if pairs.is_empty() {
                report(&failed, 0, None);
                bail!("no clip could be synthesized; nothing written");
            }
            for f in &failed {
                meta.insert(
                    format!("failed.{}", f.item),
                    format!("{}: {}", f.clip, f.reason),
                );
            }
            meta.extend(batch::describe_pairs(&pairs));
            meta.insert("seed".into(), src.seed.to_string());
            meta.insert("epoch".into(), src.epoch.to_string());
            let b = batch::Batch::assemble(
                &pairs,
                BatchKey {
                    seed: src.seed,
                    epoch: src.epoch,
                    index: 0,
                },
            )?;
            b.write_safetensors(&out, meta)
                .with_context(|| format!("writing {}", out.display()))?;
            report(&failed, pairs.len(), Some(&out));
            Ok(0)
        }
    }
}
