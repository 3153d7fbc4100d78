//! The local stage chain of one timely worker: one thread per stage worker, bounded queues between
//! stages, item-affine routing.
//!
//! All records of an item go to the same worker of each stage (by ordinal), so a stage instance
//! sees an item's records in order and an end-of-item marker can follow them. That gives sinks a
//! place to commit (`finish_item`) and the chain a completion record per item, and it keeps every
//! output independent of thread counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::stage::{AnyRecord, BuildContext, DynStage, ItemInfo, RecordNotes, StageFactory};

/// How many skip reasons per stage and item the report keeps verbatim (the rest are counted).
const KEEP_REASONS: usize = 5;

enum Msg {
    Record(Arc<Item>, AnyRecord),
    End(Arc<Item>),
}

/// Per-item bookkeeping shared by the threads that touch the item.
struct Item {
    info: ItemInfo,
    state: Mutex<ItemState>,
}

#[derive(Default)]
struct ItemState {
    failures: Vec<Failure>,
    stages: Vec<StageItemStats>,
    counters: BTreeMap<String, u64>,
}

/// A record the item could not get past.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub stage: String,
    pub reason: String,
}

/// One item's traffic through one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageItemStats {
    pub records_in: u64,
    pub records_out: u64,
    pub failed: u64,
    pub skipped: u64,
    /// First few skip reasons, verbatim.
    pub skip_reasons: Vec<String>,
    /// Time spent in this stage's code for this item (excluded from determinism checks).
    pub busy_ns: u64,
}

/// What the chain reports when an item has left the last stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub ordinal: u64,
    pub id: String,
    pub failures: Vec<Failure>,
    pub stages: Vec<StageItemStats>,
    pub counters: BTreeMap<String, u64>,
}

impl Completion {
    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
}

/// Live counters of one stage, read by progress bars and the final chain summary.
#[derive(Debug, Default)]
pub struct StageLive {
    pub name: String,
    pub capacity: usize,
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub failed: AtomicU64,
    /// Records currently queued in front of the stage (sum over its workers' queues).
    pub queued: AtomicUsize,
    /// Largest true queue depth (sum of the worker queues' lengths) seen right after a send.
    pub peak_queued: AtomicUsize,
}

/// Records alive anywhere in the chain (queued, being handled, or blocked on a full queue): the
/// quantity that bounds memory.
#[derive(Debug, Default)]
pub struct ChainLive {
    pub alive: AtomicUsize,
    pub peak_alive: AtomicUsize,
}

impl ChainLive {
    fn born(&self) {
        let a = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_alive.fetch_max(a, Ordering::SeqCst);
    }

    fn consumed(&self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A stage ready to start: a factory per worker thread.
#[derive(Clone)]
pub struct StagePlan {
    pub name: String,
    pub workers: usize,
    pub capacity: usize,
    pub build: StageFactory,
}

/// Splits a stage's capacity over its workers' queues so the sum never exceeds it.
fn queue_capacities(capacity: usize, workers: usize) -> Vec<usize> {
    let base = capacity / workers;
    let extra = capacity % workers;
    (0..workers)
        .map(|w| (base + usize::from(w < extra)).max(1))
        .collect()
}

struct Inlet {
    senders: Vec<Sender<Msg>>,
    live: Arc<StageLive>,
}

impl Inlet {
    fn route(&self, item: &Item) -> usize {
        (item.info.ordinal % self.senders.len() as u64) as usize
    }

    /// Records the true depth of this stage's queues (the channels' own lengths).
    fn note_depth(&self) {
        let depth: usize = self.senders.iter().map(|s| s.len()).sum();
        self.live.peak_queued.fetch_max(depth, Ordering::SeqCst);
    }

    /// Blocking send: this is where a slow stage holds back the ones before it.
    fn send(&self, msg: Msg) {
        let ix = match &msg {
            Msg::Record(i, _) | Msg::End(i) => self.route(i),
        };
        // Counted before the send so the receiver's decrement can never run first.
        self.live.queued.fetch_add(1, Ordering::SeqCst);
        if self.senders[ix].send(msg).is_err() {
            self.live.queued.fetch_sub(1, Ordering::SeqCst);
        }
        self.note_depth();
    }

    fn try_send(&self, msg: Msg) -> Result<(), Msg> {
        let ix = match &msg {
            Msg::Record(i, _) | Msg::End(i) => self.route(i),
        };
        self.live.queued.fetch_add(1, Ordering::SeqCst);
        match self.senders[ix].try_send(msg) {
            Ok(()) => {
                self.note_depth();
                Ok(())
            }
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                self.live.queued.fetch_sub(1, Ordering::SeqCst);
                Err(m)
            }
        }
    }
}

/// A running chain.
pub struct Chain {
    inlet: Option<Inlet>,
    pending: std::collections::VecDeque<Msg>,
    completions: Receiver<Completion>,
    threads: Vec<JoinHandle<Result<(), String>>>,
    pub live: Vec<Arc<StageLive>>,
    pub chain_live: Arc<ChainLive>,
    admitted: u64,
    completed: u64,
}

impl Chain {
    /// Builds one instance per worker thread of every stage and starts the threads. `on_complete`
    /// is called (from a chain thread) after each completion is queued, to wake the caller.
    pub fn start(
        plans: &[StagePlan],
        ctx: &BuildContext,
        on_complete: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Self, String> {
        assert!(!plans.is_empty(), "a chain has at least its sink");
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let live: Vec<Arc<StageLive>> = plans
            .iter()
            .map(|p| {
                Arc::new(StageLive {
                    name: p.name.clone(),
                    capacity: p.capacity,
                    ..Default::default()
                })
            })
            .collect();
        // Build every instance first, so a bad parameter fails before any thread runs.
        let mut instances: Vec<Vec<Box<dyn DynStage>>> = Vec::new();
        let mut worker_ix = ctx.worker * 1000;
        for p in plans {
            let mut v = Vec::new();
            for _ in 0..p.workers {
                let mut c = ctx.clone();
                c.worker = worker_ix;
                worker_ix += 1;
                v.push((p.build)(&c).map_err(|e| format!("stage `{}`: {e}", p.name))?);
            }
            instances.push(v);
        }
        // Queues: stage s has one queue per worker.
        let mut inlets = Vec::new();
        let mut receivers = Vec::new();
        for (p, l) in plans.iter().zip(&live) {
            let (txs, rxs): (Vec<_>, Vec<_>) = queue_capacities(p.capacity, p.workers)
                .into_iter()
                .map(bounded::<Msg>)
                .unzip();
            inlets.push(Inlet {
                senders: txs,
                live: l.clone(),
            });
            receivers.push(rxs);
        }
        let n = plans.len();
        let chain_live = Arc::new(ChainLive::default());
        let mut threads = Vec::new();
        let mut inlets_iter: Vec<Option<Inlet>> = inlets.into_iter().map(Some).collect();
        let first = inlets_iter[0].take();
        for (s, (stage_instances, rxs)) in instances.into_iter().zip(receivers).enumerate() {
            // Every worker of stage s shares the inlet of stage s+1.
            let next: Option<Arc<Inlet>> = if s + 1 < n {
                inlets_iter[s + 1].take().map(Arc::new)
            } else {
                None
            };
            for (w, (stage, rx)) in stage_instances.into_iter().zip(rxs).enumerate() {
                let next = next.clone();
                let me = live[s].clone();
                let done = done_tx.clone();
                let wake = on_complete.clone();
                let name = plans[s].name.clone();
                let nstages = n;
                let cl = chain_live.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("{name}-{w}"))
                    .spawn(move || {
                        run_worker(s, nstages, stage, rx, next, me, cl, done, wake);
                        Ok(())
                    })
                    .map_err(|e| format!("cannot start a thread: {e}"))?;
                threads.push(handle);
            }
        }
        Ok(Self {
            inlet: first,
            pending: Default::default(),
            completions: done_rx,
            threads,
            live,
            chain_live,
            admitted: 0,
            completed: 0,
        })
    }

    /// Queues an item for admission; it enters the chain as queue space allows (`pump`).
    pub fn admit(&mut self, info: ItemInfo, payload: AnyRecord, nstages: usize) {
        let item = Arc::new(Item {
            info,
            state: Mutex::new(ItemState {
                stages: vec![StageItemStats::default(); nstages],
                ..Default::default()
            }),
        });
        self.pending.push_back(Msg::Record(item.clone(), payload));
        self.pending.push_back(Msg::End(item));
        self.admitted += 1;
    }

    /// Moves pending items into the first queue without blocking; returns how many are waiting.
    pub fn pump(&mut self) -> usize {
        if let Some(inlet) = &self.inlet {
            while let Some(msg) = self.pending.pop_front() {
                // Counted before the send: the stage may consume the record before we return.
                let is_record = matches!(msg, Msg::Record(..));
                if is_record {
                    self.chain_live.born();
                }
                if let Err(msg) = inlet.try_send(msg) {
                    if is_record {
                        self.chain_live.consumed();
                    }
                    self.pending.push_front(msg);
                    break;
                }
            }
        }
        self.pending.len()
    }

    /// Drops items not yet admitted into the first queue (Ctrl-C); returns their ids. An item
    /// whose record already entered keeps its end marker, so it still completes.
    pub fn drop_pending(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut keep = std::collections::VecDeque::new();
        let mut dropping = std::collections::HashSet::new();
        for m in self.pending.drain(..) {
            match m {
                Msg::Record(item, _) => {
                    dropping.insert(item.info.ordinal);
                }
                Msg::End(item) if dropping.contains(&item.info.ordinal) => {
                    out.push((item.info.ordinal, item.info.row.id.clone()));
                }
                end @ Msg::End(_) => keep.push_back(end),
            }
        }
        self.pending = keep;
        self.admitted -= out.len() as u64;
        out
    }

    pub fn try_completion(&mut self) -> Option<Completion> {
        let c = self.completions.try_recv().ok()?;
        self.completed += 1;
        Some(c)
    }

    /// Items admitted and not yet completed.
    pub fn in_flight(&self) -> u64 {
        self.admitted - self.completed
    }

    /// Closes the chain and waits for its threads (call once nothing is in flight).
    pub fn close(&mut self) -> Result<(), String> {
        self.inlet = None;
        let mut err = None;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => err = Some(e),
                Err(_) => err = Some("a stage thread panicked".to_owned()),
            }
        }
        err.map_or(Ok(()), Err)
    }
}

#[allow(clippy::too_many_arguments)]
fn run_worker(
    s: usize,
    nstages: usize,
    mut stage: Box<dyn DynStage>,
    rx: Receiver<Msg>,
    next: Option<Arc<Inlet>>,
    me: Arc<StageLive>,
    chain: Arc<ChainLive>,
    done: Sender<Completion>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    for msg in rx.iter() {
        me.queued.fetch_sub(1, Ordering::SeqCst);
        match msg {
            Msg::Record(item, payload) => {
                me.records_in.fetch_add(1, Ordering::Relaxed);
                let (notes, result, start) = guarded(
                    &item,
                    &next,
                    &chain,
                    |st, info, emit, notes| st.process(payload, info, emit, notes),
                    &mut stage,
                );
                chain.consumed();
                record(&item, s, &me, &notes, result, start, true);
            }
            Msg::End(item) => {
                let failed = !item.state.lock().expect("item lock").failures.is_empty();
                let (notes, result, start) = guarded(
                    &item,
                    &next,
                    &chain,
                    |st, info, emit, notes| st.finish_item(failed, info, emit, notes),
                    &mut stage,
                );
                record(&item, s, &me, &notes, result, start, false);
                match &next {
                    Some(n) => n.send(Msg::End(item)),
                    None => {
                        let st = std::mem::take(&mut *item.state.lock().expect("item lock"));
                        let c = Completion {
                            ordinal: item.info.ordinal,
                            id: item.info.row.id.clone(),
                            failures: st.failures,
                            stages: if st.stages.is_empty() {
                                vec![StageItemStats::default(); nstages]
                            } else {
                                st.stages
                            },
                            counters: st.counters,
                        };
                        let _ = done.send(c);
                        wake();
                    }
                }
            }
        }
    }
}

/// Runs one stage call with an emitter into the next queue, timing it and turning a panic into a
/// failure of this record (a panicking stage must not take the run down).
fn guarded(
    item: &Arc<Item>,
    next: &Option<Arc<Inlet>>,
    chain: &ChainLive,
    call: impl FnOnce(
        &mut Box<dyn DynStage>,
        &ItemInfo,
        &mut dyn FnMut(AnyRecord),
        &mut RecordNotes,
    ) -> Result<(), crate::stage::StageError>,
    stage: &mut Box<dyn DynStage>,
) -> (RecordNotes, Result<(), crate::stage::StageError>, Instant) {
    let mut notes = RecordNotes::default();
    let start = Instant::now();
    let mut emit = |out: AnyRecord| {
        if let Some(n) = next {
            chain.born();
            n.send(Msg::Record(item.clone(), out));
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        call(stage, &item.info, &mut emit, &mut notes)
    }))
    .unwrap_or_else(|p| Err(panic_reason(p).into()));
    (notes, result, start)
}

fn panic_reason(p: Box<dyn std::any::Any + Send>) -> String {
    let msg = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    format!("stage panicked: {msg}")
}

fn record(
    item: &Item,
    s: usize,
    me: &StageLive,
    notes: &RecordNotes,
    result: Result<(), crate::stage::StageError>,
    start: Instant,
    is_record: bool,
) {
    me.records_out.fetch_add(notes.emitted, Ordering::Relaxed);
    let mut st = item.state.lock().expect("item lock");
    let stats = &mut st.stages[s];
    if is_record {
        stats.records_in += 1;
    }
    stats.records_out += notes.emitted;
    stats.busy_ns += start.elapsed().as_nanos() as u64;
    stats.skipped += notes.skipped.len() as u64;
    for r in &notes.skipped {
        if stats.skip_reasons.len() < KEEP_REASONS {
            stats.skip_reasons.push(r.clone());
        }
    }
    if let Err(e) = result {
        stats.failed += 1;
        me.failed.fetch_add(1, Ordering::Relaxed);
        st.failures.push(Failure {
            stage: me.name.clone(),
            reason: e.0,
        });
    }
    for (k, v) in &notes.counters {
        *st.counters.entry(k.clone()).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::queue_capacities;

    #[test]
    fn capacities_split_without_exceeding_the_total() {
        assert_eq!(queue_capacities(16, 3), vec![6, 5, 5]);
        assert_eq!(queue_capacities(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(queue_capacities(10, 1), vec![10]);
    }
}
