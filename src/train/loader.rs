//! The data side of training: shard stores → clip sampler → SBV synthesis → batches, on its own
//! thread, a bounded number of batches ahead of the model (backpressure through the channel).
//!
//! Everything a batch contains is a function of (seed, epoch, batch index), so the model side can
//! resume at any batch and a killed run continues exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver};
use model::train::TrainBatch;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stages::clips::{ClipRef, ShardSet};
use stages::synth::batch::{synthesize_items, Batch, BatchKey};
use stages::synth::sbv::{ClipInput, ItemKey, SbvConfig, SynthesizedPair};

/// Whether a video id is named by one of the patterns (exact, or a prefix ending in `*`).
pub fn matches_any(id: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => id == p,
    })
}

/// Which videos of a shard set a sampler takes.
#[derive(Debug, Clone)]
pub enum VideoFilter {
    All,
    Only(Vec<String>),
    Except(Vec<String>),
}

impl VideoFilter {
    pub fn keeps(&self, id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(p) => matches_any(id, p),
            Self::Except(p) => !matches_any(id, p),
        }
    }
}

/// One epoch's batches: clip refs with their item numbers (the synthesis key), in batch order.
pub struct EpochPlan {
    pub batches: Vec<Vec<(u64, ClipRef)>>,
}

impl EpochPlan {
    /// The epoch's clips (per-video offsets from (seed, epoch)), numbered in sampler order,
    /// shuffled by (seed, epoch), cut into batches of `items`, at most `max_batches` (0 = all).
    pub fn new(
        set: &ShardSet,
        filter: &VideoFilter,
        seed: u64,
        epoch: u64,
        items: usize,
        max_batches: u64,
    ) -> Self {
        let mut clips: Vec<(u64, ClipRef)> = set
            .clips(seed, epoch)
            .into_iter()
            .filter(|c| filter.keeps(&c.video_id))
            .enumerate()
            .map(|(i, c)| (i as u64, c))
            .collect();
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ epoch.rotate_left(32) ^ 0x5348_5546_464c_4521);
        clips.shuffle(&mut rng);
        let mut batches: Vec<Vec<(u64, ClipRef)>> =
            clips.chunks(items.max(1)).map(|c| c.to_vec()).collect();
        if max_batches > 0 {
            batches.truncate(max_batches as usize);
        }
        Self { batches }
    }
}

/// A clip that could not be used, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedItem {
    pub epoch: u64,
    pub clip: String,
    pub reason: String,
}

/// A batch ready for the model: one sub-batch per replica this process holds (None where every
/// item of the replica's group failed).
pub struct Prepared {
    pub epoch: u64,
    pub index: u64,
    pub parts: Vec<Option<TrainBatch>>,
    pub failed: Vec<FailedItem>,
    /// Seconds the data side spent on it.
    pub prep_s: f64,
}

/// Loads and synthesizes `clips` with `threads` workers; failures are listed, not fatal.
pub fn synthesize_clips(
    set: &ShardSet,
    clips: &[(u64, ClipRef)],
    seed: u64,
    epoch: u64,
    cfg: &SbvConfig,
    threads: usize,
) -> (Vec<(u64, SynthesizedPair)>, Vec<FailedItem>) {
    let mut failed = Vec::new();
    let mut inputs: Vec<ClipInput> = Vec::new();
    let mut keys = Vec::new();
    let mut refs = Vec::new();
    for (item, clip) in clips {
        match set.load(clip) {
            Ok(i) => {
                inputs.push(i);
                keys.push(ItemKey {
                    seed,
                    epoch,
                    item: *item,
                });
                refs.push((*item, clip));
            }
            Err(e) => failed.push(FailedItem {
                epoch,
                clip: clip.to_string(),
                reason: e.to_string(),
            }),
        }
    }
    let mut pairs = Vec::new();
    match synthesize_items(&inputs, &keys, cfg, threads) {
        Ok(results) => {
            for ((item, clip), r) in refs.into_iter().zip(results) {
                match r {
                    Ok(p) => pairs.push((item, p)),
                    Err(e) => failed.push(FailedItem {
                        epoch,
                        clip: clip.to_string(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        Err(e) => {
            for (_, clip) in refs {
                failed.push(FailedItem {
                    epoch,
                    clip: clip.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
    (pairs, failed)
}

/// The model's view of a synthesized batch.
pub fn to_train_batch(b: Batch) -> TrainBatch {
    TrainBatch {
        mask: b.mask.iter().map(|&m| m as f32).collect(),
        temp_loc_target: b.spatial.iter().map(|&v| v as f64).collect(),
        x: b.images,
        batch: b.clips,
        labels: b.labels,
        hm_target: b.heatmap,
    }
}

/// Pairs → model batch, shuffled by (seed, epoch, index); None if nothing is left.
/// (Takes the pairs: a batch of the official size is hundreds of MB, not worth copying.)
pub fn assemble(
    pairs: Vec<(u64, SynthesizedPair)>,
    key: BatchKey,
) -> Result<Option<TrainBatch>, String> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let p: Vec<SynthesizedPair> = pairs.into_iter().map(|(_, p)| p).collect();
    Batch::assemble(&p, key)
        .map(|b| Some(to_train_batch(b)))
        .map_err(|e| e.to_string())
}

/// The item groups of a batch of `n` items over `replicas` replicas (DataParallel's chunks):
/// contiguous in batch order, sizes differing by at most 1, the larger ones first.
pub fn replica_groups(n: usize, replicas: usize) -> Vec<std::ops::Range<usize>> {
    let r = replicas.max(1);
    let mut start = 0;
    (0..r)
        .map(|i| {
            let len = n / r + usize::from(i < n % r);
            let g = start..start + len;
            start += len;
            g
        })
        .collect()
}

/// The synthesis/shuffle key of replica `replica`'s sub-batch of batch `index`:
/// `index · replicas + replica` (so one replica keeps the single-device key `index`).
pub fn replica_key(seed: u64, epoch: u64, index: u64, replicas: usize, replica: usize) -> BatchKey {
    BatchKey {
        seed,
        epoch,
        index: index * replicas as u64 + replica as u64,
    }
}

/// Settings of the training data side.
#[derive(Clone)]
pub struct LoaderConfig {
    pub seed: u64,
    pub filter: VideoFilter,
    pub items: usize,
    pub max_batches: u64,
    pub epochs: u64,
    pub sbv: SbvConfig,
    pub threads: usize,
    pub prefetch: usize,
    /// Replicas the global batch is split into.
    pub replicas: usize,
    /// The replicas this process loads (all of them on one process; its own on a cluster).
    pub local: std::ops::Range<usize>,
}

/// The running data thread; dropping it stops the thread at its next batch.
pub struct Loader {
    pub rx: Receiver<Prepared>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // unblock a send in progress
        while self.rx.try_recv().is_ok() {}
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Loader {
    /// Streams batches from (`epoch`, `batch`) to the end of the run.
    pub fn start(
        set: Arc<ShardSet>,
        cfg: LoaderConfig,
        epoch: u64,
        batch: u64,
    ) -> std::io::Result<Self> {
        let (tx, rx) = bounded(cfg.prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("train-data".into())
            .spawn(move || {
                let mut plans: BTreeMap<u64, EpochPlan> = BTreeMap::new();
                for e in epoch..cfg.epochs {
                    let plan = plans.entry(e).or_insert_with(|| {
                        EpochPlan::new(&set, &cfg.filter, cfg.seed, e, cfg.items, cfg.max_batches)
                    });
                    let first = if e == epoch { batch } else { 0 };
                    for (i, clips) in plan.batches.iter().enumerate().skip(first as usize) {
                        if stop2.load(Ordering::Relaxed) {
                            return;
                        }
                        let t0 = Instant::now();
                        let groups = replica_groups(clips.len(), cfg.replicas);
                        let mut failed = Vec::new();
                        let mut parts = Vec::new();
                        for r in cfg.local.clone() {
                            let group = &clips[groups[r].clone()];
                            let (pairs, f) =
                                synthesize_clips(&set, group, cfg.seed, e, &cfg.sbv, cfg.threads);
                            failed.extend(f);
                            let key = replica_key(cfg.seed, e, i as u64, cfg.replicas, r);
                            parts.push(match assemble(pairs, key) {
                                Ok(b) => b,
                                Err(reason) => {
                                    failed.push(FailedItem {
                                        epoch: e,
                                        clip: if cfg.replicas == 1 {
                                            format!("batch {i}")
                                        } else {
                                            format!("batch {i} replica {r}")
                                        },
                                        reason,
                                    });
                                    None
                                }
                            });
                        }
                        let p = Prepared {
                            epoch: e,
                            index: i as u64,
                            parts,
                            failed,
                            prep_s: t0.elapsed().as_secs_f64(),
                        };
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    plans.remove(&e);
                }
            })?;
        Ok(Self {
            rx,
            stop,
            handle: Some(handle),
        })
    }
}
