//! `metrics.jsonl`: one JSON object per optimizer step (`"kind": "step"`) and per epoch
//! (`"kind": "epoch"`). A resumed run first cuts the file back to what its checkpoint had seen,
//! so the log of a resumed run equals the log of an uninterrupted one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use model::checkpoint::Progress;

pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// A fresh log (an old one in the folder is replaced).
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Keeps the lines a run at `at` had written (steps ≤ global step, epochs before the current
    /// one), rewritten atomically, then appends. Returns the kept step records of the current
    /// epoch (the epoch's running means continue from them).
    pub fn resume(path: &Path, at: &Progress) -> anyhow::Result<(Self, Vec<serde_json::Value>)> {
        let mut kept = String::new();
        let mut current = Vec::new();
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue; // a line cut short by the kill
                };
                let keep = match v["kind"].as_str() {
                    Some("step") => v["step"].as_u64().is_some_and(|s| s <= at.global_step),
                    Some("epoch") => v["epoch"].as_u64().is_some_and(|e| e < at.epoch as u64),
                    _ => false,
                };
                if keep && v["kind"] == "step" && v["epoch"].as_u64() == Some(at.epoch as u64) {
                    current.push(v.clone());
                }
                if keep {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
        }
        pipeline::atomic_file::write_atomic(path, kept.as_bytes())
            .with_context(|| format!("rewriting {}", path.display()))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            current,
        ))
    }

    pub fn write(&mut self, record: &serde_json::Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}
