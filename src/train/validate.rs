//! Per-epoch validation as the official trainer does it (spec §6): the validation videos' clips
//! (offset 0, fixed), self-blended afresh each epoch without hflip, forwarded in eval mode;
//! the metric is the binary accuracy of σ(cls) ≥ 0.5 over real and fake clips.

use kernels::loss::{combined_loss, LossWeights};
use kernels::Backend;
use model::network::Network;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stages::clips::{ClipRef, ShardSet};
use stages::synth::batch::BatchKey;
use stages::synth::sbv::SbvConfig;

use super::loader::{assemble, synthesize_clips, FailedItem, VideoFilter};

/// Keeps the validation draws apart from the training draws of the same epoch.
const VAL_SALT: u64 = 0x5641_4c49_4441_5445;

pub struct ValSet {
    pub set: ShardSet,
    pub clips: Vec<(u64, ClipRef)>,
}

impl ValSet {
    /// The epoch-0 clips (offset 0) of the videos `filter` keeps, at most `limit` (0 = all).
    pub fn new(set: ShardSet, filter: &VideoFilter, seed: u64, limit: usize) -> Self {
        let mut clips: Vec<(u64, ClipRef)> = set
            .clips(seed, 0)
            .into_iter()
            .filter(|c| filter.keeps(&c.video_id))
            .enumerate()
            .map(|(i, c)| (i as u64, c))
            .collect();
        if limit > 0 {
            clips.truncate(limit);
        }
        Self { set, clips }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ValResult {
    pub acc: f64,
    pub loss: f64,
    /// Clips scored (real + fake).
    pub clips: usize,
    pub failed: Vec<FailedItem>,
}

/// How validation runs (fixed for a job).
pub struct ValConfig {
    pub seed: u64,
    /// The training synthesis settings (validation turns hflip off).
    pub sbv: SbvConfig,
    pub clips_per_forward: usize,
    pub threads: usize,
}

pub fn validate<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    val: &ValSet,
    vc: &ValConfig,
    epoch: u64,
) -> anyhow::Result<ValResult> {
    let (seed, threads) = (vc.seed, vc.threads);
    let cfg = SbvConfig {
        allow_hflip: false,
        ..vc.sbv.clone()
    };
    let items = (vc.clips_per_forward / 2).max(1);
    let (mut correct, mut total, mut loss_sum) = (0usize, 0usize, 0.0f64);
    let mut failed = Vec::new();
    // eval mode draws nothing, but keep the training RNG out of reach anyway
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for (i, chunk) in val.clips.chunks(items).enumerate() {
        let (pairs, f) = synthesize_clips(&val.set, chunk, seed ^ VAL_SALT, epoch, &cfg, threads);
        failed.extend(f);
        let key = BatchKey {
            seed: seed ^ VAL_SALT,
            epoch,
            index: i as u64,
        };
        let Some(b) = assemble(pairs, key).map_err(anyhow::Error::msg)? else {
            continue;
        };
        let x = be.upload(&b.x);
        let tr = net.forward(be, &x, b.batch, false, &mut rng)?;
        let cls = be.download(&tr.cls);
        let l = combined_loss(
            &be.download(&tr.hm),
            &b.hm_target,
            &b.mask,
            &cls,
            &b.labels,
            &be.download(&tr.temp_loc),
            &b.temp_loc_target,
            LossWeights::default(),
        );
        loss_sum += l.total * b.batch as f64;
        for (z, y) in cls.iter().zip(&b.labels) {
            let p = 1.0 / (1.0 + (-(*z as f64)).exp());
            correct += usize::from((p >= 0.5) == (*y >= 0.5));
        }
        total += b.batch;
    }
    if total == 0 {
        anyhow::bail!(
            "validation: none of the {} clips could be synthesized",
            val.clips.len()
        );
    }
    Ok(ValResult {
        acc: correct as f64 / total as f64,
        loss: loss_sum / total as f64,
        clips: total,
        failed,
    })
}
