//! DFDC from `labels.csv` files (columns `filename,label`; other columns ignored).
//!
//! Probed: `<root>/{train,val,test}/labels.csv` (the layout the official crop script reads, spec
//! §5.1), and `<root>/labels.csv` whose split is `--split` or else `test` (the public test set
//! ships as one folder). Labels may be `0/1` (1 = fake) or `REAL/FAKE`. Videos are looked up beside
//! the CSV, then in a `videos/` folder beside it. The method is `real`/`fake`, the folder names
//! of the official test loader.

use std::path::{Component, Path, PathBuf};

use super::{id_fragment, parse_label, Acc, BuildError, BuildOptions, RowSpec};

const SPLITS: &[&str] = &["train", "val", "test"];

pub(super) fn build(root: &Path, opts: &BuildOptions, acc: &mut Acc) -> Result<(), BuildError> {
    let mut csvs: Vec<(String, PathBuf)> = SPLITS
        .iter()
        .map(|s| (s.to_string(), root.join(s).join("labels.csv")))
        .filter(|(_, p)| p.is_file())
        .collect();
    let top = root.join("labels.csv");
    if top.is_file() {
        csvs.push((opts.split.clone().unwrap_or_else(|| "test".into()), top));
    }
    if csvs.is_empty() {
        return Err(BuildError::NotFound {
            path: root.to_path_buf(),
            reason: "no DFDC labels.csv (looked in {train,val,test}/ and the root)".into(),
        });
    }
    for (split, csv) in csvs {
        read_labels(&split, &csv, acc);
    }
    Ok(())
}

fn read_labels(split: &str, csv_path: &Path, acc: &mut Acc) {
    let mut reader = match csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(csv_path)
    {
        Ok(r) => r,
        Err(e) => return acc.problem(csv_path, format!("unreadable labels file: {e}")),
    };
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return acc.problem(csv_path, format!("unreadable header: {e}")),
    };
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(file_col), Some(label_col)) = (col("filename"), col("label")) else {
        return acc.problem(
            csv_path,
            format!(
                "header must have `filename` and `label` columns, got `{}`",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        );
    };
    let dir = csv_path.parent().unwrap_or(Path::new("."));
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                acc.problem(format!("{}:{line}", csv_path.display()), e.to_string());
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let at = format!("{}:{line}", csv_path.display());
        let (Some(name), Some(label)) = (record.get(file_col), record.get(label_col)) else {
            acc.problem(&at, "row lacks the filename or label column");
            continue;
        };
        let label = match parse_label(label, true) {
            Ok(l) => l,
            Err(e) => {
                acc.problem(&at, e);
                continue;
            }
        };
        let rel = Path::new(name);
        if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            acc.problem(&at, format!("filename `{name}` is not a relative path"));
            continue;
        }
        let beside = dir.join(rel);
        let in_videos = dir.join("videos").join(rel);
        let path = if !beside.exists() && in_videos.exists() {
            in_videos
        } else {
            beside
        };
        acc.video(
            &path,
            Some(csv_path),
            RowSpec {
                id: format!("dfdc/{split}/{}", id_fragment(rel)),
                label,
                dataset: "dfdc",
                split: split.to_string(),
                method: Some(if label == 1 { "fake" } else { "real" }.into()),
                identity: None,
                compression: None,
            },
        );
    }
}
