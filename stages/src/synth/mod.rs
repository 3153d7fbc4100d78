//! Self-blended video (SBV) synthesis: the pseudo-fake generator of FakeSTormer (spec §4), its
//! vulnerability targets (§3.2, §3.3), mask-out augmentation (§4.8) and clip batching (§4.9).
//!
//! Naming table (code name in the official repo → name here → paper name):
//! `hm` → [`targets::temporal_target`] → temporal-branch target ("temporal vulnerability map");
//! `temp_loc` → [`targets::spatial_target`] → spatial-branch target ("frame-wise forgery intensity").

pub mod allocator;
pub mod batch;
pub mod blend;
pub mod color;
pub mod deform;
pub mod hull;
pub mod image;
pub mod landmarks;
pub mod maskout;
pub mod preview;
pub mod sbv;
pub mod targets;
pub mod warp;

pub use image::{ImageU8, PlaneF64};

/// Why a synthesis step failed. Every variant is recoverable: the caller retries with fresh
/// parameters or records the item as failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("frame {frame}: {reason}")]
    Landmarks { frame: usize, reason: String },
    #[error("degenerate hull: {0}")]
    DegenerateHull(String),
    #[error("empty blend core: no pixel stays fully inside the blurred mask")]
    EmptyBlendCore,
    #[error("mask-out: {0}")]
    MaskOut(String),
    #[error("no frame of the fake clip keeps a vulnerable cell")]
    NoVulnerableFrame,
    #[error("item {item}: synthesis failed after {attempts} attempts, last error: {last}")]
    Exhausted {
        item: String,
        attempts: usize,
        last: Box<SynthError>,
    },
    #[error("opencv: {0}")]
    OpenCv(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("safetensors: {0}")]
    SafeTensors(String),
}
