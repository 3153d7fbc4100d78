//! A custom corpus: a folder plus a labels CSV (`--from-dir DIR --labels labels.csv`).
//!
//! Required columns `path` (relative to DIR, or absolute inside it) and `label` (`0`/`1` or
//! `real`/`fake`, any case). The optional columns `split` (default `test`), `method`, `identity`,
//! `compression` and `sha256` fill the row fields of the same name; every other column is kept
//! in `extra`. The id is the path relative to DIR without extension, so it does not change when
//! the folder moves. The dataset name is `--name` (default `custom`).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::{id_fragment, parse_label, Acc, BuildError, BuildOptions};
use crate::manifest::ManifestRow;

/// Columns that map onto row fields instead of `extra`.
const FIELDS: &[&str] = &[
    "path",
    "label",
    "split",
    "method",
    "identity",
    "compression",
    "sha256",
];

pub(super) fn build(root: &Path, opts: &BuildOptions, acc: &mut Acc) -> Result<(), BuildError> {
    let labels = match &opts.labels {
        Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.clone()),
        None => root.join("labels.csv"),
    };
    let not_found = |reason: String| BuildError::NotFound {
        path: labels.clone(),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(&labels)
        .map_err(|e| not_found(format!("cannot read the labels file: {e}")))?;
    // Column names match case-insensitively; `extra` keeps them as written.
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| BuildError::BadIndex {
            path: labels.clone(),
            message: format!("unreadable header: {e}"),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(path_col), Some(label_col)) = (col("path"), col("label")) else {
        return Err(BuildError::BadIndex {
            path: labels.clone(),
            message: format!(
                "header must have `path` and `label` columns, got `{}`",
                headers.join(",")
            ),
        });
    };
    let dataset = opts.name.clone().unwrap_or_else(|| "custom".into());

    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                acc.problem(format!("{}:{line}", labels.display()), e.to_string());
                continue;
            }
        };
        let at = format!(
            "{}:{}",
            labels.display(),
            record.position().map_or(0, |p| p.line())
        );
        let get = |name: &str| {
            col(name)
                .and_then(|i| record.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let label = match parse_label(record.get(label_col).unwrap_or(""), true) {
            Ok(l) => l,
            Err(e) => {
                acc.problem(&at, e);
                continue;
            }
        };
        let raw = record.get(path_col).unwrap_or("");
        let Some(rel) = relative_inside(root, Path::new(raw)) else {
            acc.problem(
                &at,
                format!("path `{raw}` is not inside {}", root.display()),
            );
            continue;
        };
        let extra: BTreeMap<String, String> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| !FIELDS.contains(&h.to_ascii_lowercase().as_str()))
            .map(|(i, h)| (h.clone(), record.get(i).unwrap_or("").to_string()))
            .collect();
        let path = root.join(&rel);
        let row = ManifestRow {
            id: id_fragment(&rel),
            path: path.to_string_lossy().into_owned(),
            label,
            dataset: dataset.clone(),
            split: get("split").unwrap_or_else(|| "test".into()),
            method: get("method"),
            identity: get("identity"),
            compression: get("compression"),
            sha256: get("sha256"),
            extra,
        };
        acc.checked_row(&path, Some(&labels), row);
    }
    Ok(())
}

/// `path` relative to `root` when it names something inside it (no `..`), else `None`.
fn relative_inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = if path.is_absolute() {
        path.strip_prefix(root).ok()?.to_path_buf()
    } else {
        path.to_path_buf()
    };
    let rel: PathBuf = rel
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !rel.as_os_str().is_empty()).then_some(rel)
}
