//! A minimal owned host tensor: an `f32` buffer plus its shape (row-major).

use crate::KernelError;

/// Owned, dense, row-major `f32` tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Wrap `data` with `shape`; errors if the element count does not match.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, KernelError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(KernelError::ShapeMismatch {
                what: "tensor data".into(),
                expected: n,
                got: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// Zero tensor of `shape`.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; n],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable values.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Take the buffer.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Values converted to bf16 (for compact storage).
    pub fn to_bf16(&self) -> Vec<half::bf16> {
        self.data.iter().map(|&v| half::bf16::from_f32(v)).collect()
    }
}
