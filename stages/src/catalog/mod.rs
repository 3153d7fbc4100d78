//! The stage kinds this crate offers to specs, registered with the engine.
//!
//! Each adapter turns a library component (decoder, detector, ...) into a `pipeline::Stage` with
//! parameters a spec can set and `spec check` can validate.

mod decode;
mod frame_stats;
mod preprocess;
mod shard_store;

pub use decode::{DecodeParams, DecodeStage};
pub use frame_stats::{FrameStats, FrameStatsParams};
pub use preprocess::{PreprocessParams, PreprocessStage, DEBIAN_PREDICTOR};
pub use shard_store::{
    find_stores, incremental_layout, is_done, open_store, prune_staging, staging_dir, store_dir,
    store_rel, PreprocessedVideo, ShardStoreParams, ShardStoreSink, OUTPUT_NEUTRAL_PARAMS,
    STAGING_DIR, STORES_DIR,
};

use pipeline::Registry;

/// Registers every stage kind of this crate.
pub fn register(registry: &mut Registry) {
    registry.stage(
        "decode",
        "video file -> selected RGB frames (FFmpeg)",
        |p: &DecodeParams, ctx| DecodeStage::new(p, ctx),
    );
    registry.sink(
        "frame-stats",
        "frames -> <out>/<id>.json with per-frame index, time, size and pixel hash",
        |p: &FrameStatsParams, ctx| Ok(FrameStats::new(p, ctx)),
    );
    registry.stage(
        "preprocess",
        "video file -> face crops + landmarks in its own shard store (decode, detect, crop, align)",
        |p: &PreprocessParams, ctx| PreprocessStage::new(p, ctx),
    );
    registry.sink(
        "shard-store",
        "preprocessed videos -> <out>/shards/<id>.store/ (one shard store per video)",
        |p: &ShardStoreParams, ctx| Ok(ShardStoreSink::new(p, ctx)),
    );
}
