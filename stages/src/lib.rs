//! Media and training stages: decode, detect, align, crop, shard store, synthesis. The
//! [`catalog`] registers them as stage kinds for specs.

pub mod align;
pub mod catalog;
pub mod decode;
pub mod synth;

pub use catalog::register;
