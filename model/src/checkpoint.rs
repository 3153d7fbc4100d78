//! Training checkpoints: one safetensors file with the model state dict (official names), the
//! Adam moments (`optim.m.<name>`, `optim.v.<name>`) and, in the metadata, the step counts,
//! epoch and the ChaCha8 RNG state (seed, stream, word position), so training resumes exactly.

use crate::network::Network;
use crate::safetensors_io::{parse_safetensors, write_safetensors_meta, HostTensor, StateDict};
use crate::train::Optimizer;
use crate::ModelError;
use kernels::Backend;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Where a training job stands: saved with the tensors so a resumed job continues at the next
/// batch, with the same best-so-far validation result.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Epoch in progress (or completed epochs when `batch` is 0).
    pub epoch: u32,
    /// Batches of `epoch` already trained on.
    #[serde(default)]
    pub batch: u64,
    /// Optimizer steps taken in the whole run.
    #[serde(default)]
    pub global_step: u64,
    /// Best validation accuracy so far and its epoch (strict improvement keeps the earlier one).
    #[serde(default)]
    pub best_val_acc: Option<f64>,
    #[serde(default)]
    pub best_epoch: Option<u32>,
    /// Hash of the job spec that produced the checkpoint (a resume with another spec is refused).
    #[serde(default)]
    pub spec_hash: String,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Job progress (epoch, batch, best validation).
    #[serde(flatten)]
    pub progress: Progress,
    /// Per-parameter Adam step counts (state-dict parameter order).
    pub steps: Vec<u64>,
    /// RNG seed (hex).
    pub rng_seed: String,
    /// RNG stream.
    pub rng_stream: u64,
    /// RNG word position (as decimal string: u128).
    pub rng_word_pos: String,
}

const META_KEY: &str = "fakestormer_train_state";

/// Save model, optimizer moments, epoch and RNG state atomically.
pub fn save<B: Backend>(
    path: &Path,
    be: &B,
    net: &Network<B>,
    opt: &Optimizer<B>,
    progress: &Progress,
    rng: &ChaCha8Rng,
) -> Result<(), ModelError> {
    let mut sd = net.state_dict(be);
    for (i, p) in net.inv.params.iter().enumerate() {
        sd.insert(
            format!("optim.m.{}", p.name),
            HostTensor::F32 {
                shape: p.shape.clone(),
                data: be.download(&opt.m[i]),
            },
        );
        sd.insert(
            format!("optim.v.{}", p.name),
            HostTensor::F32 {
                shape: p.shape.clone(),
                data: be.download(&opt.v[i]),
            },
        );
    }
    let seed = rng
        .get_seed()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let st = TrainState {
        progress: progress.clone(),
        steps: opt.steps.clone(),
        rng_seed: seed,
        rng_stream: rng.get_stream(),
        rng_word_pos: rng.get_word_pos().to_string(),
    };
    let meta = serde_json::to_string(&st).map_err(|e| ModelError::Format(e.to_string()))?;
    write_safetensors_with_meta(path, &sd, meta)
}

fn write_safetensors_with_meta(
    path: &Path,
    sd: &StateDict,
    meta: String,
) -> Result<(), ModelError> {
    let mut md = std::collections::HashMap::new();
    md.insert(META_KEY.to_string(), meta);
    write_safetensors_meta(path, sd, Some(md))
}

/// Load a training checkpoint into `net` and `opt`; returns the job progress and the rng.
pub fn load<B: Backend>(
    path: &Path,
    be: &B,
    net: &mut Network<B>,
    opt: &mut Optimizer<B>,
) -> Result<(Progress, ChaCha8Rng), ModelError> {
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::Io(format!("{}: {e}", path.display())))?;
    let fmt = |e: String| ModelError::Format(format!("{}: {e}", path.display()));
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| fmt(e.to_string()))?;
    let meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| {
            fmt(format!(
                "no {META_KEY} metadata (not a training checkpoint)"
            ))
        })?;
    let st: TrainState = serde_json::from_str(meta).map_err(|e| fmt(e.to_string()))?;
    let mut sd = parse_safetensors(&bytes).map_err(fmt)?;
    let mut moments = StateDict::new();
    sd.retain(|k, v| {
        if k.starts_with("optim.") {
            moments.insert(k.clone(), v.clone());
            false
        } else {
            true
        }
    });
    net.load_state_dict(be, &sd)?;
    if st.steps.len() != net.inv.params.len() {
        return Err(fmt(format!(
            "{} step counts for {} parameters",
            st.steps.len(),
            net.inv.params.len()
        )));
    }
    for (i, p) in net.inv.params.iter().enumerate() {
        for (kind, dst) in [("m", &mut opt.m[i]), ("v", &mut opt.v[i])] {
            match moments.get(&format!("optim.{kind}.{}", p.name)) {
                Some(HostTensor::F32 { data, .. }) if data.len() == p.numel() => {
                    *dst = be.upload(data)
                }
                _ => return Err(fmt(format!("optim.{kind}.{} missing or mis-sized", p.name))),
            }
        }
    }
    opt.steps = st.steps.clone();
    let seed_bytes: Vec<u8> = (0..st.rng_seed.len() / 2)
        .map(|i| u8::from_str_radix(st.rng_seed.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| fmt("bad rng_seed".into()))?;
    let seed: [u8; 32] = seed_bytes
        .try_into()
        .map_err(|_| fmt("rng_seed must be 32 bytes".into()))?;
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::from_seed(seed);
    rng.set_stream(st.rng_stream);
    rng.set_word_pos(
        st.rng_word_pos
            .parse::<u128>()
            .map_err(|_| fmt("bad rng_word_pos".into()))?,
    );
    Ok((st.progress, rng))
}
