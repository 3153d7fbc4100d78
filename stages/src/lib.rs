//! stages crate.
pub mod synth;
