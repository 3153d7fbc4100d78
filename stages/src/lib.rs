//! Media and training stages: decode, detect, align, crop, shard store, synthesis. The
//! [`catalog`] registers them as stage kinds for specs.

pub mod align;
pub mod bitpack;
pub mod catalog;
pub mod clips;
pub mod crop;
pub mod decode;
pub mod detect;
pub mod explain;
pub mod lossless;
pub mod official_layout;
pub mod preprocess;
pub mod rgb;
pub mod shard;
pub mod synth;
pub mod test_clips;
pub mod thumbnail;

pub use catalog::register;
