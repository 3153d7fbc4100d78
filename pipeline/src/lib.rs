//! The fakestormer engine: declarative specs, manifests, staged execution on timely, run reports.
//!
//! A run is: load a spec ([`spec`]), read its manifest ([`manifest`]), and execute its stage chain
//! ([`stage`], [`chain`]) on every timely worker ([`engine`]); worker 0 assembles the
//! [`report`]. [`incremental`] runs redo only what the manifest or spec changed. Stage kinds come from a [`registry`] filled by the crates that implement them.

pub mod allreduce;
pub mod atomic_file;
pub mod chain;
pub mod connect;
pub mod engine;
pub mod incremental;
pub mod job;
pub mod manifest;
pub mod naming;
pub mod nccl_id;
pub mod progress;
pub mod provenance;
pub mod registry;
pub mod report;
pub mod spec;
pub mod stage;

pub use engine::{run, ClusterOptions, EngineError, RunOptions};
pub use job::{load_job, parse_job, LoadedJob};
pub use registry::{ParamProblem, Params, Registry, Role, ValidateContext};
pub use spec::{load_spec, parse_spec, LoadedSpec, Spec, SpecErrors};
pub use stage::{BuildContext, ItemInfo, Stage, StageContext, StageError};
