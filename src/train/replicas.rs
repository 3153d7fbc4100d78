//! One SAM(Adam) step over DataParallel replicas (spec §9 item 24): the global batch's item
//! groups are separate sub-batches (each with its own BN batch statistics and temp-token
//! source), their gradients are all-reduced into the clip-weighted average (= the gradient of the
//! global mean loss) before SAM's global norm and again before Adam, and the BN running
//! statistics follow replica 0 only (what `nn.DataParallel` keeps).
//!
//! The same code runs all replicas in one process ([`pipeline::allreduce::LocalReduce`]) or one
//! per process ([`pipeline::allreduce::ClusterReduce`]); both sum in replica order with the same
//! arithmetic, so the results are bit-identical.

use anyhow::{bail, Context};
use kernels::Backend;
use model::network::Network;
use model::train::{loss_and_grads, sam_perturb, sam_restore_and_adam, Optimizer, TrainBatch};
use pipeline::allreduce::{AllReduce, Contribution, Reduced};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The global (all-replica) view of a step.
#[derive(Debug, Clone)]
pub struct ReplicatedReport {
    /// Clip-weighted means of the pass-1 loss terms.
    pub loss: f64,
    pub loss_hm: f64,
    pub loss_cls: f64,
    pub loss_spatial: f64,
    /// Clip-weighted mean pass-2 loss.
    pub loss_pass2: f64,
    /// Global L2 norm of the averaged pass-1 gradient.
    pub grad_norm: f64,
    /// Clips over all replicas, and how many the pass-1 cls logit got right.
    pub clips: usize,
    pub correct: usize,
    /// Clips per replica.
    pub replica_clips: Vec<u64>,
}

/// FNV-1a over the bits of every parameter, BN buffer and counter: equal iff bit-identical
/// (up to hash collisions), cheap next to a forward pass.
pub fn state_checksum<B: Backend>(be: &B, net: &Network<B>) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |bits: u64| {
        h ^= bits;
        h = h.wrapping_mul(0x100000001b3);
    };
    for b in net.weights.params.iter().chain(&net.weights.buffers) {
        for v in be.download(b) {
            eat(u64::from(v.to_bits()));
        }
    }
    for t in &net.weights.tracked {
        eat(*t as u64);
    }
    h
}

/// BN running statistics and counters, to undo a replica's forward (replicas r > 0 must not
/// move them).
struct BnState {
    buffers: Vec<Vec<f32>>,
    tracked: Vec<i64>,
}

impl BnState {
    fn take<B: Backend>(be: &B, net: &Network<B>) -> Self {
        Self {
            buffers: net.weights.buffers.iter().map(|b| be.download(b)).collect(),
            tracked: net.weights.tracked.clone(),
        }
    }
    fn restore<B: Backend>(&self, be: &B, net: &mut Network<B>) {
        net.weights.buffers = self.buffers.iter().map(|b| be.upload(b)).collect();
        net.weights.tracked = self.tracked.clone();
    }
    /// As f64 values (exact for f32 and for counters below 2^53).
    fn to_meta(&self) -> Vec<f64> {
        self.buffers
            .iter()
            .flatten()
            .map(|&v| f64::from(v))
            .chain(self.tracked.iter().map(|&t| t as f64))
            .collect()
    }
    fn from_meta<B: Backend>(be: &B, net: &Network<B>, meta: &[f64]) -> Option<Self> {
        let sizes: Vec<usize> = net.weights.buffers.iter().map(|b| be.len(b)).collect();
        if meta.len() != sizes.iter().sum::<usize>() + net.weights.tracked.len() {
            return None;
        }
        let mut it = meta.iter();
        let buffers = sizes
            .iter()
            .map(|&n| it.by_ref().take(n).map(|&v| v as f32).collect())
            .collect();
        let tracked = it.map(|&v| v as i64).collect();
        Some(Self { buffers, tracked })
    }
}

/// One replica's forward/backward: its weighted contribution (flattened gradients of the
/// parameters in `has`), pass metadata, and (for replicas > 0) the BN statistics left untouched.
#[allow(clippy::too_many_arguments)]
fn replica_pass<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    batch: Option<&TrainBatch>,
    replica: usize,
    rng: &mut ChaCha8Rng,
    frozen: bool,
    has: &[bool],
    head: &[f64],
) -> anyhow::Result<Contribution> {
    let Some(b) = batch else {
        let mut meta = head.to_vec();
        meta.extend([0.0; 6]);
        return Ok(Contribution {
            weight: 0,
            values: Vec::new(),
            meta,
        });
    };
    let saved = (replica > 0).then(|| BnState::take(be, net));
    let p = loss_and_grads(be, net, b, rng, frozen)?;
    if let Some(s) = saved {
        s.restore(be, net);
    }
    let mut values = Vec::new();
    for (g, _) in p.grads.iter().zip(has).filter(|(_, h)| **h) {
        values.extend(be.download(g));
    }
    let correct = p
        .cls
        .iter()
        .zip(&b.labels)
        .filter(|(z, y)| (**z >= 0.0) == (**y >= 0.5))
        .count();
    let mut meta = head.to_vec();
    meta.extend([
        correct as f64,
        p.loss.total,
        p.loss.hm,
        p.loss.cls,
        p.loss.temp_loc,
        0.0,
    ]);
    Ok(Contribution {
        weight: b.batch as u64,
        values,
        meta,
    })
}

/// The averaged gradients as per-parameter buffers (zeros where `has` is false).
fn unflatten<B: Backend>(
    be: &B,
    net: &Network<B>,
    has: &[bool],
    flat: &[f32],
) -> anyhow::Result<Vec<B::Buf>> {
    let mut off = 0;
    let mut out = Vec::with_capacity(has.len());
    for (p, &h) in net.inv.params.iter().zip(has) {
        let n = p.numel();
        if h {
            let s = flat
                .get(off..off + n)
                .context("internal: reduced gradient shorter than the parameters")?;
            out.push(be.upload(s));
            off += n;
        } else {
            out.push(be.zeros(n));
        }
    }
    Ok(out)
}

/// Clip-weighted mean of meta column `k` (the order of replicas fixes the f64 sum).
fn weighted(r: &Reduced, k: usize) -> f64 {
    let total: u64 = r.weights.iter().sum();
    if total == 0 {
        return 0.0;
    }
    r.weights
        .iter()
        .zip(&r.metas)
        .map(|(&w, m)| w as f64 * m.get(k).copied().unwrap_or(0.0))
        .sum::<f64>()
        / total as f64
}

/// One SAM(Adam) step of `replicas` replicas; `local` are this process's sub-batches (replicas
/// `first..first + local.len()`). Every process draws the replicas' dropout seeds from the same
/// `rng` so all stay in step. Returns None (no step taken) when every replica's group failed.
#[allow(clippy::too_many_arguments)]
pub fn replicated_sam_step<B: Backend>(
    be: &B,
    net: &mut Network<B>,
    opt: &mut Optimizer<B>,
    local: &[Option<TrainBatch>],
    first: usize,
    replicas: usize,
    rng: &mut ChaCha8Rng,
    frozen: bool,
    ar: &mut dyn AllReduce,
) -> anyhow::Result<Option<ReplicatedReport>> {
    let seeds: Vec<u64> = (0..replicas).map(|_| rng.next_u64()).collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..local.len())
        .map(|i| ChaCha8Rng::seed_from_u64(seeds[first + i]))
        .collect();
    let has = net.has_grad(frozen);
    let len: usize = net
        .inv
        .params
        .iter()
        .zip(&has)
        .filter(|(_, h)| **h)
        .map(|(p, _)| p.numel())
        .sum();
    let sum = state_checksum(be, net);
    // u64 checksum as two exact f64 halves
    let head = [(sum >> 32) as f64, (sum & 0xffff_ffff) as f64];

    // pass 1
    let mut contributions = Vec::with_capacity(local.len());
    for (i, b) in local.iter().enumerate() {
        contributions.push(replica_pass(
            be,
            net,
            b.as_ref(),
            first + i,
            &mut rngs[i],
            frozen,
            &has,
            &head,
        )?);
    }
    let r1 = ar.all_reduce(len, contributions)?;
    let sums: Vec<u64> = r1
        .metas
        .iter()
        .map(|m| ((m[0] as u64) << 32) | m[1] as u64)
        .collect();
    if sums.iter().any(|&s| s != sums[0]) {
        bail!(
            "replica parameters diverged before this step (checksums {sums:x?}): the ranks no longer train the same model"
        );
    }
    let clips: u64 = r1.weights.iter().sum();
    if clips == 0 {
        return Ok(None);
    }
    let g1 = unflatten(be, net, &has, &r1.values)?;
    let (e, grad_norm) = sam_perturb(be, net, &g1, &has, opt.cfg.rho);
    drop(g1);

    // pass 2 (replica 0 also hands over its BN running statistics)
    let mut contributions = Vec::with_capacity(local.len());
    for (i, b) in local.iter().enumerate() {
        let mut c = replica_pass(
            be,
            net,
            b.as_ref(),
            first + i,
            &mut rngs[i],
            frozen,
            &has,
            &head,
        )?;
        if first + i == 0 {
            c.meta.extend(BnState::take(be, net).to_meta());
        }
        contributions.push(c);
    }
    let r2 = ar.all_reduce(len, contributions)?;
    if first > 0 {
        let bn = r2
            .metas
            .first()
            .and_then(|m| BnState::from_meta(be, net, m.get(8..).unwrap_or(&[])))
            .context("internal: replica 0 sent no BN running statistics")?;
        bn.restore(be, net);
    }
    let g2 = unflatten(be, net, &has, &r2.values)?;
    sam_restore_and_adam(be, net, opt, &e, &g2);

    Ok(Some(ReplicatedReport {
        loss: weighted(&r1, 3),
        loss_hm: weighted(&r1, 4),
        loss_cls: weighted(&r1, 5),
        loss_spatial: weighted(&r1, 6),
        loss_pass2: weighted(&r2, 3),
        grad_norm,
        clips: clips as usize,
        correct: r1.metas.iter().map(|m| m[2] as usize).sum(),
        replica_clips: r1.weights.clone(),
    }))
}
