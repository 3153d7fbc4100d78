//! Media and training stages: decode, detect, align, crop, shard store, synthesis.

pub mod align;
pub mod crop;
pub mod decode;
pub mod detect;
pub mod lossless;
pub mod official_layout;
pub mod preprocess;
pub mod rgb;
pub mod shard;
