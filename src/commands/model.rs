//! `fakestormer model forward|convert|info`: the window into the network.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use model::config::ModelConfig;
use model::network::Mode;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Reproduce the official code, bugs included (released weights give released outputs).
    Compat,
    /// Fixed temp-token init and patch-map layout (spec §9 items 1–2).
    Clean,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Compat => Mode::Compat,
            ModeArg::Clean => Mode::Clean,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Run the network on a clip tensor `x` (B×3×T×H×W f32 in a safetensors file); writes `cls`,
    /// `temp_loc` (spatial branch), `hm` (temporal branch) and, optionally, token states.
    Forward {
        /// Model config TOML (`preset = "base"` or explicit sizes); default: inferred from weights.
        #[arg(long)]
        model_config: Option<PathBuf>,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = ModeArg::Compat)]
        mode: ModeArg,
        /// Training-mode semantics (BN batch statistics, drop-path drawn from a fixed seed).
        #[arg(long)]
        train: bool,
        /// Also write the tokens after the embedding and after every block.
        #[arg(long)]
        dump_intermediates: bool,
    },
    /// Convert an official `.pth` checkpoint (or MAE pre-training checkpoint) to safetensors.
    Convert { input: PathBuf, output: PathBuf },
    /// Parameters per part and multiply-accumulates per clip, for a config or a weights file.
    Info {
        /// Weights (.safetensors or .pth); checked against the config.
        weights: Option<PathBuf>,
        #[arg(long)]
        model_config: Option<PathBuf>,
        /// A preset instead of a config file: base, small, tiny.
        #[arg(long, conflicts_with = "model_config")]
        preset: Option<String>,
    },
}

fn config(
    path: Option<&Path>,
    preset: Option<&str>,
    weights: Option<&Path>,
) -> anyhow::Result<ModelConfig> {
    if let Some(p) = path {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        return ModelConfig::from_toml(&text)
            .with_context(|| format!("model config {}", p.display()));
    }
    if let Some(name) = preset {
        return Ok(ModelConfig::preset(name)?);
    }
    if let Some(w) = weights {
        let sd = model::api::read_weights(w)?;
        return model::api::config_from_state_dict(&sd)
            .context("inferring the model config from the weights");
    }
    Ok(ModelConfig::base())
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<i32> {
    match cmd {
        ModelCommand::Forward {
            model_config,
            weights,
            input,
            out,
            mode,
            train,
            dump_intermediates,
        } => {
            let cfg = config(model_config.as_deref(), None, Some(&weights))?;
            let s = model::api::forward(
                &cfg,
                &weights,
                &input,
                &out,
                mode.into(),
                train,
                dump_intermediates,
            )?;
            println!(
                "{}: batch {}, wrote {}",
                out.display(),
                s.batch,
                s.written.join(", ")
            );
            for (i, c) in s.cls.iter().enumerate() {
                println!(
                    "clip {i}: cls logit {c:.6}, fake probability {:.4}",
                    1.0 / (1.0 + (-c).exp())
                );
            }
            Ok(0)
        }
        ModelCommand::Convert { input, output } => {
            let n = model::api::convert(&input, &output)?;
            println!("{}: {n} tensors", output.display());
            Ok(0)
        }
        ModelCommand::Info {
            weights,
            model_config,
            preset,
        } => {
            let cfg = config(
                model_config.as_deref(),
                preset.as_deref(),
                weights.as_deref(),
            )?;
            let info = model::api::info(&cfg, weights.as_deref())?;
            println!("{info}");
            Ok(0)
        }
    }
}
