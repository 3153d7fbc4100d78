//! The stage kinds this crate offers to specs, registered with the engine.
//!
//! Each adapter turns a library component (decoder, detector, ...) into a `pipeline::Stage` with
//! parameters a spec can set and `spec check` can validate.

mod decode;
mod frame_stats;

pub use decode::{DecodeParams, DecodeStage};
pub use frame_stats::{FrameStats, FrameStatsParams};

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
}
