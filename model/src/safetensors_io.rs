//! Weights as safetensors with the official state-dict names (PyTorch ↔ Rust exchange).

use crate::network::Network;
use crate::ModelError;
use kernels::Backend;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::Path;

/// A host tensor read from a checkpoint: shape + f32 values (int64 counters are kept apart).
#[derive(Debug, Clone, PartialEq)]
pub enum HostTensor {
    /// Float tensor.
    F32 { shape: Vec<usize>, data: Vec<f32> },
    /// Integer tensor (BN `num_batches_tracked`).
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl HostTensor {
    /// Shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            HostTensor::F32 { shape, .. } | HostTensor::I64 { shape, .. } => shape,
        }
    }
}

/// A state dict: official name → tensor.
pub type StateDict = BTreeMap<String, HostTensor>;

/// Read every tensor of a safetensors file (f32 and i64 only).
pub fn read_safetensors(path: &Path) -> Result<StateDict, ModelError> {
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::Io(format!("{}: {e}", path.display())))?;
    parse_safetensors(&bytes).map_err(|e| ModelError::Format(format!("{}: {e}", path.display())))
}

/// Parse safetensors bytes into a state dict.
pub fn parse_safetensors(bytes: &[u8]) -> Result<StateDict, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = StateDict::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let t = match view.dtype() {
            Dtype::F32 => HostTensor::F32 {
                shape,
                data: raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            },
            Dtype::F64 => HostTensor::F32 {
                shape,
                data: raw
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("chunk of 8")) as f32)
                    .collect(),
            },
            Dtype::I64 => HostTensor::I64 {
                shape,
                data: raw
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("chunk of 8")))
                    .collect(),
            },
            other => return Err(format!("tensor {name}: unsupported dtype {other:?}")),
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// Metadata key under which weights written by `train` carry their model configuration (TOML),
/// so `eval` and `detect` rebuild the same network (the head count is not in the tensor shapes).
pub const MODEL_CONFIG_KEY: &str = "fakestormer_model_config";

/// Write a state dict atomically (temp file + rename).
pub fn write_safetensors(path: &Path, sd: &StateDict) -> Result<(), ModelError> {
    write_safetensors_meta(path, sd, None)
}

/// The string metadata of a safetensors file (empty if it has none).
pub fn read_safetensors_metadata(
    path: &Path,
) -> Result<std::collections::HashMap<String, String>, ModelError> {
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::Io(format!("{}: {e}", path.display())))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| ModelError::Format(format!("{}: {e}", path.display())))?;
    Ok(header.metadata().clone().unwrap_or_default())
}

/// [`write_safetensors`] with string metadata in the header.
pub fn write_safetensors_meta(
    path: &Path,
    sd: &StateDict,
    meta: Option<std::collections::HashMap<String, String>>,
) -> Result<(), ModelError> {
    let bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = sd
        .iter()
        .map(|(k, t)| match t {
            HostTensor::F32 { shape, data } => (
                k.clone(),
                Dtype::F32,
                shape.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            HostTensor::I64 { shape, data } => (
                k.clone(),
                Dtype::I64,
                shape.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let mut views = Vec::with_capacity(bufs.len());
    for (k, dt, shape, data) in &bufs {
        let v = TensorView::new(*dt, shape.clone(), data)
            .map_err(|e| ModelError::Format(format!("{k}: {e}")))?;
        views.push((k.clone(), v));
    }
    let bytes = safetensors::tensor::serialize(views, meta)
        .map_err(|e| ModelError::Format(e.to_string()))?;
    crate::atomic_write(path, &bytes)
}

impl<B: Backend> Network<B> {
    /// Load every tensor of the inventory from a state dict; errors name missing, mis-shaped and
    /// unexpected tensors (strict, like `load_state_dict(strict=True)`).
    pub fn load_state_dict(&mut self, be: &B, sd: &StateDict) -> Result<(), ModelError> {
        let mut seen = 0usize;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
            match sd.get(name) {
                None => Err(ModelError::Format(format!("missing tensor {name}"))),
                Some(HostTensor::F32 { shape: s, data }) => {
                    if s.iter().product::<usize>() != shape.iter().product::<usize>()
                        || s.as_slice() != shape
                    {
                        Err(ModelError::Format(format!(
                            "tensor {name}: shape {s:?}, expected {shape:?}"
                        )))
                    } else {
                        Ok(data.clone())
                    }
                }
                Some(HostTensor::I64 { .. }) => {
                    Err(ModelError::Format(format!("tensor {name}: expected float")))
                }
            }
        };
        for (i, p) in self.inv.params.iter().enumerate() {
            self.weights.params[i] = be.upload(&get(&p.name, &p.shape)?);
            seen += 1;
        }
        for (i, p) in self.inv.buffers.iter().enumerate() {
            self.weights.buffers[i] = be.upload(&get(&p.name, &p.shape)?);
            seen += 1;
        }
        for (i, name) in self.inv.tracked.iter().enumerate() {
            match sd.get(name) {
                Some(HostTensor::I64 { data, .. }) if data.len() == 1 => {
                    self.weights.tracked[i] = data[0]
                }
                Some(_) => {
                    return Err(ModelError::Format(format!(
                        "tensor {name}: expected one int64"
                    )))
                }
                None => return Err(ModelError::Format(format!("missing tensor {name}"))),
            }
            seen += 1;
        }
        if seen != sd.len() {
            let known: std::collections::BTreeSet<&str> = self
                .inv
                .params
                .iter()
                .chain(&self.inv.buffers)
                .map(|p| p.name.as_str())
                .chain(self.inv.tracked.iter().map(String::as_str))
                .collect();
            let extra: Vec<&String> = sd
                .keys()
                .filter(|k| !known.contains(k.as_str()))
                .take(5)
                .collect();
            return Err(ModelError::Format(format!(
                "unexpected tensors in state dict: {extra:?}"
            )));
        }
        Ok(())
    }

    /// The full state dict (parameters, BN buffers, counters) with official names.
    pub fn state_dict(&self, be: &B) -> StateDict {
        let mut sd = StateDict::new();
        for (p, b) in self.inv.params.iter().zip(&self.weights.params) {
            sd.insert(
                p.name.clone(),
                HostTensor::F32 {
                    shape: p.shape.clone(),
                    data: be.download(b),
                },
            );
        }
        for (p, b) in self.inv.buffers.iter().zip(&self.weights.buffers) {
            sd.insert(
                p.name.clone(),
                HostTensor::F32 {
                    shape: p.shape.clone(),
                    data: be.download(b),
                },
            );
        }
        for (name, &v) in self.inv.tracked.iter().zip(&self.weights.tracked) {
            sd.insert(
                name.clone(),
                HostTensor::I64 {
                    shape: vec![],
                    data: vec![v],
                },
            );
        }
        sd
    }
}
