//! The fakestormer engine: declarative specs, manifests, staged execution on timely, run reports.

pub mod atomic_file;
pub mod manifest;
