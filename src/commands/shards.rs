//! `fakestormer shards ls|verify|export DIR`: inspect, check and export the shard stores a
//! preprocess run wrote (one store per video under `DIR/shards/`, or any folder of stores).

use std::path::PathBuf;

use clap::Subcommand;
use stages::catalog::{find_stores, open_store};
use stages::official_layout::{export_official_stores, ExportOptions};
use stages::shard::ShardReader;

#[derive(Debug, Subcommand)]
pub enum ShardsCommand {
    /// List the stored videos: id, split, category, stored frames, frames without a face.
    Ls { dir: PathBuf },
    /// Re-read every record of every store; exit 1 if any store is damaged.
    Verify { dir: PathBuf },
    /// Write the stores in another layout (`official`: NNN.png crops + the landmarks JSON).
    Export {
        dir: PathBuf,
        #[arg(long, default_value = "official")]
        layout: String,
        #[arg(long)]
        out: PathBuf,
        /// `DATASET` in the JSON file name.
        #[arg(long, default_value = "FaceForensics")]
        dataset: String,
        /// `COMPRESSION` folder of the JSON.
        #[arg(long, default_value = "c23")]
        compression: String,
    },
}

fn stores(dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let found = find_stores(dir)?;
    anyhow::ensure!(!found.is_empty(), "no shard stores under {}", dir.display());
    Ok(found)
}

pub fn run(cmd: ShardsCommand) -> anyhow::Result<i32> {
    match cmd {
        ShardsCommand::Ls { dir } => {
            println!("video\tsplit\tcategory\tframes\tno_face\tsize\tfps");
            for r in open_store(&dir)? {
                for v in r.videos() {
                    let m = &v.meta;
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}x{}\t{:.3}",
                        m.video_id,
                        m.split,
                        m.category,
                        v.frames.len(),
                        m.no_face.len(),
                        m.width,
                        m.height,
                        m.fps
                    );
                }
            }
            Ok(0)
        }
        ShardsCommand::Verify { dir } => {
            let (mut ok, mut bad, mut records) = (0usize, 0usize, 0u64);
            for s in stores(&dir)? {
                match ShardReader::open(&s).and_then(|r| r.verify()) {
                    Ok(n) => {
                        ok += 1;
                        records += n;
                    }
                    Err(e) => {
                        bad += 1;
                        println!("DAMAGED {}: {e}", s.display());
                    }
                }
            }
            println!("{ok} stores ok ({records} records), {bad} damaged");
            Ok(if bad == 0 { 0 } else { 1 })
        }
        ShardsCommand::Export {
            dir,
            layout,
            out,
            dataset,
            compression,
        } => {
            anyhow::ensure!(
                layout == "official",
                "unknown layout `{layout}` (expected: official)"
            );
            stores(&dir)?;
            let readers = open_store(&dir)?;
            let r = export_official_stores(
                &readers,
                &out,
                &ExportOptions {
                    dataset,
                    compression,
                },
            )?;
            println!(
                "exported {} videos, {} images to {}",
                r.videos,
                r.images,
                out.display()
            );
            for j in &r.json_files {
                println!("landmarks: {}", j.display());
            }
            Ok(0)
        }
    }
}
