//! Media and training stages: decode, detect, align, crop, shard store, synthesis.

pub mod align;
pub mod decode;
