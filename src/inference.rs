//! Scoring clips with a trained network, shared by `eval` and `detect`: weights → network on the
//! chosen device → batched eval-mode forward → per-clip outputs (`cls` logit, the spatial-branch
//! `temp_loc` logits per frame, the temporal-branch `hm` logits per frame and grid cell).
//!
//! The temp token (spec §9 item 1): in compat mode a clip's temp token comes from clip 0 of its
//! forward batch, so a score depends on which clips share the batch. [`TempToken::PerClip`]
//! forwards every compat clip alone (B = 1, order-independent, what the official single-video
//! inference does); [`TempToken::Batch`] reproduces the official test loader's shuffled batches.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use kernels::cuda::{CudaBackend, GemmMath};
use kernels::{Backend, CpuBackend};
use model::config::ModelConfig;
use model::network::{Mode, Network};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Where the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device `{s}` (expected cpu or cuda:N)")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// How forward batches are formed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempToken {
    PerClip,
    Batch,
}

impl FromStr for TempToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "per-clip" => Ok(TempToken::PerClip),
            "batch" => Ok(TempToken::Batch),
            _ => Err(format!(
                "unknown temp_token `{s}` (expected per-clip or batch)"
            )),
        }
    }
}

/// Which network to build and where its weights are.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// `.safetensors` or an official `.pth`.
    pub weights: PathBuf,
    /// A preset name (`base`, `small`, `tiny`); else `config`; else inferred from the weights.
    pub preset: Option<String>,
    /// A model-config TOML file.
    pub config: Option<PathBuf>,
    pub mode: Mode,
}

/// The outputs of one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipScores {
    /// Raw `cls` logit.
    pub cls: f32,
    /// Spatial-branch logits, one per frame (official `temp_loc`).
    pub temp_loc: Vec<f32>,
    /// Temporal-branch logits, T×g×g (official `hm`).
    pub hm: Vec<f32>,
}

enum Engine {
    Cpu(CpuBackend, Box<Network<CpuBackend>>),
    Cuda(Box<(CudaBackend, Network<CudaBackend>)>),
}

/// A network with loaded weights on one device, in eval mode.
pub struct Scorer {
    engine: Engine,
    cfg: ModelConfig,
    pub mode: Mode,
    pub device: Device,
}

/// The model configuration `src` names (preset, config file, the one `train` stored in the
/// weights' metadata, or the weights' shapes).
pub fn resolve_config(
    src: &ModelSource,
    sd: &model::safetensors_io::StateDict,
) -> anyhow::Result<ModelConfig> {
    if let Some(p) = &src.preset {
        return Ok(ModelConfig::preset(p)?);
    }
    if let Some(p) = &src.config {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        return ModelConfig::from_toml(&text)
            .with_context(|| format!("model config {}", p.display()));
    }
    if src.weights.extension().is_some_and(|e| e == "safetensors") {
        let meta = model::safetensors_io::read_safetensors_metadata(&src.weights)?;
        if let Some(text) = meta.get(model::safetensors_io::MODEL_CONFIG_KEY) {
            return ModelConfig::from_toml(text)
                .with_context(|| format!("the model config stored in {}", src.weights.display()));
        }
    }
    let cfg = model::api::config_from_state_dict(sd).with_context(|| {
        format!(
            "inferring the model config from {} (set a preset if this is not a ViT with 64-wide heads)",
            src.weights.display()
        )
    })?;
    // The head count is not in the tensor shapes: say what was assumed.
    tracing::warn!(
        "model config inferred from {}: {}² input, {} wide, depth {}, {} heads (assumed {} / 64); pass a preset or model config if the network was built otherwise",
        src.weights.display(),
        cfg.img_size,
        cfg.embed_dim,
        cfg.depth,
        cfg.num_heads,
        cfg.embed_dim
    );
    Ok(cfg)
}

fn load_into<B: Backend>(
    be: &B,
    cfg: ModelConfig,
    mode: Mode,
    sd: &model::safetensors_io::StateDict,
    weights: &Path,
) -> anyhow::Result<Network<B>> {
    let mut net = Network::new(be, cfg, mode)?;
    net.load_state_dict(be, sd)
        .with_context(|| format!("loading {}", weights.display()))?;
    Ok(net)
}

fn forward_on<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    x: &[f32],
    n: usize,
) -> anyhow::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let xb = be.upload(x);
    // Eval mode draws nothing; the generator only satisfies the signature.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tr = net.forward(be, &xb, n, false, &mut rng)?;
    Ok((
        be.download(&tr.cls),
        be.download(&tr.temp_loc),
        be.download(&tr.hm),
    ))
}

impl Scorer {
    /// Reads the weights, builds the network on `device` and loads them; `math` is the GEMM
    /// arithmetic on CUDA (ignored on the CPU).
    pub fn load(src: &ModelSource, device: Device, math: GemmMath) -> anyhow::Result<Self> {
        let sd = model::api::read_weights(&src.weights)
            .with_context(|| format!("reading weights {}", src.weights.display()))?;
        let cfg = resolve_config(src, &sd)?;
        let engine = match device {
            Device::Cpu => {
                let be = CpuBackend;
                let net = load_into(&be, cfg, src.mode, &sd, &src.weights)?;
                Engine::Cpu(be, Box::new(net))
            }
            Device::Cuda(n) => {
                let mut be = CudaBackend::new(n).with_context(|| format!("opening cuda:{n}"))?;
                be.set_gemm_math(math);
                let net = load_into(&be, cfg, src.mode, &sd, &src.weights)?;
                if let Some(e) = be.take_error() {
                    bail!("cuda:{n}: uploading the weights: {e}");
                }
                Engine::Cuda(Box::new((be, net)))
            }
        };
        Ok(Self {
            engine,
            cfg,
            mode: src.mode,
            device,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Floats of one clip tensor (3×T×S×S).
    pub fn clip_len(&self) -> usize {
        3 * self.cfg.num_frames * self.cfg.img_size * self.cfg.img_size
    }

    /// The largest batch this mode accepts: compat takes sample b's temp token from patch b of
    /// sample 0, so B ≤ patches per frame.
    pub fn max_batch(&self) -> usize {
        match self.mode {
            Mode::Compat => self.cfg.patches(),
            Mode::Clean => usize::MAX,
        }
    }

    /// Eval-mode forward of `n` clips stacked in `x` (N×3×T×S×S).
    pub fn forward(&mut self, x: &[f32], n: usize) -> anyhow::Result<Vec<ClipScores>> {
        let (cls, tl, hm) = match &mut self.engine {
            Engine::Cpu(be, net) => forward_on(be, net, x, n)?,
            Engine::Cuda(b) => {
                let (be, net) = &mut **b;
                let out = forward_on(be, net, x, n)?;
                if let Some(e) = be.take_error() {
                    bail!("{}: forward failed: {e}", self.device);
                }
                out
            }
        };
        let t = self.cfg.num_frames;
        let cells = t * self.cfg.grid() * self.cfg.grid();
        if cls.len() != n || tl.len() != n * t || hm.len() != n * cells {
            bail!(
                "network returned {} cls, {} temp_loc, {} hm values for {n} clips",
                cls.len(),
                tl.len(),
                hm.len()
            );
        }
        Ok((0..n)
            .map(|i| ClipScores {
                cls: cls[i],
                temp_loc: tl[i * t..(i + 1) * t].to_vec(),
                hm: hm[i * cells..(i + 1) * cells].to_vec(),
            })
            .collect())
    }

    /// [`Scorer::forward`] with the flip test: the outputs of `x` and of `x` mirrored along W are
    /// averaged (`cls` and `temp_loc`; `hm` is mirrored back before averaging).
    pub fn forward_flip(&mut self, x: &[f32], n: usize) -> anyhow::Result<Vec<ClipScores>> {
        let s = self.cfg.img_size;
        let mut flipped = x.to_vec();
        for row in flipped.chunks_exact_mut(s) {
            row.reverse();
        }
        let a = self.forward(x, n)?;
        let b = self.forward(&flipped, n)?;
        let g = self.cfg.grid();
        Ok(a.into_iter()
            .zip(b)
            .map(|(a, mut b)| {
                for row in b.hm.chunks_exact_mut(g) {
                    row.reverse();
                }
                ClipScores {
                    cls: (a.cls + b.cls) / 2.0,
                    temp_loc: a
                        .temp_loc
                        .iter()
                        .zip(&b.temp_loc)
                        .map(|(p, q)| (p + q) / 2.0)
                        .collect(),
                    hm: a.hm.iter().zip(&b.hm).map(|(p, q)| (p + q) / 2.0).collect(),
                }
            })
            .collect())
    }
}

/// The forward batches over `clips` clips: per clip (compat: one clip per batch; clean: `batch`
/// clips in input order, which gives the same scores) or the official shuffled batches of
/// `batch` clips, shuffled with a generator seeded from `seed`.
pub fn batches(
    clips: usize,
    temp_token: TempToken,
    batch: usize,
    mode: Mode,
    seed: u64,
) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..clips).collect();
    let size = match (temp_token, mode) {
        (TempToken::PerClip, Mode::Compat) => 1,
        (TempToken::PerClip, Mode::Clean) => batch.max(1),
        (TempToken::Batch, _) => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5445_5354_4c4f_4144); // "TESTLOAD"
            order.shuffle(&mut rng);
            batch.max(1)
        }
    };
    order.chunks(size).map(<[usize]>::to_vec).collect()
}

/// A progress bar over clips on stderr (hidden with `quiet`).
pub fn clip_progress(total: usize, what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {pos}/{len} clips, {elapsed_precise} elapsed, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// Logistic function.
pub fn sigmoid(x: f64) -> f64 {
    model::metrics::sigmoid(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("cuda:1".parse::<Device>(), Ok(Device::Cuda(1)));
        assert!("gpu".parse::<Device>().is_err());
        assert!("cuda:x".parse::<Device>().is_err());
    }

    #[test]
    fn batches_cover_every_clip_once() {
        for (tt, mode) in [
            (TempToken::PerClip, Mode::Compat),
            (TempToken::PerClip, Mode::Clean),
            (TempToken::Batch, Mode::Compat),
        ] {
            let b = batches(21, tt, 4, mode, 317);
            let mut all: Vec<usize> = b.iter().flatten().copied().collect();
            all.sort();
            assert_eq!(all, (0..21).collect::<Vec<_>>());
            assert!(b.iter().all(|c| c.len() <= 4));
        }
        assert_eq!(batches(3, TempToken::PerClip, 4, Mode::Compat, 0).len(), 3);
        // Shuffled batches are a function of the seed.
        assert_eq!(
            batches(50, TempToken::Batch, 8, Mode::Compat, 1),
            batches(50, TempToken::Batch, 8, Mode::Compat, 1)
        );
        assert_ne!(
            batches(50, TempToken::Batch, 8, Mode::Compat, 1),
            batches(50, TempToken::Batch, 8, Mode::Compat, 2)
        );
    }
}
