//! Corpora whose only index is their folder names: DFD, DFW (WildDeepfake) and DiffSwap.
//!
//! Each folder's label follows the official test loader's rule on the folder name (spec §8), the
//! folder name is the method, every video below it (recursively) is a row, and the id is
//! `<dataset>/[<comp>/]<folder>/<path below the folder without extension>`. None of these corpora
//! has an official split, so their rows are `test` (DFW's `*_train` folders excepted).

use std::path::{Path, PathBuf};

use super::ffpp::compression;
use super::{id_fragment, list_videos, Acc, BuildError, BuildOptions, RowSpec};

/// One labelled folder of a corpus.
struct Folder {
    /// Recorded as the method; also the id segment.
    name: &'static str,
    dir: PathBuf,
    split: &'static str,
    /// Reported when absent; optional folders are used only when present.
    required: bool,
}

/// DFD (Google's DeepFakeDetection): either the FF++ download layout
/// `original_sequences/actors/<comp>/videos` (real) + `manipulated_sequences/DeepFakeDetection/
/// <comp>/videos` (fake), which needs `--compression`, or two flat folders
/// `DeepFakeDetection_original/` and `DeepFakeDetection/` under the root. Fake iff the folder is
/// `DeepFakeDetection`.
pub(super) fn build_dfd(root: &Path, opts: &BuildOptions, acc: &mut Acc) -> Result<(), BuildError> {
    let ffpp_layout = root.join("original_sequences/actors").is_dir()
        || root
            .join("manipulated_sequences/DeepFakeDetection")
            .is_dir();
    let (comp, folders) = if ffpp_layout {
        let (comp, comp_dir) = compression("dfd", opts)?;
        let videos = |base: &str| root.join(base).join(comp_dir).join("videos");
        (
            Some(comp),
            vec![
                folder(
                    "DeepFakeDetection_original",
                    videos("original_sequences/actors"),
                ),
                folder(
                    "DeepFakeDetection",
                    videos("manipulated_sequences/DeepFakeDetection"),
                ),
            ],
        )
    } else {
        let comp = match opts.compression {
            Some(_) => Some(compression("dfd", opts)?.0),
            None => None,
        };
        (
            comp,
            ["DeepFakeDetection_original", "DeepFakeDetection"]
                .map(|n| folder(n, root.join(n)))
                .into(),
        )
    };
    build_folders(
        root,
        "dfd",
        comp,
        folders,
        |name| name == "DeepFakeDetection",
        acc,
    )
}

/// DFW (WildDeepfake): `real_test/` and `fake_test/` (plus `real_train/`, `fake_train/` when
/// present). Fake iff the folder name contains `fake`.
pub(super) fn build_dfw(root: &Path, acc: &mut Acc) -> Result<(), BuildError> {
    let mut folders: Vec<Folder> = ["real_test", "fake_test"]
        .map(|n| folder(n, root.join(n)))
        .into();
    for (name, split) in [("real_train", "train"), ("fake_train", "train")] {
        folders.push(Folder {
            name,
            dir: root.join(name),
            split,
            required: false,
        });
    }
    build_folders(
        root,
        "dfw",
        None,
        folders,
        |name| name.contains("fake"),
        acc,
    )
}

/// DiffSwap: `Real_DiffSwap1/` and `DiffSwap_1/`. Fake iff the folder name lacks `Real`.
pub(super) fn build_diffswap(root: &Path, acc: &mut Acc) -> Result<(), BuildError> {
    let folders = ["Real_DiffSwap1", "DiffSwap_1"]
        .map(|n| folder(n, root.join(n)))
        .into();
    build_folders(
        root,
        "diffswap",
        None,
        folders,
        |name| !name.contains("Real"),
        acc,
    )
}

fn folder(name: &'static str, dir: PathBuf) -> Folder {
    Folder {
        name,
        dir,
        split: "test",
        required: true,
    }
}

fn build_folders(
    root: &Path,
    dataset: &'static str,
    comp: Option<&str>,
    folders: Vec<Folder>,
    is_fake: impl Fn(&str) -> bool,
    acc: &mut Acc,
) -> Result<(), BuildError> {
    let (present, absent): (Vec<Folder>, Vec<Folder>) =
        folders.into_iter().partition(|f| f.dir.is_dir());
    if present.is_empty() {
        let names: Vec<String> = absent.iter().map(|f| f.dir.display().to_string()).collect();
        return Err(BuildError::NotFound {
            path: root.to_path_buf(),
            reason: format!("none of the {dataset} folders exists: {}", names.join(", ")),
        });
    }
    for f in absent.iter().filter(|f| f.required) {
        acc.problem(&f.dir, format!("{dataset} folder `{}` missing", f.name));
    }
    for f in present {
        let label = u8::from(is_fake(f.name));
        let prefix = match comp {
            Some(c) => format!("{dataset}/{c}/{}", f.name),
            None => format!("{dataset}/{}", f.name),
        };
        for rel in list_videos(&f.dir, acc) {
            acc.video(
                &f.dir.join(&rel),
                None,
                RowSpec {
                    id: format!("{prefix}/{}", id_fragment(&rel)),
                    label,
                    dataset,
                    split: f.split.to_string(),
                    method: Some(f.name.to_string()),
                    identity: None,
                    compression: comp.map(str::to_string),
                },
            );
        }
    }
    Ok(())
}
