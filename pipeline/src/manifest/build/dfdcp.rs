//! DFDC preview (DFDCP) from `<root>/dataset.json`.
//!
//! Keys are video paths relative to the root, values objects with `label` (`real`/`fake`) and
//! `set` (`train`/`test`, the split). The method is the first folder (`method_A`, `method_B`,
//! `original_videos`). Basenames collide across sub-folders (spec §8), so the id is the whole
//! relative path. `target_id`, when present, is recorded as the identity.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use super::{id_fragment, parse_label, Acc, BuildError, RowSpec};

pub(super) fn build(root: &Path, acc: &mut Acc) -> Result<(), BuildError> {
    let index = root.join("dataset.json");
    let text = std::fs::read_to_string(&index).map_err(|e| BuildError::NotFound {
        path: index.clone(),
        reason: format!("cannot read the DFDCP index: {e}"),
    })?;
    let entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| BuildError::BadIndex {
            path: index.clone(),
            message: format!("expected an object of video path -> {{label, set}}: {e}"),
        })?;
    for (key, value) in entries {
        let at = format!("{}: entry `{key}`", index.display());
        let field = |name: &str| value.get(name).and_then(|v| v.as_str());
        let (Some(label), Some(split)) = (field("label"), field("set")) else {
            acc.problem(&at, "needs string fields `label` and `set`");
            continue;
        };
        let label = match parse_label(label, true) {
            Ok(l) => l,
            Err(e) => {
                acc.problem(&at, e);
                continue;
            }
        };
        let rel = Path::new(&key);
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            acc.problem(&at, "key is not a path relative to the root");
            continue;
        }
        let method = rel
            .parent()
            .and_then(|p| p.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        acc.video(
            &root.join(rel),
            Some(&index),
            RowSpec {
                id: format!("dfdcp/{}", id_fragment(rel)),
                label,
                dataset: "dfdcp",
                split: split.to_string(),
                method,
                identity: field("target_id").map(str::to_string),
                compression: None,
            },
        );
    }
    Ok(())
}
