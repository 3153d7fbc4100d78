//! stages crate.

pub mod decode;
