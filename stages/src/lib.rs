//! stages crate.
pub mod align;
