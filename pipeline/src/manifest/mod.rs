//! Manifests: one JSON line per video, the unit of work of every pipeline.
//!
//! A manifest is the only place a run learns about its inputs, so it carries everything the later
//! stages and reports need to name an item (`id`), find it (`path`) and score it (`label`, `dataset`,
//! `split`, `method`). Builders for the public corpora live in [`build`].

pub mod build;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Ground-truth label of a video: 0 = real, 1 = fake.
pub type Label = u8;

/// One manifest row (one video).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRow {
    /// Unique, stable id; outputs are named after it, so it must not depend on where the data lives.
    pub id: String,
    /// Absolute path, or relative to the manifest file's folder.
    pub path: String,
    /// 0 real, 1 fake.
    pub label: Label,
    /// Dataset name (`ff++`, `celeb-df-v2`, `dfdc`, `dfdcp`, `dfd`, `dfw`, `diffswap`, `demo`, ...).
    pub dataset: String,
    /// `train`, `val` or `test` (free text for custom corpora).
    pub split: String,
    /// Manipulation method (`original` for real videos of FF++, `Deepfakes`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Identity of the source person where the corpus tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Compression level (`c0`, `c23`, `c40`) where the corpus has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Content hash of the file, when known; checked by stages that read the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Extra columns kept from user label files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl ManifestRow {
    /// Resolves `path` against the folder of the manifest it came from.
    pub fn resolved_path(&self, manifest_dir: &Path) -> PathBuf {
        let p = Path::new(&self.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            manifest_dir.join(p)
        }
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Row {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: duplicate id `{id}` (first seen on line {first})")]
    DuplicateId {
        path: PathBuf,
        line: usize,
        first: usize,
        id: String,
    },
}

/// Reads a JSONL manifest; blank lines are skipped, every other line must be a valid row.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>, ManifestError> {
    let file = std::fs::File::open(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let row: ManifestRow = serde_json::from_str(&line).map_err(|e| ManifestError::Row {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if row.label > 1 {
            return Err(ManifestError::Row {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("label must be 0 (real) or 1 (fake), got {}", row.label),
            });
        }
        if let Some(first) = seen.insert(row.id.clone(), i + 1) {
            return Err(ManifestError::DuplicateId {
                path: path.to_path_buf(),
                line: i + 1,
                first,
                id: row.id,
            });
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Writes rows as JSONL atomically (temp file + rename).
pub fn write_manifest(path: &Path, rows: &[ManifestRow]) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut buf, row).map_err(std::io::Error::other)?;
        buf.write_all(b"\n")?;
    }
    crate::atomic_file::write_atomic(path, &buf)
}
