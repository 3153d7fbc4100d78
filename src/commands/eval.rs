//! `fakestormer eval SPEC` (or `--weights W --manifest M --out DIR`): the paper's evaluation
//! (spec §7): videos → preprocessed face crops (the `preprocess` pipeline, or existing shard
//! stores) → clips of 4 consecutive stored frames → forward → video score = mean of its clip
//! logits → AUC, AP, AR, mF1, ACC, EER. Writes `scores.csv`, `metrics.json` and `roc.png` to the
//! output folder and prints a summary; a video that cannot be scored is listed with its reason and
//! left out of the metrics, never silently.
//!
//! `[eval] synthetic = true` scores the manifest's real videos against self-blended fakes of their
//! own clips (the held-out check of the demo, and the official validation protocol).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use model::metrics::{binary_metrics, BinaryMetrics, RocCurve};
use model::network::Mode;
use pipeline::manifest::ManifestRow;
use pipeline::{ParamProblem, Params, ValidateContext};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stages::catalog::PreprocessParams;
use stages::clips::ShardSet;
use stages::shard::ShardReader;
use stages::synth::sbv::{ItemKey, SbvConfig};
use stages::synth::ImageU8;
use stages::test_clips::{self, TestClipConfig};

use super::cluster::ClusterArgs;
use crate::inference::{self, Device, ModelSource, Scorer, TempToken};

/// The per-dataset test margins of the official code (spec §8, §9 item 14): pixels cut from
/// every border of the 256² crop before resizing.
pub fn default_margin(dataset: &str) -> usize {
    match dataset.to_ascii_lowercase().as_str() {
        "dfw" => 0,
        "dfdcp" => 5,
        "dfd" => 13,
        _ => 15,
    }
}

/// An eval job spec (`specs/eval-*.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds the official shuffled batches and the synthetic fakes.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Output folder (relative to the working directory, like pipeline specs).
    pub output: String,
    /// `cpu` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Matrix-product arithmetic on CUDA: `f32` (default), `tf32` or `bf16`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub math: String,
    /// `.safetensors` or the official `.pth` (relative paths: to the spec's folder).
    pub weights: String,
    /// JSONL manifest of the test videos (relative to the spec's folder).
    pub manifest: String,
    /// Keep only manifest rows of this dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Keep only manifest rows of this split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Existing shard stores of the manifest's videos (skips preprocessing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<String>,
    /// Preprocess stage instances per worker.
    #[serde(default = "default_workers")]
    pub preprocess_workers: usize,
    #[serde(default)]
    pub model: ModelSection,
    /// Parameters of the `preprocess` stage (default: 32 uniformly spaced frames, MTCNN).
    #[serde(default)]
    pub preprocess: PreprocessParams,
    #[serde(default)]
    pub eval: EvalSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `base`, `small` or `tiny`; default: inferred from the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// A model-config TOML (instead of a preset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// `compat` (the official code, bugs included: the released weights need it) or `clean`.
    pub mode: String,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            preset: None,
            config: None,
            mode: default_mode(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Test margin in pixels; default per row by dataset (DFW 0, DFDCP 5, DFD 13, others 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<usize>,
    /// Frames per clip (the model's T).
    pub clip_frames: usize,
    /// Clips per forward (`temp_token = "batch"`, or clean mode).
    pub batch: usize,
    /// Average the logits of each clip and its horizontal mirror.
    pub flip_test: bool,
    /// `per-clip` (each compat clip forwarded alone: order-independent) or `batch` (the official
    /// shuffled batches: a clip's temp token comes from the first clip of its batch).
    pub temp_token: String,
    /// Score the real videos against self-blended fakes of their own clips.
    pub synthetic: bool,
    /// Evaluate at most this many videos (after filtering), in manifest order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            margin: None,
            clip_frames: 4,
            batch: 8,
            flip_test: false,
            temp_token: "per-clip".into(),
            synthetic: false,
            limit: None,
        }
    }
}

fn default_seed() -> u64 {
    317
}
fn default_device() -> String {
    "cpu".into()
}
fn default_workers() -> usize {
    2
}
fn default_mode() -> String {
    "compat".into()
}

impl Params for EvalSpec {
    fn validate(&self, ctx: &ValidateContext) -> Vec<ParamProblem> {
        let mut p = Vec::new();
        let file = |p: &mut Vec<ParamProblem>, field: &str, value: &str, dir: bool| {
            let path = ctx.resolve(value);
            let ok = if dir { path.is_dir() } else { path.is_file() };
            if !ok {
                p.push(ParamProblem::new(
                    field,
                    format!(
                        "{} `{}` not found",
                        if dir { "folder" } else { "file" },
                        path.display()
                    ),
                ));
            }
        };
        file(&mut p, "weights", &self.weights, false);
        file(&mut p, "manifest", &self.manifest, false);
        if let Some(s) = &self.shards {
            file(&mut p, "shards", s, true);
        }
        if let Some(c) = &self.model.config {
            file(&mut p, "model.config", c, false);
        }
        if self.model.preset.is_some() && self.model.config.is_some() {
            p.push(ParamProblem::new(
                "model.config",
                "give either `preset` or `config`, not both",
            ));
        }
        if let Err(e) = self.device.parse::<Device>() {
            p.push(ParamProblem::new("device", e));
        }
        if let Err(e) = self.math.parse::<kernels::cuda::GemmMath>() {
            p.push(ParamProblem::new("math", e).hint("`f32`, `tf32` or `bf16`"));
        }
        if let Err(e) = self.model.mode.parse::<Mode>() {
            p.push(ParamProblem::new("model.mode", e.to_string()));
        }
        if let Some(name) = &self.model.preset {
            if let Err(e) = model::config::ModelConfig::preset(name) {
                p.push(ParamProblem::new("model.preset", e.to_string()));
            }
        }
        if let Err(e) = self.eval.temp_token.parse::<TempToken>() {
            p.push(ParamProblem::new("eval.temp_token", e));
        }
        if self.eval.margin.is_some_and(|m| m > 100) {
            p.push(ParamProblem::new(
                "eval.margin",
                "must be at most 100 pixels",
            ));
        }
        if !(1..=64).contains(&self.eval.clip_frames) {
            p.push(ParamProblem::new("eval.clip_frames", "must be in 1..=64"));
        }
        if !(1..=4096).contains(&self.eval.batch) {
            p.push(ParamProblem::new("eval.batch", "must be in 1..=4096"));
        }
        if self.eval.limit == Some(0) {
            p.push(ParamProblem::new("eval.limit", "must be at least 1"));
        }
        if !(1..=64).contains(&self.preprocess_workers) {
            p.push(ParamProblem::new("preprocess_workers", "must be in 1..=64"));
        }
        for mut q in self.preprocess.validate(ctx) {
            q.field = format!("preprocess.{}", q.field);
            p.push(q);
        }
        p
    }
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Eval spec (TOML); or give --weights, --manifest and --out instead.
    pub spec: Option<PathBuf>,
    /// Weights (.safetensors or official .pth); overrides the spec's.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Manifest of the test videos (without a spec).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Output folder; overrides the spec's.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep only this dataset's rows (and use its test margin).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Test margin in pixels (default: per dataset).
    #[arg(long)]
    pub margin: Option<usize>,
    /// Existing shard stores of the videos (skip preprocessing).
    #[arg(long)]
    pub shards: Option<PathBuf>,
    /// Model preset (base, small, tiny) instead of inferring it from the weights.
    #[arg(long)]
    pub preset: Option<String>,
    /// Model-config TOML (e.g. specs/models/demo.toml) instead of a preset.
    #[arg(long, conflicts_with = "preset")]
    pub model_config: Option<PathBuf>,
    /// compat or clean.
    #[arg(long)]
    pub mode: Option<String>,
    /// cpu or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Matrix-product arithmetic on CUDA: f32, tf32 or bf16.
    #[arg(long)]
    pub math: Option<String>,
    /// Frames per video to preprocess (uniformly spaced).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Self-blended fakes of the real videos' clips instead of the manifest's labels.
    #[arg(long)]
    pub synthetic: bool,
    /// Average each clip's logits with those of its mirror image.
    #[arg(long)]
    pub flip_test: bool,
    /// per-clip or batch.
    #[arg(long)]
    pub temp_token: Option<String>,
    /// Clips per forward.
    #[arg(long)]
    pub batch: Option<usize>,
    /// At most this many videos.
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Whether any flag changes the spec.
fn has_overrides(a: &EvalArgs) -> bool {
    a.weights.is_some()
        || a.manifest.is_some()
        || a.out.is_some()
        || a.shards.is_some()
        || a.dataset.is_some()
        || a.margin.is_some()
        || a.preset.is_some()
        || a.model_config.is_some()
        || a.mode.is_some()
        || a.device.is_some()
        || a.math.is_some()
        || a.frames.is_some()
        || a.synthetic
        || a.flip_test
        || a.temp_token.is_some()
        || a.batch.is_some()
        || a.limit.is_some()
}

/// The job from a spec file (with flag overrides) or from flags alone. The hash covers the final
/// spec, so overridden runs are told apart in the provenance.
fn load_job(args: &EvalArgs) -> anyhow::Result<pipeline::LoadedJob<EvalSpec>> {
    let (path, mut spec, dir) = match &args.spec {
        Some(p) => match pipeline::load_job::<EvalSpec>(p) {
            Ok(job) => (job.path.clone(), job.spec, job.dir),
            // A problem the flags may fix (e.g. the spec's weights file is absent but --weights
            // is given): take the spec unchecked; the final check below still runs.
            Err(e) => {
                let unchecked = std::fs::read_to_string(p)
                    .ok()
                    .and_then(|t| toml::from_str::<EvalSpec>(&t).ok())
                    .filter(|_| has_overrides(args));
                let Some(spec) = unchecked else {
                    bail!("{e}");
                };
                let dir = p
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf();
                (p.clone(), spec, dir)
            }
        },
        None => {
            let (Some(w), Some(m), Some(o)) = (&args.weights, &args.manifest, &args.out) else {
                bail!("give an eval spec, or all of --weights, --manifest and --out");
            };
            let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let spec = EvalSpec {
                name: "eval".into(),
                description: "eval from command-line flags".into(),
                seed: default_seed(),
                output: o.display().to_string(),
                device: default_device(),
                math: String::new(),
                weights: abs(w).display().to_string(),
                manifest: abs(m).display().to_string(),
                dataset: None,
                split: None,
                shards: None,
                preprocess_workers: default_workers(),
                model: ModelSection::default(),
                preprocess: PreprocessParams::default(),
                eval: EvalSection::default(),
            };
            let cwd = std::env::current_dir()?;
            (cwd.join("<flags>"), spec, cwd)
        }
    };
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(w) = &args.weights {
        spec.weights = abs(w).display().to_string();
    }
    if let Some(o) = &args.out {
        spec.output = o.display().to_string();
    }
    if let Some(m) = &args.manifest {
        spec.manifest = abs(m).display().to_string();
    }
    if let Some(s) = &args.shards {
        spec.shards = Some(abs(s).display().to_string());
    }
    if let Some(d) = &args.dataset {
        spec.dataset = Some(d.clone());
    }
    if args.margin.is_some() {
        spec.eval.margin = args.margin;
    }
    if let Some(p) = &args.preset {
        spec.model.preset = Some(p.clone());
        spec.model.config = None;
    }
    if let Some(c) = &args.model_config {
        spec.model.preset = None;
        spec.model.config = Some(abs(c).display().to_string());
    }
    if let Some(m) = &args.mode {
        spec.model.mode = m.clone();
    }
    if let Some(d) = &args.device {
        spec.device = d.clone();
    }
    if let Some(m) = &args.math {
        spec.math = m.clone();
    }
    if let Some(f) = args.frames {
        spec.preprocess.frames = f;
    }
    spec.eval.synthetic |= args.synthetic;
    spec.eval.flip_test |= args.flip_test;
    if let Some(t) = &args.temp_token {
        spec.eval.temp_token = t.clone();
    }
    if let Some(b) = args.batch {
        spec.eval.batch = b;
    }
    if args.limit.is_some() {
        spec.eval.limit = args.limit;
    }
    // Re-check through the job parser so flags get the same validation as spec files.
    let text = toml::to_string(&spec).context("serialising the eval spec")?;
    let job = pipeline::parse_job::<EvalSpec>(&path, &text).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(after applying the command-line flags to {})",
            path.display()
        )
    })?;
    Ok(pipeline::LoadedJob { dir, ..job })
}

/// The row filters of a preprocess run (the `[source]` table of a pipeline spec).
#[derive(Debug, Default)]
pub struct SourceFilter {
    pub dataset: Option<String>,
    pub split: Option<String>,
    pub label: Option<u8>,
    pub limit: Option<usize>,
}

/// A `preprocess` → `shard-store` pipeline over `manifest` writing `<out>/shards` (the engine
/// path of `fakestormer preprocess`, so cluster flags and failure reports work the same).
pub struct PreprocessRun<'a> {
    pub name: String,
    pub seed: u64,
    /// Anchors relative paths inside `params` and names the spec in diagnostics.
    pub spec_path: PathBuf,
    pub manifest: PathBuf,
    pub out: PathBuf,
    pub params: &'a PreprocessParams,
    /// Stage instances per worker.
    pub workers: usize,
    pub filter: SourceFilter,
}

impl PreprocessRun<'_> {
    /// The pipeline spec, checked like a spec file.
    pub fn spec(&self, registry: &pipeline::Registry) -> anyhow::Result<pipeline::LoadedSpec> {
        let (filter, params) = (&self.filter, self.params);
        let manifest = std::path::absolute(&self.manifest)?;
        let mut source = toml::Table::new();
        source.insert("manifest".into(), manifest.display().to_string().into());
        if let Some(d) = &filter.dataset {
            source.insert("dataset".into(), d.clone().into());
        }
        if let Some(x) = &filter.split {
            source.insert("split".into(), x.clone().into());
        }
        if let Some(l) = filter.label {
            source.insert("label".into(), i64::from(l).into());
        }
        if let Some(l) = filter.limit {
            source.insert("limit".into(), (l as i64).into());
        }
        let mut stage = toml::Table::new();
        stage.insert("kind".into(), "preprocess".into());
        stage.insert("workers".into(), (self.workers as i64).into());
        stage.insert("capacity".into(), 4i64.into());
        stage.insert(
            "params".into(),
            toml::Value::try_from(params).context("preprocess parameters")?,
        );
        let mut sink = toml::Table::new();
        sink.insert("kind".into(), "shard-store".into());
        sink.insert("capacity".into(), 8i64.into());
        let mut root = toml::Table::new();
        root.insert("name".into(), self.name.clone().into());
        root.insert("seed".into(), (self.seed as i64).into());
        root.insert("output".into(), self.out.display().to_string().into());
        root.insert("source".into(), source.into());
        root.insert("stages".into(), vec![toml::Value::Table(stage)].into());
        root.insert("sink".into(), sink.into());
        let text = toml::to_string(&root)?;
        pipeline::parse_spec(&self.spec_path, &text, registry).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The eval job's preprocess pipeline, writing `<output>/preprocess/shards`.
fn preprocess_spec(
    job: &pipeline::LoadedJob<EvalSpec>,
    registry: &pipeline::Registry,
) -> anyhow::Result<pipeline::LoadedSpec> {
    let s = &job.spec;
    PreprocessRun {
        name: format!("{}-preprocess", s.name),
        seed: s.seed,
        spec_path: job.path.clone(),
        manifest: job.resolve(&s.manifest),
        out: PathBuf::from(&s.output).join("preprocess"),
        params: &s.preprocess,
        workers: s.preprocess_workers,
        filter: SourceFilter {
            dataset: s.dataset.clone(),
            split: s.split.clone(),
            label: s.eval.synthetic.then_some(0),
            limit: s.eval.limit,
        },
    }
    .spec(registry)
}

/// Finds a video's store under a shards folder: `<root>/<id>.store` (the `shard-store` layout),
/// else by scanning every store once.
struct StoreLocator {
    root: PathBuf,
    scanned: Option<HashMap<String, PathBuf>>,
}

impl StoreLocator {
    fn new(root: PathBuf) -> Self {
        Self {
            root,
            scanned: None,
        }
    }

    fn find(&mut self, id: &str) -> Result<PathBuf, String> {
        let direct = pipeline::naming::item_path(&self.root, id, "store");
        if stages::catalog::is_done(&direct, id) {
            return Ok(direct);
        }
        if self.scanned.is_none() {
            let mut map = HashMap::new();
            for p in stages::catalog::find_stores(&self.root).unwrap_or_default() {
                if let Ok(r) = ShardReader::open(&p) {
                    for v in r.videos() {
                        map.entry(v.meta.video_id.clone()).or_insert(p.clone());
                    }
                }
            }
            self.scanned = Some(map);
        }
        self.scanned
            .as_ref()
            .and_then(|m| m.get(id).cloned())
            .ok_or_else(|| {
                format!(
                    "no shard store holds this video under {}",
                    self.root.display()
                )
            })
    }
}

/// One unit scored at video level: a manifest video, or (synthetic) its self-blended counterpart.
struct Unit {
    id: String,
    label: u8,
    dataset: String,
    video: usize,
}

/// Where a clip's frames come from.
enum ClipSource {
    Stored {
        store: PathBuf,
        video_id: String,
        positions: Range<usize>,
        margin: usize,
    },
    Synthetic(Vec<ImageU8>),
}

struct Clip {
    unit: usize,
    source: ClipSource,
}

/// A video that could not be scored.
#[derive(Debug, Clone, Serialize)]
struct Failure {
    id: String,
    reason: String,
}

/// The clips of every video, and the videos that have none.
struct Plan {
    units: Vec<Unit>,
    clips: Vec<Clip>,
    failed: Vec<(usize, String)>,
    clip_failures: Vec<Failure>,
}

impl Plan {
    fn push_unit(&mut self, id: String, label: u8, row: &ManifestRow, video: usize) -> usize {
        self.units.push(Unit {
            id,
            label,
            dataset: row.dataset.clone(),
            video,
        });
        self.units.len() - 1
    }
}

/// What scoring needs besides the rows.
struct PlanSettings<'a> {
    spec: &'a EvalSpec,
    pre_failed: &'a HashMap<String, String>,
    sbv: SbvConfig,
}

fn plan(rows: &[ManifestRow], set: &PlanSettings<'_>, locator: &mut StoreLocator) -> Plan {
    let mut p = Plan {
        units: Vec::new(),
        clips: Vec::new(),
        failed: Vec::new(),
        clip_failures: Vec::new(),
    };
    // Synthetic items are numbered over all clips in manifest order, so a clip's fake depends
    // only on (seed, its position), not on thread count.
    let mut item = 0u64;
    for (v, row) in rows.iter().enumerate() {
        let store = match set.pre_failed.get(&row.id) {
            Some(r) => Err(r.clone()),
            None => locator.find(&row.id),
        };
        let done = store.and_then(|store| {
            if set.spec.eval.synthetic {
                plan_synthetic(&mut p, row, v, &store, set, &mut item)
            } else {
                plan_stored(&mut p, row, v, &store, set.spec)
            }
        });
        if let Err(e) = done {
            p.failed.push((v, e));
        }
    }
    p
}

/// The test clips of a stored video (offset-0 windows).
fn plan_stored(
    p: &mut Plan,
    row: &ManifestRow,
    v: usize,
    store: &Path,
    spec: &EvalSpec,
) -> Result<(), String> {
    let r = ShardReader::open(store).map_err(|e| e.to_string())?;
    let wins =
        test_clips::video_windows(&r, &row.id, spec.eval.clip_frames).map_err(|e| e.to_string())?;
    let margin = spec
        .eval
        .margin
        .unwrap_or_else(|| default_margin(&row.dataset));
    let unit = p.push_unit(row.id.clone(), row.label, row, v);
    p.clips.extend(wins.into_iter().map(|positions| Clip {
        unit,
        source: ClipSource::Stored {
            store: store.to_path_buf(),
            video_id: row.id.clone(),
            positions,
            margin,
        },
    }));
    Ok(())
}

/// The real clips of a video and their self-blended fakes (the training sampler's epoch-0
/// windows, which start at 0 like the test windows), synthesized on two threads.
fn plan_synthetic(
    p: &mut Plan,
    row: &ManifestRow,
    v: usize,
    store: &Path,
    set: &PlanSettings<'_>,
    item: &mut u64,
) -> Result<(), String> {
    let shards = ShardSet::open(store).map_err(|e| e.to_string())?;
    let refs: Vec<_> = shards
        .clips(set.spec.seed, 0)
        .into_iter()
        .filter(|c| c.video_id == row.id)
        .collect();
    if refs.is_empty() {
        let stored = ShardReader::open(store)
            .ok()
            .and_then(|r| r.video(&row.id).map(|e| e.frames.len()))
            .unwrap_or(0);
        return Err(format!(
            "{stored} stored frames with a face, a clip needs {}",
            stages::clips::CLIP_FRAMES
        ));
    }
    let (mut inputs, mut keys, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for c in &refs {
        let key = ItemKey {
            seed: set.spec.seed,
            epoch: 0,
            item: *item,
        };
        *item += 1;
        match shards.load(c) {
            Ok(inp) => {
                inputs.push(inp);
                keys.push(key);
                names.push(c.to_string());
            }
            Err(e) => p.clip_failures.push(Failure {
                id: c.to_string(),
                reason: e.to_string(),
            }),
        }
    }
    let made = stages::synth::batch::synthesize_items(&inputs, &keys, &set.sbv, 2)
        .map_err(|e| e.to_string())?;
    let mut pairs = Vec::new();
    for (name, r) in names.into_iter().zip(made) {
        match r {
            Ok(pair) => pairs.push((pair.real, pair.fake)),
            Err(e) => p.clip_failures.push(Failure {
                id: name,
                reason: e.to_string(),
            }),
        }
    }
    if pairs.is_empty() {
        return Err("no clip could be self-blended (see failed_clips)".into());
    }
    let real = p.push_unit(row.id.clone(), 0, row, v);
    let fake = p.push_unit(format!("{}#sbv", row.id), 1, row, v);
    for (r, f) in pairs {
        p.clips.push(Clip {
            unit: real,
            source: ClipSource::Synthetic(r),
        });
        p.clips.push(Clip {
            unit: fake,
            source: ClipSource::Synthetic(f),
        });
    }
    Ok(())
}

/// Reads a clip's frames, keeping the last opened store (clips of a video are usually adjacent).
struct ClipLoader {
    t: usize,
    size: usize,
    open: Option<(PathBuf, ShardReader)>,
}

impl ClipLoader {
    fn load(&mut self, clip: &Clip, x: &mut Vec<f32>) -> Result<(), String> {
        match &clip.source {
            ClipSource::Synthetic(frames) => {
                test_clips::push_clip_tensor(frames, x);
                Ok(())
            }
            ClipSource::Stored {
                store,
                video_id,
                positions,
                margin,
            } => {
                if self.open.as_ref().is_none_or(|(p, _)| p != store) {
                    let r = ShardReader::open(store).map_err(|e| e.to_string())?;
                    self.open = Some((store.clone(), r));
                }
                let (_, reader) = self.open.as_ref().expect("opened above");
                let cfg = TestClipConfig {
                    margin: *margin,
                    clip_frames: self.t,
                    size: self.size,
                };
                let c = test_clips::load_clip(reader, video_id, positions.clone(), &cfg)
                    .map_err(|e| e.to_string())?;
                test_clips::push_clip_tensor(&c.frames, x);
                Ok(())
            }
        }
    }
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One level's metrics, or why there are none.
fn level_metrics(
    logits: &[f64],
    labels: &[u8],
) -> (Option<BinaryMetrics>, Option<RocCurve>, Option<String>) {
    match binary_metrics(logits, labels) {
        Ok((m, c)) => (Some(m), Some(c), None),
        Err(e) => (None, None, Some(e.to_string())),
    }
}

fn table_row(level: &str, m: &Option<BinaryMetrics>, err: &Option<String>) -> String {
    match (m, err) {
        (Some(m), _) => format!(
            "{level:<6} {:>6} {:>5} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4}",
            m.count, m.positives, m.auc, m.ap, m.ar, m.mf1, m.acc, m.eer
        ),
        (None, Some(e)) => format!("{level:<6} no metrics: {e}"),
        _ => format!("{level:<6} no metrics"),
    }
}

pub fn run(args: EvalArgs, quiet: bool) -> anyhow::Result<i32> {
    let job = load_job(&args)?;
    let spec = &job.spec;
    let out = PathBuf::from(&spec.output);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let registry = super::registry();
    let pspec = preprocess_spec(&job, &registry)?;
    let rows = pipeline::engine::load_items(&pspec)?;
    if rows.is_empty() {
        bail!(
            "{}: no manifest rows left after the filters (dataset {:?}, split {:?}{})",
            job.resolve(&spec.manifest).display(),
            spec.dataset,
            spec.split,
            if spec.eval.synthetic {
                ", real videos only"
            } else {
                ""
            }
        );
    }

    // Face crops: existing stores, or the preprocess pipeline (cluster flags apply to it).
    let mut pre_failed = HashMap::new();
    let shards = match &spec.shards {
        Some(s) => job.resolve(s),
        None => {
            let dir = out.join("preprocess");
            let Some(report) = super::run::execute_report(
                &pspec,
                registry,
                &args.cluster,
                Some(dir.clone()),
                quiet,
            )?
            else {
                return Ok(0);
            };
            if report.status == "interrupted" {
                eprintln!("preprocessing interrupted: nothing scored (rerun to continue)");
                return Ok(130);
            }
            for f in &report.failed {
                pre_failed.insert(f.item.clone(), format!("{}: {}", f.stage, f.reason));
            }
            for id in &report.not_started {
                pre_failed.insert(
                    id.clone(),
                    "not preprocessed (the run was interrupted)".into(),
                );
            }
            dir.join(stages::catalog::STORES_DIR)
        }
    };

    let device: Device = spec.device.parse().map_err(anyhow::Error::msg)?;
    let mode: Mode = spec.model.mode.parse()?;
    let temp_token: TempToken = spec.eval.temp_token.parse().map_err(anyhow::Error::msg)?;
    let source = ModelSource {
        weights: job.resolve(&spec.weights),
        preset: spec.model.preset.clone(),
        config: spec.model.config.as_ref().map(|c| job.resolve(c)),
        mode,
    };
    let math: kernels::cuda::GemmMath = spec.math.parse().map_err(anyhow::Error::msg)?;
    let mut scorer = Scorer::load(&source, device, math)?;
    let cfg = *scorer.config();
    if cfg.num_frames != spec.eval.clip_frames {
        bail!(
            "eval.clip_frames = {} but the model takes clips of {} frames",
            spec.eval.clip_frames,
            cfg.num_frames
        );
    }
    let batch = match (temp_token, mode) {
        (TempToken::PerClip, Mode::Compat) => 1,
        _ => spec.eval.batch,
    };
    if batch > scorer.max_batch() {
        bail!(
            "eval.batch = {batch}: compat mode takes at most {} clips per forward (one per patch)",
            scorer.max_batch()
        );
    }

    let mut locator = StoreLocator::new(shards);
    let settings = PlanSettings {
        spec,
        pre_failed: &pre_failed,
        sbv: SbvConfig {
            out_size: cfg.img_size,
            grid: cfg.grid(),
            allow_hflip: false,
            ..SbvConfig::default()
        },
    };
    let plan = plan(&rows, &settings, &mut locator);
    let mut failed: HashMap<usize, String> = plan.failed.iter().cloned().collect();

    // Forward.
    let groups = inference::batches(plan.clips.len(), temp_token, batch, mode, spec.seed);
    let bar = inference::clip_progress(plan.clips.len(), "eval", quiet);
    let mut loader = ClipLoader {
        t: cfg.num_frames,
        size: cfg.img_size,
        open: None,
    };
    let mut logits: Vec<Option<f64>> = vec![None; plan.clips.len()];
    for group in groups {
        let mut x = Vec::with_capacity(group.len() * scorer.clip_len());
        let mut ok = Vec::with_capacity(group.len());
        for &ci in &group {
            let clip = &plan.clips[ci];
            let video = plan.units[clip.unit].video;
            if failed.contains_key(&video) {
                continue;
            }
            match loader.load(clip, &mut x) {
                Ok(()) => ok.push(ci),
                Err(e) => {
                    failed.insert(video, format!("reading a clip: {e}"));
                }
            }
        }
        if !ok.is_empty() {
            let scores = if spec.eval.flip_test {
                scorer.forward_flip(&x, ok.len())?
            } else {
                scorer.forward(&x, ok.len())?
            };
            for (&ci, s) in ok.iter().zip(scores) {
                logits[ci] = Some(s.cls as f64);
            }
        }
        bar.inc(group.len() as u64);
    }
    bar.finish_and_clear();

    // Aggregate: video score = mean of its clip logits; failed videos are left out.
    let mut per_unit: Vec<Vec<f64>> = vec![Vec::new(); plan.units.len()];
    let (mut clip_logits, mut clip_labels) = (Vec::new(), Vec::new());
    for (clip, l) in plan.clips.iter().zip(&logits) {
        let unit = &plan.units[clip.unit];
        if let (Some(l), false) = (l, failed.contains_key(&unit.video)) {
            per_unit[clip.unit].push(*l);
            clip_logits.push(*l);
            clip_labels.push(unit.label);
        }
    }
    let mut csv = String::from("video_id,label,score,probability,clips,dataset\n");
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for (unit, ls) in plan.units.iter().zip(&per_unit) {
        if failed.contains_key(&unit.video) || ls.is_empty() {
            continue;
        }
        let score = ls.iter().sum::<f64>() / ls.len() as f64;
        let _ = writeln!(
            csv,
            "{},{},{score:.9},{:.9},{},{}",
            csv_field(&unit.id),
            unit.label,
            inference::sigmoid(score),
            ls.len(),
            csv_field(&unit.dataset)
        );
        scores.push(score);
        labels.push(unit.label);
    }
    pipeline::atomic_file::write_atomic(&out.join("scores.csv"), csv.as_bytes())?;

    let (video_m, curve, video_err) = level_metrics(&scores, &labels);
    let (clip_m, _, clip_err) = level_metrics(&clip_logits, &clip_labels);
    let roc = out.join("roc.png");
    if let (Some(m), Some(c)) = (&video_m, &curve) {
        let title = format!("{}: video-level ROC (AUC {:.4})", spec.name, m.auc);
        crate::plot::roc_png(c, m.auc, &title, &roc)?;
    }

    let mut failures: Vec<Failure> = failed
        .iter()
        .map(|(&v, reason)| Failure {
            id: rows[v].id.clone(),
            reason: reason.clone(),
        })
        .collect();
    failures.sort_by(|a, b| a.id.cmp(&b.id));
    let model_cfg = serde_json::json!({
        "img_size": cfg.img_size, "patch_size": cfg.patch_size, "embed_dim": cfg.embed_dim,
        "depth": cfg.depth, "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio,
        "num_frames": cfg.num_frames, "spatial_head_width": cfg.spatial_head_width,
    });
    let metrics = serde_json::json!({
        "name": spec.name,
        "video": video_m,
        "video_error": video_err,
        "clip": clip_m,
        "clip_error": clip_err,
        "videos": {
            "total": rows.len(),
            "scored": rows.len() - failures.len(),
            "failed": failures.len(),
            "units_scored": scores.len(),
        },
        "clips": { "scored": clip_logits.len(), "failed_synthesis": plan.clip_failures.len() },
        "failed": failures,
        "failed_clips": plan.clip_failures,
        "settings": {
            "margin": spec.eval.margin.map_or_else(
                || serde_json::json!("per dataset (dfw 0, dfdcp 5, dfd 13, others 15)"),
                |m| serde_json::json!(m)),
            "clip_frames": spec.eval.clip_frames,
            "temp_token": spec.eval.temp_token,
            "forward_batch": batch,
            "flip_test": spec.eval.flip_test,
            "synthetic": spec.eval.synthetic,
            "shards": locator.root.display().to_string(),
        },
        "provenance": {
            "tool": "fakestormer",
            "version": env!("CARGO_PKG_VERSION"),
            "spec_name": spec.name,
            "spec_hash": job.hash,
            "spec": job.canonical,
            "seed": spec.seed,
            "weights": source.weights.display().to_string(),
            "weights_sha256": sha256_file(&source.weights)?,
            "model": model_cfg,
            "mode": spec.model.mode,
            "device": device.to_string(),
            "math": math.name(),
        },
    });
    pipeline::atomic_file::write_atomic(
        &out.join("metrics.json"),
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )?;

    println!(
        "{}: {} videos, {} scored, {} failed (left out of the metrics)",
        spec.name,
        rows.len(),
        rows.len() - failures.len(),
        failures.len()
    );
    println!(
        "{:<6} {:>6} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "level", "count", "fake", "AUC", "AP", "AR", "mF1", "ACC", "EER"
    );
    println!("{}", table_row("video", &video_m, &video_err));
    println!("{}", table_row("clip", &clip_m, &clip_err));
    for f in &failures {
        println!("FAILED {}: {}", f.id, f.reason);
    }
    if !plan.clip_failures.is_empty() {
        println!(
            "{} clips could not be self-blended (listed in metrics.json)",
            plan.clip_failures.len()
        );
    }
    println!(
        "wrote {}, {}{}",
        out.join("scores.csv").display(),
        out.join("metrics.json").display(),
        if video_m.is_some() {
            format!(", {}", roc.display())
        } else {
            String::new()
        }
    );
    Ok(if video_m.is_some() { 0 } else { 1 })
}
