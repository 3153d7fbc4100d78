//! FaceForensics++ from its official split files.
//!
//! The split files are `{train,val,test}.json`, each a list of `[a, b]` id pairs (360/70/70 pairs).
//! They ship in the download script's `original_download/` folder (where the official
//! preprocessing reads them, spec §5.1); users who keep them apart put them in `splits/`. Both are
//! probed, `splits/` first. A pair yields the two originals
//! `original_sequences/youtube/<comp>/videos/{a,b}.mp4` and, per method, the two fakes
//! `manipulated_sequences/<method>/<comp>/videos/{a_b,b_a}.mp4` (`a_b` = video `a` with the face of
//! `b`, so the identity recorded is the target `a`).
//!
//! FaceShifter is included when its folder exists. DeepFakeDetection is not: its videos are named
//! by actor and scene, not by split pairs, so it is built by the `dfd` builder.

use std::path::{Path, PathBuf};

use super::{Acc, BuildError, BuildOptions, RowSpec};

const SPLITS: &[&str] = &["train", "val", "test"];
const SPLIT_DIRS: &[&str] = &["splits", "original_download"];
/// Methods every FF++ download has; a missing folder is reported.
const METHODS: &[&str] = &["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"];
/// Methods added later to FF++; used only when present.
const OPTIONAL_METHODS: &[&str] = &["FaceShifter"];

/// `(name recorded in rows, folder name on disk)`; `raw` is FF++'s folder for c0.
pub(super) fn compression(
    dataset: &str,
    opts: &BuildOptions,
) -> Result<(&'static str, &'static str), BuildError> {
    let bad = |message: String| BuildError::BadOption {
        dataset: dataset.into(),
        message,
    };
    match opts.compression.as_deref() {
        Some("c0" | "raw") => Ok(("c0", "raw")),
        Some("c23") => Ok(("c23", "c23")),
        Some("c40") => Ok(("c40", "c40")),
        Some(other) => Err(bad(format!(
            "unknown compression `{other}` (expected c0, raw, c23 or c40)"
        ))),
        None => Err(bad("--compression is required (c0/raw, c23 or c40)".into())),
    }
}

pub(super) fn build(root: &Path, opts: &BuildOptions, acc: &mut Acc) -> Result<(), BuildError> {
    let (comp, comp_dir) = compression("ff++", opts)?;
    let splits: Vec<&str> = match opts.split.as_deref() {
        Some(s) if SPLITS.contains(&s) => vec![s],
        Some(other) => {
            return Err(BuildError::BadOption {
                dataset: "ff++".into(),
                message: format!("unknown split `{other}` (expected train, val or test)"),
            })
        }
        None => SPLITS.to_vec(),
    };

    let mut found = Vec::new();
    for split in &splits {
        let candidates: Vec<PathBuf> = SPLIT_DIRS
            .iter()
            .map(|d| root.join(d).join(format!("{split}.json")))
            .collect();
        match candidates.iter().find(|p| p.is_file()) {
            Some(p) => found.push((*split, p.clone())),
            None => acc.problem(
                &candidates[0],
                format!(
                    "split file missing (also looked for {})",
                    candidates[1].display()
                ),
            ),
        }
    }
    if found.is_empty() {
        return Err(BuildError::NotFound {
            path: root.to_path_buf(),
            reason: format!(
                "no FF++ split file ({}.json) in {}/ or {}/",
                splits.join(".json, "),
                SPLIT_DIRS[0],
                SPLIT_DIRS[1]
            ),
        });
    }

    let real_dir = root
        .join("original_sequences/youtube")
        .join(comp_dir)
        .join("videos");
    let mut method_dirs: Vec<(&str, PathBuf)> = Vec::new();
    for method in METHODS.iter().chain(OPTIONAL_METHODS) {
        let dir = root
            .join("manipulated_sequences")
            .join(method)
            .join(comp_dir)
            .join("videos");
        if dir.is_dir() {
            method_dirs.push((method, dir));
        } else if METHODS.contains(method) {
            acc.problem(
                &dir,
                format!("{method} folder missing; its videos are left out"),
            );
        }
    }
    if !real_dir.is_dir() {
        acc.problem(&real_dir, "original videos folder missing");
    }

    for (split, file) in found {
        let Some(pairs) = read_pairs(&file, acc) else {
            continue;
        };
        let spec = |id: String, label, method: &str, identity: &str| RowSpec {
            id,
            label,
            dataset: "ff++",
            split: split.to_string(),
            method: Some(method.to_string()),
            identity: Some(identity.to_string()),
            compression: Some(comp.to_string()),
        };
        for [a, b] in pairs {
            if real_dir.is_dir() {
                for id in [&a, &b] {
                    acc.video(
                        &real_dir.join(format!("{id}.mp4")),
                        Some(&file),
                        spec(format!("ff++/{comp}/original/{id}"), 0, "original", id),
                    );
                }
            }
            for (method, dir) in &method_dirs {
                for (target, source) in [(&a, &b), (&b, &a)] {
                    let name = format!("{target}_{source}");
                    acc.video(
                        &dir.join(format!("{name}.mp4")),
                        Some(&file),
                        spec(format!("ff++/{comp}/{method}/{name}"), 1, method, target),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Reads one split file; a file that is not a list of id pairs is reported whole.
fn read_pairs(file: &Path, acc: &mut Acc) -> Option<Vec<[String; 2]>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            acc.problem(file, format!("unreadable split file: {e}"));
            return None;
        }
    };
    let pairs: Vec<[String; 2]> = match serde_json::from_str(&text) {
        Ok(p) => p,
        Err(e) => {
            acc.problem(file, format!("not a list of [a, b] video id pairs: {e}"));
            return None;
        }
    };
    let (good, bad): (Vec<_>, Vec<_>) = pairs
        .into_iter()
        .partition(|[a, b]| is_plain_id(a) && is_plain_id(b));
    for [a, b] in bad {
        acc.problem(
            file,
            format!("pair [{a:?}, {b:?}] is not two plain video ids"),
        );
    }
    Some(good)
}

/// Ids become file names and id segments, so they may not be empty or contain path syntax.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\\'])
}
