//! Provenance stamped into every output: which tool, which spec, which seed made it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub tool: String,
    pub version: String,
    /// sha256 of the resolved spec (see `spec show`).
    pub spec_hash: String,
    pub spec_name: String,
    pub seed: u64,
}

impl Provenance {
    pub fn new(spec_name: &str, spec_hash: &str, seed: u64) -> Self {
        Self {
            tool: "fakestormer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            spec_hash: spec_hash.into(),
            spec_name: spec_name.into(),
            seed,
        }
    }
}
