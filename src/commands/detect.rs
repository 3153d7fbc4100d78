//! `fakestormer detect VIDEO... --weights W`: the one-command check of video files. Per video:
//! decode → detect/track → crop (the `preprocess` stage, into a temporary shard store) → N
//! uniformly spaced frames → clips of T consecutive sampled frames → forward → fake probability
//! = sigmoid of the mean clip logit, printed per video and per clip. `--explain out.png` renders
//! the sampled frames with the temporal-vulnerability map and the per-frame spatial scores.
//!
//! A video that cannot be checked prints its reason and makes the exit code 1; the others still
//! run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use model::network::Mode;
use pipeline::manifest::ManifestRow;
use stages::catalog::PreprocessParams;
use stages::explain::{self, ExplainedClip};
use stages::shard::ShardReader;
use stages::test_clips::{self, TestClipConfig};

use super::cluster::ClusterArgs;
use super::eval::{PreprocessRun, SourceFilter};
use crate::inference::{self, Device, ModelSource, Scorer};

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Video files to check.
    #[arg(required = true)]
    pub videos: Vec<PathBuf>,
    /// Weights (.safetensors or the official .pth).
    #[arg(long)]
    pub weights: PathBuf,
    /// Model preset (base, small, tiny) instead of inferring it from the weights.
    #[arg(long)]
    pub preset: Option<String>,
    /// Model-config TOML instead of a preset.
    #[arg(long, conflicts_with = "preset")]
    pub model_config: Option<PathBuf>,
    /// compat (the released weights need it) or clean.
    #[arg(long, default_value = "compat")]
    pub mode: String,
    /// Write the explanation sheet here (with several videos: NAME-1.png, NAME-2.png, ...).
    #[arg(long)]
    pub explain: Option<PathBuf>,
    /// Frames sampled per video (uniformly spaced); clips of T consecutive sampled frames.
    #[arg(long, default_value_t = 32)]
    pub frames: usize,
    /// Pixels cut from every border of the 256² face crop before resizing (official: 15).
    #[arg(long, default_value_t = 15)]
    pub margin: usize,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matrix-product arithmetic on CUDA: f32, tf32 or bf16.
    #[arg(long, default_value = "f32")]
    pub math: String,
    /// Face detector: mtcnn or haar.
    #[arg(long, default_value = "mtcnn")]
    pub detector: String,
}

/// The explanation path of video `i` (0-based) of `n`.
fn explain_path(base: &Path, i: usize, n: usize) -> PathBuf {
    if n == 1 {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "explain".into());
    let ext = base
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    base.with_file_name(format!("{stem}-{}.{ext}", i + 1))
}

/// A temporary folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one video gave.
struct Checked {
    clips: Vec<(test_clips::TestClip, inference::ClipScores)>,
    /// With `--explain`: each clip's frames at the sheet's tile size (same crop and margin).
    display: Vec<Vec<stages::synth::ImageU8>>,
}

pub fn run(args: DetectArgs, quiet: bool) -> anyhow::Result<i32> {
    let device: Device = args.device.parse().map_err(anyhow::Error::msg)?;
    let math: kernels::cuda::GemmMath = args.math.parse().map_err(anyhow::Error::msg)?;
    let mode: Mode = args.mode.parse()?;
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    let mut scorer = Scorer::load(
        &ModelSource {
            weights: args.weights.clone(),
            preset: args.preset.clone(),
            config: args.model_config.clone(),
            mode,
        },
        device,
        math,
    )?;
    let cfg = *scorer.config();

    let tmp = TempDir(std::env::temp_dir().join(format!(
        "fakestormer-detect-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )));
    std::fs::create_dir_all(&tmp.0).with_context(|| format!("creating {}", tmp.0.display()))?;
    let rows: Vec<ManifestRow> = args
        .videos
        .iter()
        .enumerate()
        .map(|(i, v)| ManifestRow {
            id: format!("video{i}"),
            path: std::path::absolute(v)
                .unwrap_or_else(|_| v.clone())
                .display()
                .to_string(),
            label: 0,
            dataset: "detect".into(),
            split: "test".into(),
            method: None,
            identity: None,
            compression: None,
            sha256: None,
            extra: Default::default(),
        })
        .collect();
    let manifest = tmp.0.join("videos.jsonl");
    pipeline::manifest::write_manifest(&manifest, &rows)
        .with_context(|| format!("writing {}", manifest.display()))?;
    let params = PreprocessParams {
        select: "uniform".into(),
        frames: args.frames,
        detector: args.detector.clone(),
        // Scoring needs only the crops.
        landmarks: false,
        ..PreprocessParams::default()
    };
    let registry = super::registry();
    let cwd = std::env::current_dir()?;
    let spec = PreprocessRun {
        name: "detect".into(),
        seed: 317,
        spec_path: cwd.join("detect"),
        manifest: manifest.clone(),
        out: tmp.0.clone(),
        params: &params,
        workers: rows.len().clamp(1, 2),
        filter: SourceFilter::default(),
    }
    .spec(&registry)?;
    if !quiet {
        eprintln!("preprocessing {} video(s) ...", rows.len());
    }
    let cluster = ClusterArgs {
        workers: 1,
        processes: 1,
        process: 0,
        hostfile: None,
    };
    let report = super::run::execute_report(&spec, registry, &cluster, Some(tmp.0.clone()), true)?
        .context("the preprocess run gave no report")?;
    let failed: std::collections::HashMap<&str, String> = report
        .failed
        .iter()
        .map(|f| (f.item.as_str(), format!("{}: {}", f.stage, f.reason)))
        .collect();

    let clip_cfg = TestClipConfig {
        margin: args.margin,
        clip_frames: cfg.num_frames,
        size: cfg.img_size,
    };
    let mut code = 0;
    for (i, (row, video)) in rows.iter().zip(&args.videos).enumerate() {
        let result = match failed.get(row.id.as_str()) {
            Some(reason) => Err(anyhow::anyhow!("{reason}")),
            None => check(
                &tmp.0,
                row,
                &clip_cfg,
                &mut scorer,
                args.explain.is_some(),
                quiet,
            ),
        };
        let checked = match result {
            Ok(c) => c,
            Err(e) => {
                println!("{}: FAILED: {e:#}", video.display());
                code = 1;
                continue;
            }
        };
        let logits: Vec<f64> = checked.clips.iter().map(|(_, s)| s.cls as f64).collect();
        let mean = logits.iter().sum::<f64>() / logits.len() as f64;
        println!(
            "{}: P(fake) = {:.4} (mean clip logit {mean:.4}, {} clips)",
            video.display(),
            inference::sigmoid(mean),
            logits.len()
        );
        for (k, (clip, s)) in checked.clips.iter().enumerate() {
            let spatial: Vec<String> = s
                .temp_loc
                .iter()
                .map(|&v| format!("{:.3}", inference::sigmoid(v as f64)))
                .collect();
            println!(
                "  clip {k} (frames {}): P(fake) = {:.4}, logit {:.4}, spatial {}",
                clip.frame_indices
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                inference::sigmoid(s.cls as f64),
                s.cls,
                spatial.join(" ")
            );
        }
        if let Some(base) = &args.explain {
            let path = explain_path(base, i, rows.len());
            let sheet: Vec<ExplainedClip> = checked
                .clips
                .into_iter()
                .zip(checked.display)
                .map(|((clip, s), frames)| ExplainedClip {
                    frames,
                    frame_indices: clip.frame_indices,
                    cls: s.cls,
                    spatial: s.temp_loc,
                    temporal: s.hm,
                    grid: cfg.grid(),
                })
                .collect();
            let (h, w) = explain::write_png(&sheet, &path)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("  explanation: {} ({w}x{h})", path.display());
        }
    }
    Ok(code)
}

/// Clips of one preprocessed video, scored one clip per forward (B = 1: in compat mode each
/// clip's temp token is its own).
fn check(
    dir: &Path,
    row: &ManifestRow,
    clip_cfg: &TestClipConfig,
    scorer: &mut Scorer,
    explain: bool,
    quiet: bool,
) -> anyhow::Result<Checked> {
    let store = stages::catalog::store_dir(dir, &row.id);
    let reader = ShardReader::open(&store).context("no face crops were stored")?;
    let clips = test_clips::video_clips(&reader, &row.id, clip_cfg)?;
    let bar = inference::clip_progress(clips.len(), "detect", quiet);
    let mut out = Vec::with_capacity(clips.len());
    for clip in clips {
        let mut x = Vec::with_capacity(scorer.clip_len());
        test_clips::push_clip_tensor(&clip.frames, &mut x);
        let s = scorer
            .forward(&x, 1)?
            .pop()
            .context("the network returned no output")?;
        out.push((clip, s));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let display = if explain {
        let tile = TestClipConfig {
            size: explain::TILE,
            ..*clip_cfg
        };
        test_clips::video_clips(&reader, &row.id, &tile)?
            .into_iter()
            .map(|c| c.frames)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Checked {
        clips: out,
        display,
    })
}

#[cfg(test)]
mod tests {
    use super::explain_path;
    use std::path::Path;

    #[test]
    fn several_videos_get_numbered_sheets() {
        assert_eq!(
            explain_path(Path::new("a/x.png"), 0, 1),
            Path::new("a/x.png")
        );
        assert_eq!(
            explain_path(Path::new("a/x.png"), 1, 3),
            Path::new("a/x-2.png")
        );
    }
}
