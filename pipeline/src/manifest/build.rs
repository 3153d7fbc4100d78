//! Manifest builders for the public corpora (spec §8) and for plain folders with a labels CSV.
//!
//! Every builder turns a dataset's own index (split JSONs, list files, label CSVs, or its folder
//! names) into [`ManifestRow`]s. A video that the index lists but that is missing or unreadable
//! becomes a [`Problem`] naming its path, never a silent gap: the CLI prints the problems and still
//! writes the rows it could build. Only a wrong invocation (unknown dataset, bad option, a root or
//! index that cannot be found at all) is a [`BuildError`].
//!
//! Conventions shared by all builders:
//! - `method` is the folder name the official test loader keys its label on (spec §8), e.g.
//!   `original`/`Deepfakes` (FF++), `Celeb-real`, `method_A`, `real_test`, so per-method reports
//!   line up with the paper's tables.
//! - ids are `<dataset>/...` paths built from the corpus' own names (never from `--root`), so they
//!   are stable across machines; rows are sorted by id; duplicate ids are reported and dropped.
//! - paths are absolute; [`relativize`] rewrites them relative to the manifest's folder.

mod celeb_df;
mod dfdc;
mod dfdcp;
mod ffpp;
mod folders;
mod from_dir;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::{Label, ManifestRow};

/// Dataset names [`build`] accepts.
pub const DATASETS: &[&str] = &[
    "ff++",
    "celeb-df-v2",
    "dfdc",
    "dfdcp",
    "dfd",
    "dfw",
    "diffswap",
    "from-dir",
];

/// File extensions treated as videos when a builder lists folders.
pub const VIDEO_EXTENSIONS: &[&str] = &["mp4", "avi", "mov", "mkv", "webm", "m4v", "mpg", "mpeg"];

/// What a builder needs to know beyond the dataset name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Dataset root (`--root`), or the folder of a custom corpus (`--from-dir`).
    pub root: PathBuf,
    /// `c0` (alias `raw`), `c23` or `c40`; required by `ff++` and the FF++-style `dfd` layout.
    pub compression: Option<String>,
    /// Keep only this split (`train`, `val`, `test`, or free text for `from-dir`).
    pub split: Option<String>,
    /// `from-dir` only: the labels CSV (default `<root>/labels.csv`).
    pub labels: Option<PathBuf>,
    /// `from-dir` only: the `dataset` value of the rows (default `custom`).
    pub name: Option<String>,
    /// Hash every video (sha256) into the rows; reads every byte, so off by default.
    pub hash: bool,
}

impl BuildOptions {
    /// Options for a dataset rooted at `root`, everything else default.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            ..Self::default()
        }
    }

    /// Sets the compression level.
    pub fn with_compression(mut self, compression: impl Into<String>) -> Self {
        self.compression = Some(compression.into());
        self
    }

    /// Keeps only one split.
    pub fn with_split(mut self, split: impl Into<String>) -> Self {
        self.split = Some(split.into());
        self
    }

    /// Sets the labels CSV of a `from-dir` corpus.
    pub fn with_labels(mut self, labels: impl Into<PathBuf>) -> Self {
        self.labels = Some(labels.into());
        self
    }
}

/// A video (or index file) the builder could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The video, folder or index file; for one bad row of an index, `index:line` (text files)
    /// or `index: entry` plus the key (JSON), so the user can jump to it.
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// The rows built, sorted by id, and everything that was listed but could not be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOutcome {
    pub rows: Vec<ManifestRow>,
    pub problems: Vec<Problem>,
}

/// Why no manifest could be built at all.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("unknown dataset `{0}` (expected one of: ff++, celeb-df-v2, dfdc, dfdcp, dfd, dfw, diffswap, from-dir)")]
    UnknownDataset(String),
    #[error("dataset `{dataset}`: {message}")]
    BadOption { dataset: String, message: String },
    #[error("{}: {reason}", path.display())]
    NotFound { path: PathBuf, reason: String },
    #[error("{}: {message}", path.display())]
    BadIndex { path: PathBuf, message: String },
}

/// Builds the manifest rows of `dataset` (one of [`DATASETS`]); the single entry point of the CLI.
pub fn build(dataset: &str, opts: &BuildOptions) -> Result<BuildOutcome, BuildError> {
    let root = std::path::absolute(&opts.root).map_err(|e| BuildError::NotFound {
        path: opts.root.clone(),
        reason: e.to_string(),
    })?;
    if !root.is_dir() {
        return Err(BuildError::NotFound {
            path: root,
            reason: "root is not a directory".into(),
        });
    }
    let mut acc = Acc::default();
    match dataset {
        "ff++" => ffpp::build(&root, opts, &mut acc)?,
        "celeb-df-v2" => celeb_df::build(&root, &mut acc)?,
        "dfdc" => dfdc::build(&root, opts, &mut acc)?,
        "dfdcp" => dfdcp::build(&root, &mut acc)?,
        "dfd" => folders::build_dfd(&root, opts, &mut acc)?,
        "dfw" => folders::build_dfw(&root, &mut acc)?,
        "diffswap" => folders::build_diffswap(&root, &mut acc)?,
        "from-dir" => from_dir::build(&root, opts, &mut acc)?,
        other => return Err(BuildError::UnknownDataset(other.to_string())),
    }
    Ok(acc.finish(opts))
}

/// Keeps the rows that match every given criterion (`None` = any); used by specs to pick a subset.
pub fn filter(
    rows: Vec<ManifestRow>,
    split: Option<&str>,
    dataset: Option<&str>,
    label: Option<Label>,
) -> Vec<ManifestRow> {
    rows.into_iter()
        .filter(|r| split.is_none_or(|s| r.split == s))
        .filter(|r| dataset.is_none_or(|d| r.dataset == d))
        .filter(|r| label.is_none_or(|l| r.label == l))
        .collect()
}

/// Rewrites absolute paths relative to `manifest_dir` (lexically, with `..` where needed), so a
/// manifest written there can move together with its data. Paths that are already relative, or
/// that share no root with `manifest_dir`, are left as they are.
pub fn relativize(rows: &mut [ManifestRow], manifest_dir: &Path) -> std::io::Result<()> {
    let base = normalize(&std::path::absolute(manifest_dir)?);
    for row in rows {
        let p = Path::new(&row.path);
        if !p.is_absolute() {
            continue;
        }
        if let Some(rel) = relative_to(&normalize(p), &base) {
            row.path = rel.to_string_lossy().into_owned();
        }
    }
    Ok(())
}

/// `path` relative to `base`; both absolute and normalized. `None` if they share no root.
fn relative_to(path: &Path, base: &Path) -> Option<PathBuf> {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    // The first component is the root (and the prefix on Windows): without it nothing is shared.
    let shares_root = p.first().is_some_and(|c| matches!(c, Component::RootDir))
        && b.first().is_some_and(|c| matches!(c, Component::RootDir));
    if common == 0 || !shares_root {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Some(out)
}

/// Drops `.` and folds `..` lexically (no symlink resolution, so it never touches the disk).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Collects rows and problems while a builder runs.
#[derive(Debug, Default)]
struct Acc {
    rows: Vec<ManifestRow>,
    problems: Vec<Problem>,
}

impl Acc {
    fn problem(&mut self, path: impl Into<PathBuf>, reason: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Adds a row for the video at `path` if it is a readable file, otherwise reports it.
    /// `listed_in` names the index file that listed it, for the problem message.
    fn video(&mut self, path: &Path, listed_in: Option<&Path>, row: RowSpec) {
        self.checked_row(path, listed_in, row.into_row(path));
    }

    /// Adds `row` (whose `path` is `path`) if `path` is a readable file, otherwise reports it.
    fn checked_row(&mut self, path: &Path, listed_in: Option<&Path>, row: ManifestRow) {
        match check_video(path) {
            Ok(()) => self.rows.push(row),
            Err(reason) => {
                let reason = match listed_in {
                    Some(index) => format!("{reason} (listed in {})", index.display()),
                    None => reason,
                };
                self.problem(path, reason);
            }
        }
    }

    /// Applies the split filter and hashing, drops duplicate ids, sorts everything.
    fn finish(mut self, opts: &BuildOptions) -> BuildOutcome {
        if let Some(split) = &opts.split {
            self.rows.retain(|r| &r.split == split);
        }
        self.rows
            .sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.path.cmp(&b.path)));
        let mut rows: Vec<ManifestRow> = Vec::with_capacity(self.rows.len());
        for row in self.rows {
            match rows.last() {
                Some(prev) if prev.id == row.id => self.problems.push(Problem {
                    path: PathBuf::from(&row.path),
                    reason: format!(
                        "duplicate id `{}` (also {}, split {}); kept the first",
                        row.id, prev.path, prev.split
                    ),
                }),
                _ => rows.push(row),
            }
        }
        if opts.hash {
            let mut kept = Vec::with_capacity(rows.len());
            for mut row in rows {
                match sha256_file(Path::new(&row.path)) {
                    Ok(h) => {
                        row.sha256 = Some(h);
                        kept.push(row);
                    }
                    Err(e) => self.problems.push(Problem {
                        path: PathBuf::from(&row.path),
                        reason: format!("cannot hash: {e}"),
                    }),
                }
            }
            rows = kept;
        }
        self.problems.sort();
        self.problems.dedup();
        BuildOutcome {
            rows,
            problems: self.problems,
        }
    }
}

/// The fields of a row other than its path.
struct RowSpec {
    id: String,
    label: Label,
    dataset: &'static str,
    split: String,
    method: Option<String>,
    identity: Option<String>,
    compression: Option<String>,
}

impl RowSpec {
    fn into_row(self, path: &Path) -> ManifestRow {
        ManifestRow {
            id: self.id,
            path: path.to_string_lossy().into_owned(),
            label: self.label,
            dataset: self.dataset.to_string(),
            split: self.split,
            method: self.method,
            identity: self.identity,
            compression: self.compression,
            sha256: None,
            extra: BTreeMap::new(),
        }
    }
}

/// `Ok` if `path` is a file we can open; otherwise the reason, in words.
fn check_video(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| format!("unreadable: {e}")),
        Ok(_) => Err("not a regular file".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("missing".into()),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Parses a real/fake label as corpora write it: `0`/`1`, `real`/`fake` (any case).
/// `one_means_fake` is false for corpora whose files write 1 for real (Celeb-DF).
fn parse_label(value: &str, one_means_fake: bool) -> Result<Label, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "real" => Ok(0),
        "fake" => Ok(1),
        "0" => Ok(if one_means_fake { 0 } else { 1 }),
        "1" => Ok(if one_means_fake { 1 } else { 0 }),
        other => Err(format!(
            "label `{other}` is not one of 0, 1, real, fake (any case)"
        )),
    }
}

/// A relative path as an id fragment: `/`-separated, extension dropped.
fn id_fragment(rel: &Path) -> String {
    let stem = rel.with_extension("");
    stem.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// True when `path` has one of [`VIDEO_EXTENSIONS`] (any case).
fn is_video(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Lists the video files under `dir` recursively, sorted, as paths relative to `dir`.
/// Hidden entries (`.name`) are ignored; unreadable folders and every folder holding non-video
/// files are reported (one problem per folder, so a folder of frames does not flood the report).
fn list_videos(dir: &Path, acc: &mut Acc) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries = match std::fs::read_dir(&here) {
            Ok(e) => e,
            Err(e) => {
                acc.problem(&here, format!("cannot list folder: {e}"));
                continue;
            }
        };
        let mut skipped: Vec<String> = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    acc.problem(&here, format!("cannot list folder: {e}"));
                    continue;
                }
            };
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let child = rel.join(&name);
            // `metadata` follows symlinks, so linked videos and folders count like real ones.
            match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_dir() => stack.push(child),
                Ok(_) if is_video(&child) => out.push(child),
                Ok(_) => skipped.push(name.to_string_lossy().into_owned()),
                Err(e) => acc.problem(entry.path(), format!("unreadable: {e}")),
            }
        }
        if !skipped.is_empty() {
            skipped.sort();
            acc.problem(
                &here,
                format!(
                    "{} non-video file(s) ignored (e.g. {}); videos end in {}",
                    skipped.len(),
                    skipped[0],
                    VIDEO_EXTENSIONS.join("/")
                ),
            );
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_with_dotdot() {
        assert_eq!(
            relative_to(Path::new("/data/ff/a.mp4"), Path::new("/data/manifests")),
            Some(PathBuf::from("../ff/a.mp4"))
        );
        assert_eq!(
            relative_to(Path::new("/data/ff/a.mp4"), Path::new("/data")),
            Some(PathBuf::from("ff/a.mp4"))
        );
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }

    #[test]
    fn labels_parse_in_both_conventions() {
        assert_eq!(parse_label("FAKE", true), Ok(1));
        assert_eq!(parse_label(" real ", true), Ok(0));
        assert_eq!(parse_label("1", true), Ok(1));
        assert_eq!(parse_label("1", false), Ok(0));
        assert_eq!(parse_label("0", false), Ok(1));
        assert!(parse_label("2", true).is_err());
    }
}
