//! One module per subcommand; each returns the process exit code.

pub mod cluster;
pub mod detect;
pub mod eval;
pub mod manifest;
pub mod model;
pub mod plot;
pub mod preprocess;
pub mod run;
pub mod shards;
pub mod spec;
pub mod synth;
pub mod train;

use std::sync::Arc;

/// Every stage kind and section this build knows.
pub fn registry() -> Arc<pipeline::Registry> {
    let mut r = pipeline::Registry::new();
    stages::register(&mut r);
    Arc::new(r)
}
