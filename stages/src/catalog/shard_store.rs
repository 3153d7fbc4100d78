//! `shard-store`: the sink that commits each preprocessed video's shard store under the run's
//! output folder, and [`open_store`], which finds them again.
//!
//! Layout: one store per item, `<out>/shards/<id>.store/` (the id's `/` make sub-folders, see
//! `pipeline::naming::item_path`). The `preprocess` stage writes the store into
//! `<out>/.staging/<id>.store/` and this sink renames it into place, so a store under `shards/`
//! is always complete, and the result does not depend on which worker or process handled the
//! item (each store is written by exactly one stage instance, with no shared writer).

use std::path::{Path, PathBuf};

use pipeline::{BuildContext, Params, Stage, StageContext, StageError};
use serde::{Deserialize, Serialize};

use crate::shard::{ShardError, ShardReader, INDEX_FILE};

/// Folder under the run's output that holds the committed stores.
pub const STORES_DIR: &str = "shards";
/// Folder under the run's output where stores are written before being committed.
pub const STAGING_DIR: &str = ".staging";

/// Committed store folder of item `id`.
pub fn store_dir(out: &Path, id: &str) -> PathBuf {
    pipeline::naming::item_path(&out.join(STORES_DIR), id, "store")
}

/// Staging folder of item `id`.
pub fn staging_dir(out: &Path, id: &str) -> PathBuf {
    pipeline::naming::item_path(&out.join(STAGING_DIR), id, "store")
}

/// Removes the now-empty folders between `path` and the staging root, so a finished run leaves
/// no staging skeleton behind (`remove_dir` refuses non-empty folders, which other workers own).
pub fn prune_staging(out: &Path, path: &Path) {
    let root = out.join(STAGING_DIR);
    let mut cur = path.parent();
    while let Some(d) = cur {
        if !d.starts_with(&root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        cur = d.parent();
    }
}

/// What `preprocess` passes to `shard-store` for one video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessedVideo {
    pub id: String,
    /// The finished store to commit; `None` when the item was already done by an earlier run.
    pub staged: Option<PathBuf>,
    pub frames_stored: u64,
    /// Frame indices that were decoded but had no face.
    pub no_face: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardStoreParams {}

impl Params for ShardStoreParams {}

pub struct ShardStoreSink {
    out: PathBuf,
}

impl ShardStoreSink {
    pub fn new(_p: &ShardStoreParams, ctx: &BuildContext) -> Self {
        Self {
            out: ctx.out_dir.clone(),
        }
    }
}

/// Moves `staged` to `dest`, replacing an old (damaged) store there.
fn commit(staged: &Path, dest: &Path) -> std::io::Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if dest.exists() {
        let old = dest.with_extension("store.old");
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(dest, &old)?;
        std::fs::rename(staged, dest)?;
        std::fs::remove_dir_all(&old)
    } else {
        std::fs::rename(staged, dest)
    }
}

impl Stage for ShardStoreSink {
    type In = PreprocessedVideo;
    type Out = PathBuf;

    fn process(
        &mut self,
        v: PreprocessedVideo,
        ctx: &mut StageContext<'_, PathBuf>,
    ) -> Result<(), StageError> {
        let dest = store_dir(&self.out, &v.id);
        if let Some(staged) = &v.staged {
            commit(staged, &dest).map_err(|e| {
                StageError::new(format!(
                    "cannot move {} to {}: {e}",
                    staged.display(),
                    dest.display()
                ))
            })?;
            prune_staging(&self.out, staged);
        }
        ctx.emit(dest);
        Ok(())
    }

    fn finish_item(
        &mut self,
        failed: bool,
        ctx: &mut StageContext<'_, PathBuf>,
    ) -> Result<(), StageError> {
        if failed {
            // Nothing of a failed item stays behind, so a rerun redoes it.
            let staged = staging_dir(&self.out, ctx.item().id());
            let _ = std::fs::remove_dir_all(&staged);
            prune_staging(&self.out, &staged);
        }
        Ok(())
    }
}

/// Committed store of item `id`, relative to the output folder (the name the index records).
pub fn store_rel(id: &str) -> PathBuf {
    store_dir(Path::new(""), id)
}

/// Every committed store under `out/shards`, relative to `out` (none when there is no `shards`).
fn existing_stores(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let root = out.join(STORES_DIR);
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let found = find_stores(&root).map_err(std::io::Error::other)?;
    Ok(found
        .into_iter()
        .filter_map(|p| p.strip_prefix(out).ok().map(Path::to_path_buf))
        .collect())
}

/// `preprocess` parameters that never change a store: FFmpeg's decoder threads (H.264/HEVC
/// decoding is bit-exact whatever the thread count) and OpenCV's threads (DNN layers split work
/// over output elements; stores were byte-identical for 1 and 2 on the demo media, 16 frames).
/// Everything else counts.
pub const OUTPUT_NEUTRAL_PARAMS: &[(&str, &str)] =
    &[("preprocess", "threads"), ("preprocess", "opencv_threads")];

/// How shard stores are laid out, for incremental runs (`pipeline::incremental`).
pub fn incremental_layout() -> pipeline::incremental::OutputLayout {
    pipeline::incremental::OutputLayout {
        output_of: store_rel,
        existing: existing_stores,
        neutral_params: OUTPUT_NEUTRAL_PARAMS,
    }
}

/// Whether `dir` holds a complete store containing video `id`.
pub fn is_done(dir: &Path, id: &str) -> bool {
    dir.join(INDEX_FILE).is_file() && ShardReader::open(dir).is_ok_and(|r| r.video(id).is_some())
}

/// Every store folder under `dir` (a folder with an `index.bin`, or named `*.store`), in path
/// order; `dir` itself when it is a single store. Hidden folders (staging) are skipped.
pub fn find_stores(dir: &Path) -> Result<Vec<PathBuf>, ShardError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| ShardError::Io {
            path: p,
            reason: e.to_string(),
        }
    };
    if dir.join(INDEX_FILE).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            if !p.is_dir() || name.as_deref().is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            if p.join(INDEX_FILE).is_file() || p.extension().is_some_and(|x| x == "store") {
                out.push(p);
            } else {
                todo.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Opens every store under `dir` (see [`find_stores`]); the first damaged one is the error.
pub fn open_store(dir: &Path) -> Result<Vec<ShardReader>, ShardError> {
    find_stores(dir)?.iter().map(ShardReader::open).collect()
}
