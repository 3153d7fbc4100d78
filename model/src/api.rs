//! Library entry points behind `fakestormer model forward|convert|info`.

use crate::config::ModelConfig;
use crate::info::ModelInfo;
use crate::network::{Mode, Network};
use crate::pth::read_pth;
use crate::safetensors_io::{read_safetensors, write_safetensors, HostTensor, StateDict};
use crate::ModelError;
use kernels::{Backend, CpuBackend};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Read weights from `.safetensors` or `.pth` (the dict under `state_dict`, else `model` for
/// MAE checkpoints, else the top-level dict).
pub fn read_weights(path: &Path) -> Result<StateDict, ModelError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "safetensors" => read_safetensors(path),
        "pth" | "pt" | "ckpt" => {
            for key in [Some("state_dict"), Some("model"), None] {
                match read_pth(path, key) {
                    Ok(sd) => return Ok(sd),
                    Err(ModelError::Format(m))
                        if m.contains("has no key") || m.contains("not a tensor") =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(ModelError::Format(format!(
                "{}: no state dict found",
                path.display()
            )))
        }
        _ => Err(ModelError::Format(format!(
            "{}: unknown weights format (expected .safetensors or .pth)",
            path.display()
        ))),
    }
}

/// `fakestormer model convert IN.pth OUT.safetensors`: returns the number of tensors written.
pub fn convert(pth: &Path, out: &Path) -> Result<usize, ModelError> {
    let sd = read_weights(pth)?;
    write_safetensors(out, &sd)?;
    Ok(sd.len())
}

/// What [`forward`] computed.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardSummary {
    /// Batch size.
    pub batch: usize,
    /// Raw cls logits, one per clip.
    pub cls: Vec<f32>,
    /// Names of the tensors written.
    pub written: Vec<String>,
}

/// `fakestormer model forward`: run the network on `x` (B×3×T×H×W f32) from `input`, write
/// `cls` [B,1], `temp_loc` [B,T], `hm` [B,1,T,g,g] (and with `dump_intermediates`
/// `tokens_embed` and `block{i}.out` [B,L,C]) to `out`. `train` runs training-mode semantics
/// (BN batch statistics, drop-path/dropout drawn from a fixed seed).
pub fn forward(
    cfg: &ModelConfig,
    weights: &Path,
    input: &Path,
    out: &Path,
    mode: Mode,
    train: bool,
    dump_intermediates: bool,
) -> Result<ForwardSummary, ModelError> {
    let be = CpuBackend;
    let mut net = Network::new(&be, *cfg, mode)?;
    net.load_state_dict(&be, &read_weights(weights)?)?;
    let inp = read_safetensors(input)?;
    let (shape, x) = match inp.get("x") {
        Some(HostTensor::F32 { shape, data }) => (shape.clone(), data.clone()),
        _ => {
            return Err(ModelError::Input(format!(
                "{}: no f32 tensor `x`",
                input.display()
            )))
        }
    };
    let (t, s) = (cfg.num_frames, cfg.img_size);
    if shape.len() != 5 || shape[1..] != [3, t, s, s] {
        return Err(ModelError::Input(format!(
            "{}: x has shape {shape:?}, expected [B, 3, {t}, {s}, {s}]",
            input.display()
        )));
    }
    let batch = shape[0];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tr = net.forward(&be, &x, batch, train, &mut rng)?;
    let g = cfg.grid();
    let (l, c) = (cfg.tokens(), cfg.embed_dim);
    let mut sd = StateDict::new();
    sd.insert(
        "cls".into(),
        HostTensor::F32 {
            shape: vec![batch, 1],
            data: be.download(&tr.cls),
        },
    );
    sd.insert(
        "temp_loc".into(),
        HostTensor::F32 {
            shape: vec![batch, t],
            data: be.download(&tr.temp_loc),
        },
    );
    sd.insert(
        "hm".into(),
        HostTensor::F32 {
            shape: vec![batch, 1, t, g, g],
            data: be.download(&tr.hm),
        },
    );
    if dump_intermediates {
        sd.insert(
            "tokens_embed".into(),
            HostTensor::F32 {
                shape: vec![batch, l, c],
                data: be.download(&tr.tokens[0]),
            },
        );
        for i in 0..cfg.depth {
            sd.insert(
                format!("block{i}.out"),
                HostTensor::F32 {
                    shape: vec![batch, l, c],
                    data: be.download(&tr.tokens[i + 1]),
                },
            );
        }
    }
    write_safetensors(out, &sd)?;
    Ok(ForwardSummary {
        batch,
        cls: be.download(&tr.cls),
        written: sd.keys().cloned().collect(),
    })
}

/// `fakestormer model info`: summary for a configuration; with `weights`, also checks that the
/// file holds exactly this configuration's tensors.
pub fn info(cfg: &ModelConfig, weights: Option<&Path>) -> Result<ModelInfo, ModelError> {
    if let Some(w) = weights {
        let be = CpuBackend;
        let mut net = Network::new(&be, *cfg, Mode::Compat)?;
        net.load_state_dict(&be, &read_weights(w)?)?;
    }
    Ok(ModelInfo::new(cfg))
}

/// Infer the configuration from a state dict's shapes (depth, width, heads unknown → taken as
/// width/64 like ViT-B/S; patch, image size, frames and head widths from the tensors).
pub fn config_from_state_dict(sd: &StateDict) -> Result<ModelConfig, ModelError> {
    let shape = |k: &str| {
        sd.get(k)
            .map(|t| t.shape().to_vec())
            .ok_or_else(|| ModelError::Format(format!("missing tensor {k}")))
    };
    let pw = shape("backbone.patch_embed.proj.weight")?;
    let pos = shape("backbone.pos_embed")?;
    let time = shape("backbone.time_embed")?;
    let fc1 = shape("backbone.blocks.0.mlp.fc1.weight")?;
    let tl = shape("keypoint_head.temp_loc.fc1.0.weight")?;
    if pw.len() != 4 || pos.len() != 3 || time.len() != 3 || fc1.len() != 2 || tl.len() != 2 {
        return Err(ModelError::Format("unexpected tensor ranks".into()));
    }
    let (c, p) = (pw[0], pw[2]);
    let n = pos[1].saturating_sub(1);
    let grid = (n as f64).sqrt().round() as usize;
    let depth = (0..)
        .take_while(|i| sd.contains_key(&format!("backbone.blocks.{i}.norm1.weight")))
        .count();
    let cfg = ModelConfig {
        img_size: grid * p,
        patch_size: p,
        embed_dim: c,
        depth,
        num_heads: (c / 64).max(1),
        mlp_ratio: fc1[0] / c.max(1),
        num_frames: time[1].saturating_sub(1),
        spatial_head_width: tl[0],
    };
    cfg.validate()?;
    Ok(cfg)
}
