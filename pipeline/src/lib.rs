//! pipeline crate.
