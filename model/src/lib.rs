//! The FakeSTormer network (spec §2) on top of the `kernels` backend boundary: configuration,
//! parameter inventory with official state-dict names, forward/backward, training step (losses,
//! SAM + Adam), checkpoints (safetensors, `.pth`, MAE import) and the library entry points the
//! CLI wires up (`forward`, `convert`, `info`). Head naming: see [`naming`].

// Forward/backward helpers pass buffers and dimensions explicitly.
#![allow(clippy::too_many_arguments)]

pub mod api;
pub mod checkpoint;
pub mod config;
pub mod info;
pub mod init;
pub mod metrics;
pub mod naming;
pub mod network;
pub mod params;
pub mod pth;
pub mod safetensors_io;
pub mod train;

pub use config::ModelConfig;
pub use network::{Mode, Network, Regularisation, Trace};

use std::path::Path;

/// Errors of the model crate; messages name the item and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Bad configuration value.
    #[error("config: {0}")]
    Config(String),
    /// Bad input tensor.
    #[error("input: {0}")]
    Input(String),
    /// Malformed or mismatched checkpoint/file content.
    #[error("format: {0}")]
    Format(String),
    /// File-system error.
    #[error("io: {0}")]
    Io(String),
}

/// Write `bytes` to `path` atomically: write a sibling temp file, then rename over the target.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| ModelError::Io(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::Io(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::Io(format!("{}: {e}", path.display())))
}
