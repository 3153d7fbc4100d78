//! One SAM(Adam) step over DataParallel replicas (spec §9 item 24): the global batch's item
//! groups are separate sub-batches (each with its own BN batch statistics and temp-token
//! source), their gradients are all-reduced into the clip-weighted average (= the gradient of the
//! global mean loss) before SAM's global norm and again before Adam, and the BN running
//! statistics follow replica 0 only (what `nn.DataParallel` keeps).
//!
//! The same code runs all replicas in one process ([`pipeline::allreduce::LocalReduce`]) or one
//! per process ([`pipeline::allreduce::ClusterReduce`]); both sum in replica order with the same
//! arithmetic, so the results are bit-identical.
//!
//! With a [`DeviceGradSum`] (NCCL on GPUs, one replica per process) the gradients never leave
//! the device: the all-reduce round carries only weights and metadata, then each rank scales its
//! gradients by `f32(w / Σw)` (the factor [`pipeline::allreduce::weighted_mean_into`] multiplies
//! by) and the ranks sum the products on the device. Each product is the same f32 value as on
//! the host path; only the order of the sum is NCCL's. With 2 ranks `a + b = b + a`, so the
//! result equals the host path's except that a sum of two `-0.0` stays `-0.0` (the host path
//! starts from `+0.0`); with 3 or more ranks the association differs and results agree within
//! f32 rounding of the sum (about `(N-1)·2⁻²⁴·Σ|wᵢ·gᵢ|/Σw` per value), not bit for bit.

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

/// Sums gradient buffers over every rank of a cluster on the device, in place (NCCL on GPUs).
/// Every rank calls it at the same point with buffers of the same lengths in the same order.
pub trait DeviceGradSum<B: Backend> {
    fn sum_in_place(&self, be: &B, grads: &mut [B::Buf]) -> anyhow::Result<()>;
}

/// A replica pass's result: its contribution (gradients flattened into `values` on the host
/// path) and, on the device path, its gradients left on the device (`None` for an empty
/// replica).
struct PassOut<B: Backend> {
    contribution: Contribution,
    grads: Option<Vec<B::Buf>>,
}

/// One replica's forward/backward: its weighted contribution (flattened gradients of the
/// parameters in `has`, or with `on_device` the gradient buffers kept as they are), pass
/// metadata, and (for replicas > 0) the BN statistics left untouched.
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
    on_device: bool,
) -> anyhow::Result<PassOut<B>> {
    let Some(b) = batch else {
        let mut meta = head.to_vec();
        meta.extend([0.0; 6]);
        return Ok(PassOut {
            contribution: Contribution {
                weight: 0,
                values: Vec::new(),
                meta,
            },
            grads: None,
        });
    };
    let saved = (replica > 0).then(|| BnState::take(be, net));
    let p = loss_and_grads(be, net, b, rng, frozen)?;
    if let Some(s) = saved {
        s.restore(be, net);
    }
    let mut values = Vec::new();
    if !on_device {
        for (g, _) in p.grads.iter().zip(has).filter(|(_, h)| **h) {
            values.extend(be.download(g));
        }
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
    Ok(PassOut {
        contribution: Contribution {
            weight: b.batch as u64,
            values,
            meta,
        },
        grads: on_device.then_some(p.grads),
    })
}

/// One all-reduce round of this process's replica passes, as per-parameter buffers of the
/// clip-weighted mean gradient (zeros where `has` is false). Host path: the flattened
/// gradients travel with the round. Device path: the round carries weights and metadata
/// only, then `device` sums the weighted gradients (see the module docs for the numerics).
fn reduce_round<B: Backend>(
    be: &B,
    net: &Network<B>,
    has: &[bool],
    len: usize,
    ar: &mut dyn AllReduce,
    device: Option<&dyn DeviceGradSum<B>>,
    passes: Vec<PassOut<B>>,
) -> anyhow::Result<(Reduced, Vec<B::Buf>)> {
    let Some(device) = device else {
        let r = ar.all_reduce(len, passes.into_iter().map(|p| p.contribution).collect())?;
        let g = if r.weights.iter().sum::<u64>() > 0 {
            unflatten(be, net, has, &r.values)?
        } else {
            Vec::new()
        };
        return Ok((r, g));
    };
    let [pass] = <[PassOut<B>; 1]>::try_from(passes).map_err(|v| {
        anyhow::anyhow!(
            "internal: the device all-reduce runs one replica per process, got {}",
            v.len()
        )
    })?;
    let weight = pass.contribution.weight;
    let r = ar.all_reduce(0, vec![pass.contribution])?;
    let total: u64 = r.weights.iter().sum();
    if total == 0 {
        // every rank sees the same weights, so all skip the device sum together
        return Ok((r, Vec::new()));
    }
    let mut summed: Vec<B::Buf> = match pass.grads {
        Some(g) if weight > 0 => g
            .into_iter()
            .zip(has)
            .filter(|(_, h)| **h)
            .map(|(g, _)| g)
            .collect(),
        _ => net
            .inv
            .params
            .iter()
            .zip(has)
            .filter(|(_, h)| **h)
            .map(|(p, _)| be.zeros(p.numel()))
            .collect(),
    };
    if weight > 0 {
        let s = mean_factor(weight, total);
        for g in &mut summed {
            let n = be.len(g);
            be.scale_groups(g, &[s], n);
        }
    }
    device.sum_in_place(be, &mut summed)?;
    let mut it = summed.into_iter();
    let mut out = Vec::with_capacity(has.len());
    for (p, &h) in net.inv.params.iter().zip(has) {
        out.push(if h {
            it.next()
                .context("internal: fewer summed gradients than parameters")?
        } else {
            be.zeros(p.numel())
        });
    }
    Ok((r, out))
}

/// The factor a replica of `weight` clips (of `total`) multiplies its gradient by: the same
/// f32 as [`pipeline::allreduce::weighted_mean_into`] uses.
fn mean_factor(weight: u64, total: u64) -> f32 {
    (weight as f64 / total as f64) as f32
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
    device: Option<&dyn DeviceGradSum<B>>,
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

    let on_device = device.is_some();

    // pass 1
    let mut passes = Vec::with_capacity(local.len());
    for (i, b) in local.iter().enumerate() {
        passes.push(replica_pass(
            be,
            net,
            b.as_ref(),
            first + i,
            &mut rngs[i],
            frozen,
            &has,
            &head,
            on_device,
        )?);
    }
    let (r1, g1) = reduce_round(be, net, &has, len, ar, device, passes)?;
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
    let (e, grad_norm) = sam_perturb(be, net, &g1, &has, opt.cfg.rho);
    drop(g1);

    // pass 2 (replica 0 also hands over its BN running statistics)
    let mut passes = Vec::with_capacity(local.len());
    for (i, b) in local.iter().enumerate() {
        let mut p = replica_pass(
            be,
            net,
            b.as_ref(),
            first + i,
            &mut rngs[i],
            frozen,
            &has,
            &head,
            on_device,
        )?;
        if first + i == 0 {
            p.contribution.meta.extend(BnState::take(be, net).to_meta());
        }
        passes.push(p);
    }
    let (r2, g2) = reduce_round(be, net, &has, len, ar, device, passes)?;
    if first > 0 {
        let bn = r2
            .metas
            .first()
            .and_then(|m| BnState::from_meta(be, net, m.get(8..).unwrap_or(&[])))
            .context("internal: replica 0 sent no BN running statistics")?;
        bn.restore(be, net);
    }
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Barrier, Mutex};

    use kernels::CpuBackend;
    use model::config::ModelConfig;
    use model::network::Mode;
    use model::safetensors_io::{read_safetensors, HostTensor, StateDict};
    use model::train::OptimConfig;
    use pipeline::allreduce::LocalReduce;

    use super::*;

    fn fixture(name: &str) -> StateDict {
        let dir = match std::env::var("FAKESTORMER_FIXTURES") {
            Ok(p) => PathBuf::from(p),
            Err(_) => ["../shared/fixtures", "../../shared/fixtures"]
                .iter()
                .map(|up| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(up))
                .find(|p| p.join("tiny_io.safetensors").exists())
                .expect("golden fixtures not found: set FAKESTORMER_FIXTURES"),
        };
        read_safetensors(&dir.join(name)).unwrap()
    }

    fn f32s(sd: &StateDict, key: &str) -> Vec<f32> {
        match &sd[key] {
            HostTensor::F32 { data, .. } => data.clone(),
            HostTensor::I64 { data, .. } => data.iter().map(|&v| v as f32).collect(),
        }
    }

    /// The golden 2-clip batch split into its clips (one per replica).
    fn clips() -> [TrainBatch; 2] {
        let fx = fixture("tiny_grads.safetensors");
        let (x, hm, mask, tl, y) = (
            f32s(&fx, "x"),
            f32s(&fx, "hm_target"),
            f32s(&fx, "mask_out_p"),
            f32s(&fx, "temp_loc_target"),
            f32s(&fx, "labels"),
        );
        let half = |v: &[f32], i: usize| v[i * v.len() / 2..(i + 1) * v.len() / 2].to_vec();
        std::array::from_fn(|i| TrainBatch {
            x: half(&x, i),
            batch: 1,
            labels: half(&y, i),
            hm_target: half(&hm, i),
            mask: half(&mask, i),
            temp_loc_target: half(&tl, i).iter().map(|&v| f64::from(v)).collect(),
        })
    }

    fn net() -> (Network<CpuBackend>, Optimizer<CpuBackend>) {
        let be = CpuBackend;
        let mut n = Network::new(&be, ModelConfig::tiny(), Mode::Compat).unwrap();
        n.load_state_dict(&be, &fixture("tiny_weights.safetensors"))
            .unwrap();
        let opt = Optimizer::new(
            &be,
            &n,
            OptimConfig {
                lr: 1e-3,
                ..OptimConfig::default()
            },
        );
        (n, opt)
    }

    /// Ranks that meet at a barrier: each posts its part, then every rank reads all of them.
    struct Meeting<T> {
        slots: Mutex<Vec<Option<T>>>,
        barrier: Barrier,
    }

    impl<T: Clone> Meeting<T> {
        fn new(n: usize) -> Arc<Self> {
            Arc::new(Self {
                slots: Mutex::new(vec![None; n]),
                barrier: Barrier::new(n),
            })
        }
        fn exchange(&self, rank: usize, mine: T) -> Vec<T> {
            self.slots.lock().unwrap()[rank] = Some(mine);
            self.barrier.wait();
            let all = self
                .slots
                .lock()
                .unwrap()
                .iter()
                .flatten()
                .cloned()
                .collect();
            self.barrier.wait(); // nobody posts the next round before everyone has read
            all
        }
    }

    /// The timely cluster's semantics across threads: every rank gets every replica's weight
    /// and meta in rank order and the weighted mean summed in rank order.
    struct ThreadReduce {
        rank: usize,
        meeting: Arc<Meeting<Contribution>>,
    }

    impl AllReduce for ThreadReduce {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            2
        }
        fn all_reduce(
            &mut self,
            len: usize,
            mut local: Vec<Contribution>,
        ) -> Result<Reduced, pipeline::allreduce::AllReduceError> {
            let all = self.meeting.exchange(self.rank, local.remove(0));
            LocalReduce.all_reduce(len, all)
        }
    }

    /// NCCL's job on the host: rank 0's buffers plus rank 1's (a 2-rank ring adds the two).
    struct ThreadSum {
        rank: usize,
        meeting: Arc<Meeting<Vec<Vec<f32>>>>,
        calls: Mutex<usize>,
    }

    impl DeviceGradSum<CpuBackend> for ThreadSum {
        fn sum_in_place(&self, _be: &CpuBackend, grads: &mut [Vec<f32>]) -> anyhow::Result<()> {
            *self.calls.lock().unwrap() += 1;
            let all = self.meeting.exchange(self.rank, grads.to_vec());
            for (k, g) in grads.iter_mut().enumerate() {
                for (i, v) in g.iter_mut().enumerate() {
                    *v = all[0][k][i] + all[1][k][i];
                }
            }
            Ok(())
        }
    }

    type Steps = Vec<[Option<TrainBatch>; 2]>;

    /// Two steps: both replicas with a clip, then replica 1 empty (weight 0).
    fn steps() -> Steps {
        let [a, b] = clips();
        vec![[Some(a.clone()), Some(b)], [Some(a), None]]
    }

    fn params(n: &Network<CpuBackend>) -> Vec<Vec<f32>> {
        n.weights
            .params
            .iter()
            .chain(&n.weights.buffers)
            .cloned()
            .collect()
    }

    /// The device path (weights and metadata through the round, gradients scaled by
    /// `f32(w/Σw)` and summed by the device collective) on two ranks gives the weights of the
    /// host path with both replicas in one process: each product is the same f32 and a 2-rank
    /// sum is one commutative addition, so the values are equal (compared with `==`: the
    /// device sum of two `-0.0` products keeps the sign, the host path's does not).
    #[test]
    fn device_sum_on_two_ranks_equals_the_host_path() {
        let be = CpuBackend;
        let steps = steps();
        let (mut n, mut opt) = net();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut want = Vec::new();
        for s in &steps {
            let r = replicated_sam_step(
                &be,
                &mut n,
                &mut opt,
                s,
                0,
                2,
                &mut rng,
                false,
                &mut LocalReduce,
                None,
            )
            .unwrap()
            .unwrap();
            want.push(r);
        }
        let want_params = params(&n);

        let meta = Meeting::new(2);
        let sums = Meeting::new(2);
        let steps = Arc::new(steps);
        let ranks: Vec<_> = (0..2)
            .map(|rank| {
                let (meta, sums, steps) = (meta.clone(), sums.clone(), steps.clone());
                std::thread::spawn(move || {
                    let be = CpuBackend;
                    let (mut n, mut opt) = net();
                    let mut rng = ChaCha8Rng::seed_from_u64(5);
                    let mut ar = ThreadReduce {
                        rank,
                        meeting: meta,
                    };
                    let sum = ThreadSum {
                        rank,
                        meeting: sums,
                        calls: Mutex::new(0),
                    };
                    let mut got = Vec::new();
                    for s in steps.iter() {
                        let local = [s[rank].clone()];
                        let r = replicated_sam_step(
                            &be,
                            &mut n,
                            &mut opt,
                            &local,
                            rank,
                            2,
                            &mut rng,
                            false,
                            &mut ar,
                            Some(&sum),
                        )
                        .unwrap()
                        .unwrap();
                        got.push(r);
                    }
                    let calls = *sum.calls.lock().unwrap();
                    (params(&n), got, calls)
                })
            })
            .collect();
        for (rank, h) in ranks.into_iter().enumerate() {
            let (p, got, calls) = h.join().unwrap();
            assert_eq!(calls, 4, "rank {rank}: two device sums per step");
            assert_eq!(p.len(), want_params.len());
            let mut moved = 0;
            for (k, (a, b)) in p.iter().zip(&want_params).enumerate() {
                assert!(a == b, "rank {rank}: parameter/buffer {k} differs");
                moved += a.len();
            }
            assert!(moved > 0);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.replica_clips, w.replica_clips);
                assert_eq!(
                    (g.loss, g.loss_pass2, g.grad_norm, g.correct),
                    (w.loss, w.loss_pass2, w.grad_norm, w.correct),
                    "rank {rank}"
                );
            }
        }
        assert_eq!(want[1].replica_clips, vec![1, 0]);
        // the steps did change the weights (the comparison above is not between two inits)
        let (init, _) = net();
        assert_ne!(params(&init), want_params);
    }

    #[test]
    fn mean_factor_is_the_host_paths_factor() {
        // weighted_mean_into of one-hot parts returns exactly the factor it multiplies by
        for (w, t) in [(1u64, 2u64), (1, 3), (2, 3), (5, 7), (3, 3), (1, 1000)] {
            let mut out = [0.0f32];
            let one = [1.0f32];
            let zero = [0.0f32];
            pipeline::allreduce::weighted_mean_into(&mut out, [(w, &one[..]), (t - w, &zero[..])]);
            assert_eq!(out[0].to_bits(), mean_factor(w, t).to_bits(), "{w}/{t}");
        }
    }
}
