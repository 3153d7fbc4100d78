//! Celeb-DF v2 from `List_of_testing_videos.txt` (its only split: 518 test videos).
//!
//! Each line is `<label> <folder>/<video>.mp4` where, unlike everywhere else, label 1 means REAL;
//! our label is therefore `1 − file label`. All lines are read: the official preprocessing reads
//! the list with `pd.read_csv`, which takes the first line as a header and so drops one video
//! (517 of 518, spec §5.1); that is a bug we do not copy. The method is the folder
//! (`Celeb-real`, `YouTube-real`, `Celeb-synthesis`); the identity is the person in the source
//! video (`id0` for `Celeb-real/id0_0003` and `Celeb-synthesis/id0_id16_0003`).

use std::path::{Component, Path};

use super::{id_fragment, parse_label, Acc, BuildError, RowSpec};

const LIST: &str = "List_of_testing_videos.txt";

pub(super) fn build(root: &Path, acc: &mut Acc) -> Result<(), BuildError> {
    let list = root.join(LIST);
    let text = std::fs::read_to_string(&list).map_err(|e| BuildError::NotFound {
        path: list.clone(),
        reason: format!("cannot read the Celeb-DF v2 test list: {e}"),
    })?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{}:{}", list.display(), i + 1);
        let Some((label, rel)) = line.split_once(char::is_whitespace) else {
            acc.problem(&at, format!("expected `<label> <path>`, got `{line}`"));
            continue;
        };
        let label = match parse_label(label, false) {
            Ok(l) => l,
            Err(e) => {
                acc.problem(&at, e);
                continue;
            }
        };
        let rel = Path::new(rel.trim());
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            acc.problem(
                &at,
                format!("path `{}` is not relative to the root", rel.display()),
            );
            continue;
        }
        let method = rel
            .parent()
            .and_then(|p| p.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let identity = match method.as_deref() {
            Some("Celeb-real" | "Celeb-synthesis") => rel
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.split('_').next())
                .map(str::to_string),
            _ => None,
        };
        acc.video(
            &root.join(rel),
            Some(&list),
            RowSpec {
                id: format!("celeb-df-v2/{}", id_fragment(rel)),
                label,
                dataset: "celeb-df-v2",
                split: "test".into(),
                method,
                identity,
                compression: None,
            },
        );
    }
    Ok(())
}
