//! Kernel sources (one `.cu` per op family, embedded at build time), CUDA header discovery and the
//! NVRTC compile step. Usable without a GPU: only libnvrtc and the headers are needed, which is
//! what the CI compile test exercises.

use std::path::{Path, PathBuf};

use cudarc::nvrtc::{CompileOptions, Ptx};

use super::error::CudaError;

const COMMON: &str = include_str!("../../cuda/common.cuh");

/// One family of kernels, compiled as one NVRTC program and loaded as one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Blend,
    PatchEmbed,
    Attention,
    LayerNorm,
    Gelu,
    Elementwise,
    Loss,
    Adam,
    Tokens,
    Conv3d,
    BatchNorm,
}

impl Family {
    /// Every family, in a fixed order.
    pub const ALL: [Family; 11] = [
        Family::Blend,
        Family::PatchEmbed,
        Family::Attention,
        Family::LayerNorm,
        Family::Gelu,
        Family::Elementwise,
        Family::Loss,
        Family::Adam,
        Family::Tokens,
        Family::Conv3d,
        Family::BatchNorm,
    ];

    /// File stem of the family's source under `kernels/cuda/`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Blend => "blend",
            Family::PatchEmbed => "patch_embed",
            Family::Attention => "attention",
            Family::LayerNorm => "layernorm",
            Family::Gelu => "gelu",
            Family::Elementwise => "elementwise",
            Family::Loss => "loss",
            Family::Adam => "adam",
            Family::Tokens => "tokens",
            Family::Conv3d => "conv3d",
            Family::BatchNorm => "batchnorm",
        }
    }

    fn raw_source(self) -> &'static str {
        match self {
            Family::Blend => include_str!("../../cuda/blend.cu"),
            Family::PatchEmbed => include_str!("../../cuda/patch_embed.cu"),
            Family::Attention => include_str!("../../cuda/attention.cu"),
            Family::LayerNorm => include_str!("../../cuda/layernorm.cu"),
            Family::Gelu => include_str!("../../cuda/gelu.cu"),
            Family::Elementwise => include_str!("../../cuda/elementwise.cu"),
            Family::Loss => include_str!("../../cuda/loss.cu"),
            Family::Adam => include_str!("../../cuda/adam.cu"),
            Family::Tokens => include_str!("../../cuda/tokens.cu"),
            Family::Conv3d => include_str!("../../cuda/conv3d.cu"),
            Family::BatchNorm => include_str!("../../cuda/batchnorm.cu"),
        }
    }

    /// The complete program text handed to NVRTC: `common.cuh` spliced in place of its include.
    pub fn source(self) -> String {
        self.raw_source()
            .replacen("#include \"common.cuh\"", COMMON, 1)
    }
}

/// Env var naming a directory that contains `cuda_bf16.h`; checked before any other location.
pub const INCLUDE_ENV: &str = "FAKESTORMER_CUDA_INCLUDE";

/// Candidate header directories in priority order: `FAKESTORMER_CUDA_INCLUDE`, then
/// `$CUDA_HOME/include`, `$CUDA_PATH/include`, `/usr/local/cuda/include`, then the PyPI wheel
/// unpacked by `scripts/setup-nvrtc.sh` under `.cache/nvrtc` (searched from the current directory
/// and from this crate's workspace).
pub fn include_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os(INCLUDE_ENV) {
        out.push(PathBuf::from(dir));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(dir) = std::env::var_os(var) {
            out.push(PathBuf::from(dir).join("include"));
        }
    }
    out.push(PathBuf::from("/usr/local/cuda/include"));
    let wheel = Path::new(".cache/nvrtc/nvidia/cu13/include");
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join(wheel));
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(wheel));
    out
}

/// The first candidate directory that holds `cuda_bf16.h`.
pub fn find_include_dir() -> Result<PathBuf, CudaError> {
    let candidates = include_candidates();
    candidates
        .iter()
        .find(|dir| dir.join("cuda_bf16.h").is_file())
        .cloned()
        .ok_or_else(|| CudaError::NoHeaders {
            searched: candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Whether libnvrtc can be loaded (cudarc would panic on first use otherwise).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Virtual architecture for a device's compute capability. PTX for an older virtual architecture
/// is JIT-compiled by the driver for newer devices, so unknown newer parts get compute_90.
pub fn arch_for(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (m, _) if m >= 9 => "compute_90",
        (8, 9) => "compute_89",
        (8, 7) => "compute_87",
        (8, 6) => "compute_86",
        (8, _) => "compute_80",
        _ => "compute_75",
    }
}

/// The real (SASS) architecture matching a virtual one from [`arch_for`]: NVRTC then emits a
/// cubin, which a driver older than the NVRTC release can load when it rejects the newer PTX ISA.
pub fn sass_arch(virtual_arch: &str) -> Option<&'static str> {
    Some(match virtual_arch {
        "compute_90" => "sm_90",
        "compute_89" => "sm_89",
        "compute_87" => "sm_87",
        "compute_86" => "sm_86",
        "compute_80" => "sm_80",
        "compute_75" => "sm_75",
        _ => return None,
    })
}

/// Compiles one family to PTX for `arch` (e.g. `"compute_90"`). Fails cleanly when NVRTC is absent.
pub fn compile_family(
    family: Family,
    arch: &'static str,
    include_dir: &Path,
) -> Result<Ptx, CudaError> {
    if !nvrtc_available() {
        return Err(CudaError::NoNvrtc);
    }
    let opts = CompileOptions {
        arch: Some(arch),
        include_paths: vec![include_dir.display().to_string()],
        options: vec!["--std=c++17".into()],
        name: Some(format!("{}.cu", family.name())),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(family.source(), opts).map_err(|e| CudaError::Compile {
        family: family.name(),
        arch: arch.to_string(),
        log: match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => format!("{other:?}"),
        },
    })
}
