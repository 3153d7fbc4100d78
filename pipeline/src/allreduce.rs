//! Weighted all-reduce of f32 vectors across the processes of a timely cluster (data-parallel
//! training: one replica per process, every replica ends each round with the same bytes).
//!
//! One round is a reduce-scatter followed by an all-gather over contiguous slices of the vector:
//! rank `k` sends slice `c` of its vector to rank `c`, rank `c` forms the weighted sum of slice
//! `c` over all ranks, then sends it to every rank. Each rank therefore sends and receives about
//! twice the vector's bytes per round, whatever the number of ranks. Slice owners sum in rank
//! order with [`weighted_mean_into`] (the same function an in-process reduction uses), so the
//! result does not depend on message arrival order and equals the single-process result bit for
//! bit. A small per-rank `meta` vector (losses, counters, BN statistics) rides along and is
//! gathered, not reduced.
//!
//! A rank whose step fails sends an abort record before leaving; the others stop their current
//! round with its message. A rank that dies makes timely's TCP receive thread panic ("timely
//! communication error"), which poisons the local worker: the run ends with that panic. A round
//! that makes no progress for the configured timeout ends with [`AllReduceError::Timeout`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use crate::engine::{ClusterOptions, EngineError};

/// Why a round could not complete.
#[derive(Debug, thiserror::Error)]
pub enum AllReduceError {
    #[error("no all-reduce progress for {0:?}: a peer process is stuck or gone (raise --peer-timeout for long validations)")]
    Timeout(Duration),
    #[error("rank {rank} stopped the run: {reason}")]
    PeerAborted { rank: usize, reason: String },
    #[error("round {round}: {0}", round = .1)]
    Protocol(String, u64),
    #[error("contribution of {got} values, expected {expected} (or 0 with weight 0)")]
    Length { got: usize, expected: usize },
}

/// One replica's input to a round.
#[derive(Debug, Clone, Default)]
pub struct Contribution {
    /// Weight (clips of the replica); 0 = contributes nothing (`values` may then be empty).
    pub weight: u64,
    /// The vector to average.
    pub values: Vec<f32>,
    /// Gathered as is (every rank gets every replica's meta).
    pub meta: Vec<f64>,
}

/// A round's result, identical on every rank.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduced {
    /// `Σ_r (w_r / Σw) · values_r`, summed in replica order (zeros if `Σw = 0`).
    pub values: Vec<f32>,
    /// Every replica's weight, in replica order.
    pub weights: Vec<u64>,
    /// Every replica's meta, in replica order.
    pub metas: Vec<Vec<f64>>,
}

/// The arithmetic of a reduction, shared by the in-process and cluster paths so both give the
/// same bits: `out = 0; for r in order: out += f32(w_r / Σw) · v_r` (no fused multiply-add:
/// Rust never contracts f32 expressions). Parts with weight 0 are skipped.
pub fn weighted_mean_into<'a>(out: &mut [f32], parts: impl IntoIterator<Item = (u64, &'a [f32])>) {
    let parts: Vec<(u64, &[f32])> = parts.into_iter().collect();
    let total: u64 = parts.iter().map(|p| p.0).sum();
    out.fill(0.0);
    if total == 0 {
        return;
    }
    for (w, v) in parts {
        if w == 0 {
            continue;
        }
        let s = (w as f64 / total as f64) as f32;
        for (o, x) in out.iter_mut().zip(v) {
            *o += s * *x;
        }
    }
}

/// Something that all-reduces a round of contributions (this process's replicas, in order).
pub trait AllReduce {
    /// Index of this process's first replica.
    fn rank(&self) -> usize;
    /// Total replicas.
    fn ranks(&self) -> usize;
    /// Reduces `local` (this process's replicas) with every other process's, vectors of `len`.
    fn all_reduce(
        &mut self,
        len: usize,
        local: Vec<Contribution>,
    ) -> Result<Reduced, AllReduceError>;
}

/// All replicas in this process (`replicas = R` with one process).
pub struct LocalReduce;

impl AllReduce for LocalReduce {
    fn rank(&self) -> usize {
        0
    }
    fn ranks(&self) -> usize {
        1
    }
    fn all_reduce(
        &mut self,
        len: usize,
        local: Vec<Contribution>,
    ) -> Result<Reduced, AllReduceError> {
        check_len(len, &local)?;
        let mut values = vec![0.0; len];
        weighted_mean_into(
            &mut values,
            local.iter().map(|c| (c.weight, c.values.as_slice())),
        );
        Ok(Reduced {
            values,
            weights: local.iter().map(|c| c.weight).collect(),
            metas: local.into_iter().map(|c| c.meta).collect(),
        })
    }
}

fn check_len(len: usize, parts: &[Contribution]) -> Result<(), AllReduceError> {
    for c in parts {
        if c.values.len() != len && !(c.weight == 0 && c.values.is_empty()) {
            return Err(AllReduceError::Length {
                got: c.values.len(),
                expected: len,
            });
        }
    }
    Ok(())
}

/// Bounds of slice `c` of `n` over a vector of `len`.
fn slice(len: usize, n: usize, c: usize) -> std::ops::Range<usize> {
    (len * c / n)..(len * (c + 1) / n)
}

/// What crosses the wire: a slice (stage 1: a rank's slice to its owner; stage 2: an owner's
/// reduced slice to everyone), or an abort notice.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    to: u32,
    from: u32,
    weight: u64,
    values: Vec<f32>,
    meta: Vec<f64>,
    abort: Option<String>,
}

type PartInput = InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Part>>>;

/// Per-round state shared between the operators and the driving loop (one worker thread).
#[derive(Default)]
struct State {
    /// Stage-1 results: every rank's (weight, meta), by round.
    gathered: BTreeMap<u64, (Vec<u64>, Vec<Vec<f64>>)>,
    /// Stage-2 results: the full reduced vector, by round.
    reduced: BTreeMap<u64, Vec<f32>>,
    aborted: Option<(usize, String)>,
    error: Option<String>,
}

/// The cluster all-reduce of one timely worker (one process = one worker = one replica).
pub struct ClusterReduce<'w> {
    worker: &'w mut timely::worker::Worker,
    input: PartInput,
    probe: ProbeHandle<u64>,
    state: Rc<RefCell<State>>,
    round: u64,
    timeout: Duration,
}

impl<'w> ClusterReduce<'w> {
    fn new(worker: &'w mut timely::worker::Worker, timeout: Duration) -> Self {
        let mut input: PartInput = InputHandle::new();
        let probe = ProbeHandle::new();
        let state: Rc<RefCell<State>> = Default::default();
        let peers = worker.peers();
        let me = worker.index();
        let (s1, s2) = (state.clone(), state.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            input
                .to_stream(scope)
                .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<Part>>, _, _, _>(
                    Exchange::new(|p: &Part| u64::from(p.to)),
                    "ReduceScatter",
                    move |_cap, _info| {
                        let mut stash: BTreeMap<u64, (timely::dataflow::operators::Capability<u64>, Vec<Part>)> =
                            BTreeMap::new();
                        move |(input, frontier), output| {
                            input.for_each(|cap, data| {
                                if let Some(c) = cap.retain_least(0) {
                                    let t = *c.time();
                                    stash.entry(t).or_insert_with(|| (c, Vec::new())).1.append(data);
                                }
                            });
                            let ready: Vec<u64> = stash
                                .keys()
                                .copied()
                                .filter(|t| !frontier.less_equal(t))
                                .collect();
                            for t in ready {
                                let (cap, mut parts) = stash.remove(&t).expect("listed");
                                let mut st = s1.borrow_mut();
                                if let Some(a) = parts.iter().find(|p| p.abort.is_some()) {
                                    st.aborted = Some((a.from as usize, a.abort.clone().unwrap_or_default()));
                                    continue;
                                }
                                parts.sort_by_key(|p| p.from);
                                let from: Vec<u32> = parts.iter().map(|p| p.from).collect();
                                if from != (0..peers as u32).collect::<Vec<_>>() {
                                    st.error = Some(format!(
                                        "rank {me} got slices from ranks {from:?}, expected one from each of 0..{peers}"
                                    ));
                                    continue;
                                }
                                let len = parts.iter().map(|p| p.values.len()).max().unwrap_or(0);
                                let mut sum = vec![0.0f32; len];
                                weighted_mean_into(
                                    &mut sum,
                                    parts.iter().map(|p| (p.weight, p.values.as_slice())),
                                );
                                st.gathered.insert(
                                    t,
                                    (
                                        parts.iter().map(|p| p.weight).collect(),
                                        parts.iter_mut().map(|p| std::mem::take(&mut p.meta)).collect(),
                                    ),
                                );
                                let mut session = output.session(&cap);
                                for d in 0..peers as u32 {
                                    session.give(Part {
                                        to: d,
                                        from: me as u32,
                                        weight: 0,
                                        values: sum.clone(),
                                        meta: Vec::new(),
                                        abort: None,
                                    });
                                }
                            }
                        }
                    },
                )
                .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Exchange::new(|p: &Part| u64::from(p.to)),
                    "AllGather",
                    move |_cap, _info| {
                        let mut stash: BTreeMap<u64, Vec<Part>> = BTreeMap::new();
                        move |(input, frontier), _output| {
                            input.for_each(|cap, data| {
                                if let Some(t) = cap.least() {
                                    stash.entry(*t).or_default().append(data);
                                }
                            });
                            let ready: Vec<u64> = stash
                                .keys()
                                .copied()
                                .filter(|t| !frontier.less_equal(t))
                                .collect();
                            for t in ready {
                                let mut parts = stash.remove(&t).expect("listed");
                                parts.sort_by_key(|p| p.from);
                                let full: Vec<f32> =
                                    parts.into_iter().flat_map(|p| p.values).collect();
                                s2.borrow_mut().reduced.insert(t, full);
                            }
                        }
                    },
                )
                .probe_with(&probe);
        });
        Self {
            worker,
            input,
            probe,
            state,
            round: 0,
            timeout,
        }
    }

    /// Tells every other rank that this one stops (best effort: flushes for up to a second).
    fn abort(&mut self, reason: &str) {
        let me = self.worker.index() as u32;
        for d in 0..self.worker.peers() as u32 {
            if d != me {
                self.input.send(Part {
                    to: d,
                    from: me,
                    weight: 0,
                    values: Vec::new(),
                    meta: Vec::new(),
                    abort: Some(reason.to_owned()),
                });
            }
        }
        self.round += 1;
        self.input.advance_to(self.round);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(1) {
            self.worker.step_or_park(Some(Duration::from_millis(20)));
        }
    }
}

impl AllReduce for ClusterReduce<'_> {
    fn rank(&self) -> usize {
        self.worker.index()
    }
    fn ranks(&self) -> usize {
        self.worker.peers()
    }
    fn all_reduce(
        &mut self,
        len: usize,
        local: Vec<Contribution>,
    ) -> Result<Reduced, AllReduceError> {
        check_len(len, &local)?;
        let round = self.round;
        let n = self.worker.peers();
        let me = self.worker.index() as u32;
        let [c] = <[Contribution; 1]>::try_from(local).map_err(|v| {
            AllReduceError::Protocol(
                format!("a cluster rank holds exactly one replica, got {}", v.len()),
                round,
            )
        })?;
        for d in 0..n {
            let values = if c.values.is_empty() {
                Vec::new()
            } else {
                c.values[slice(len, n, d)].to_vec()
            };
            self.input.send(Part {
                to: d as u32,
                from: me,
                weight: c.weight,
                values,
                meta: c.meta.clone(),
                abort: None,
            });
        }
        self.round += 1;
        self.input.advance_to(self.round);
        let mut last = Instant::now();
        let mut seen = 0usize;
        while self.probe.less_than(&self.round) {
            {
                let st = self.state.borrow();
                if let Some((rank, reason)) = &st.aborted {
                    return Err(AllReduceError::PeerAborted {
                        rank: *rank,
                        reason: reason.clone(),
                    });
                }
                if let Some(e) = &st.error {
                    return Err(AllReduceError::Protocol(e.clone(), round));
                }
                let now = st.gathered.len() + st.reduced.len();
                if now != seen {
                    seen = now;
                    last = Instant::now();
                }
            }
            if last.elapsed() > self.timeout {
                return Err(AllReduceError::Timeout(self.timeout));
            }
            self.worker.step_or_park(Some(Duration::from_millis(20)));
        }
        let mut st = self.state.borrow_mut();
        if let Some((rank, reason)) = &st.aborted {
            return Err(AllReduceError::PeerAborted {
                rank: *rank,
                reason: reason.clone(),
            });
        }
        let (weights, metas) = st
            .gathered
            .remove(&round)
            .ok_or_else(|| AllReduceError::Protocol("no gathered metadata".into(), round))?;
        let values = st
            .reduced
            .remove(&round)
            .ok_or_else(|| AllReduceError::Protocol("no reduced vector".into(), round))?;
        if values.len() != len {
            return Err(AllReduceError::Protocol(
                format!("reduced vector has {} values, expected {len}", values.len()),
                round,
            ));
        }
        Ok(Reduced {
            values,
            weights,
            metas,
        })
    }
}

/// Runs `f` on every process of the cluster with a [`ClusterReduce`] (one timely worker per
/// process). If `f` fails, the other ranks are told (they stop with its message). Returns `f`'s
/// result on this process; a worker panic (e.g. a peer that disconnected) is an error.
pub fn execute<T, E, F>(
    cluster: &ClusterOptions,
    timeout: Duration,
    f: F,
) -> Result<Result<T, E>, EngineError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: Fn(&mut dyn AllReduce) -> Result<T, E> + Send + Sync + 'static,
{
    if cluster.workers != 1 {
        return Err(EngineError::Cluster(format!(
            "training runs one replica per process: use --workers 1 (got {})",
            cluster.workers
        )));
    }
    let config = cluster.timely_config()?;
    let watch = crate::connect::ConnectWatch::start(cluster);
    let guards = timely::execute(config, move |worker| {
        watch.connected();
        let mut ar = ClusterReduce::new(worker, timeout);
        let r = f(&mut ar);
        if let Err(e) = &r {
            // best effort: a peer that is already gone makes the flush panic; keep our error
            let reason = e.to_string();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ar.abort(&reason)));
        }
        r
    })
    .map_err(EngineError::Cluster)?;
    // When a peer's connection breaks, timely's network threads panic and joining them panics
    // in the guards' drop: turn that into an error naming the likely cause.
    let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || guards.join()))
        .map_err(|_| {
            EngineError::Dataflow(
                "the connection to a peer process broke (see the timely communication error above): \
                 a peer probably died; rerun every process with --resume auto"
                    .into(),
            )
        })?;
    let mut out = None;
    for r in joined {
        out = Some(r.map_err(|panic| {
            EngineError::Dataflow(format!(
                "the training worker stopped ({panic}); a peer process probably died or disconnected"
            ))
        })?);
    }
    out.ok_or_else(|| EngineError::Dataflow("no worker ran".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(seed: u32, len: usize, weight: u64) -> Contribution {
        Contribution {
            weight,
            values: (0..len)
                .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 7.0 - 70.0)
                .collect(),
            meta: vec![seed as f64],
        }
    }

    #[test]
    fn weighted_mean_matches_f64_within_rounding() {
        let parts = [
            contribution(1, 97, 3),
            contribution(2, 97, 0),
            contribution(3, 97, 5),
        ];
        let r = LocalReduce.all_reduce(97, parts.to_vec()).unwrap();
        for j in 0..97 {
            let want = (3.0 * parts[0].values[j] as f64 + 5.0 * parts[2].values[j] as f64) / 8.0;
            assert!(
                (r.values[j] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{j}"
            );
        }
        assert_eq!(r.weights, vec![3, 0, 5]);
        assert_eq!(r.metas, vec![vec![1.0], vec![2.0], vec![3.0]]);
    }

    #[test]
    fn slices_cover_the_vector_and_reduce_like_the_whole() {
        let parts = [
            contribution(7, 1001, 2),
            contribution(8, 1001, 3),
            contribution(9, 1001, 1),
        ];
        let whole = LocalReduce.all_reduce(1001, parts.to_vec()).unwrap().values;
        let mut joined = Vec::new();
        for c in 0..3 {
            let r = slice(1001, 3, c);
            let mut out = vec![0.0; r.len()];
            weighted_mean_into(
                &mut out,
                parts.iter().map(|p| (p.weight, &p.values[r.clone()])),
            );
            joined.extend(out);
        }
        assert_eq!(joined.len(), 1001);
        assert!(joined
            .iter()
            .zip(&whole)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let e = LocalReduce.all_reduce(10, vec![contribution(1, 9, 1)]);
        assert!(matches!(
            e,
            Err(AllReduceError::Length {
                got: 9,
                expected: 10
            })
        ));
        let empty = Contribution {
            weight: 0,
            values: vec![],
            meta: vec![],
        };
        assert!(LocalReduce
            .all_reduce(10, vec![empty, contribution(1, 10, 2)])
            .is_ok());
    }

    /// Two timely workers in one process exercise the same dataflow as two processes: over
    /// several rounds (one with an empty replica) every worker gets the in-process result bit
    /// for bit, with every replica's weight and meta.
    #[test]
    fn dataflow_rounds_equal_the_local_reduction_on_every_worker() {
        let len = 1003;
        let rounds: Vec<[Contribution; 2]> = (0..3u32)
            .map(|k| {
                let w1 = if k == 1 { 0 } else { 3 };
                let mut c1 = contribution(10 + k, len, w1);
                if w1 == 0 {
                    c1.values.clear();
                }
                [contribution(20 + k, len, 5), c1]
            })
            .collect();
        let want: Vec<Reduced> = rounds
            .iter()
            .map(|r| LocalReduce.all_reduce(len, r.to_vec()).unwrap())
            .collect();
        let rounds = std::sync::Arc::new(rounds);
        let guards = timely::execute(timely::Config::process(2), move |worker| {
            let mut ar = ClusterReduce::new(worker, Duration::from_secs(60));
            let me = ar.rank();
            rounds
                .iter()
                .map(|r| ar.all_reduce(len, vec![r[me].clone()]).unwrap())
                .collect::<Vec<_>>()
        })
        .unwrap();
        for got in guards.join() {
            let got = got.unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.weights, w.weights);
                assert_eq!(g.metas, w.metas);
                assert!(g
                    .values
                    .iter()
                    .zip(&w.values)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
                assert_eq!(g.values.len(), len);
            }
        }
    }

    #[test]
    fn all_weights_zero_gives_zeros() {
        let mut out = vec![1.0; 4];
        weighted_mean_into(&mut out, [(0u64, &[1.0f32, 2.0, 3.0, 4.0][..])]);
        assert_eq!(out, vec![0.0; 4]);
    }
}
