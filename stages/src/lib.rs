//! stages crate.
