//! Element types the kernels are instantiated for: f32 and bf16 (storage), always f32 accumulation.

use cudarc::cublas::sys::cudaDataType_t;
use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use half::bf16;

/// A storage type with a kernel instantiation (`<name>_f32` / `<name>_bf16`).
pub trait Float: DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + 'static {
    /// Suffix of the kernel entry points for this type.
    const SUFFIX: &'static str;
    /// cuBLAS data type tag.
    const DATA_TYPE: cudaDataType_t;
    /// Widening conversion.
    fn to_f32(self) -> f32;
    /// Rounding conversion (round-to-nearest-even for bf16).
    fn from_f32(v: f32) -> Self;
}

impl Float for f32 {
    const SUFFIX: &'static str = "f32";
    const DATA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_32F;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Float for bf16 {
    const SUFFIX: &'static str = "bf16";
    const DATA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_16BF;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// Kernel entry point name for type `T`.
pub(crate) fn kernel_name<T: Float>(base: &str) -> String {
    format!("{base}_{}", T::SUFFIX)
}
