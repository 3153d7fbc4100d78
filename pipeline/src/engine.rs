//! Runs a spec as a timely dataflow.
//!
//! Manifest rows enter at global worker 0, are exchanged to workers by a stable hash of the item id,
//! and each worker feeds its own local stage chain (threads + bounded queues, see `chain`). Only
//! small records cross workers: manifest rows on the way in, completion records and chain
//! summaries on the way out (to worker 0, which writes the run report). Frames never do.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use crate::chain::{Chain, Completion, StagePlan};
use crate::manifest::{read_manifest, ManifestRow};
use crate::progress::Progress;
use crate::provenance::Provenance;
use crate::registry::Registry;
use crate::report::{ChainSummary, RunReport, StagePeak};
use crate::spec::LoadedSpec;
use crate::stage::{BuildContext, ItemInfo};

/// How the run is spread over threads, processes and machines (timely's cluster model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// timely workers per process, each with its own stage chain.
    pub workers: usize,
    pub processes: usize,
    /// This process's index in `0..processes`.
    pub process: usize,
    /// One `host:port` per line, one line per process, in process order.
    pub hostfile: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
        }
    }
}

/// A fatal error: the run stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cluster configuration: {0}")]
    Cluster(String),
    #[error("manifest: {0}")]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("stage setup: {0}")]
    Setup(String),
    #[error("output folder {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataflow: {0}")]
    Dataflow(String),
}

impl ClusterOptions {
    /// Builds timely's configuration from our flags (timely's own argv parser uses `-h` for the
    /// hostfile, which would collide with `--help`). Refuses hostfiles that disagree with
    /// `processes`, since a silent mismatch would partition items wrongly.
    pub fn timely_config(&self) -> Result<timely::Config, EngineError> {
        if self.workers == 0 {
            return Err(EngineError::Cluster("--workers must be at least 1".into()));
        }
        if self.processes == 0 || self.process >= self.processes {
            return Err(EngineError::Cluster(format!(
                "--process {} is not in 0..{} (--processes)",
                self.process, self.processes
            )));
        }
        if self.processes == 1 {
            return Ok(if self.workers == 1 {
                timely::Config::thread()
            } else {
                timely::Config::process(self.workers)
            });
        }
        let addresses = match &self.hostfile {
            Some(p) => read_hostfile(p)?,
            None => (0..self.processes)
                .map(|i| format!("127.0.0.1:{}", 2101 + i))
                .collect(),
        };
        if addresses.len() != self.processes {
            return Err(EngineError::Cluster(format!(
                "hostfile lists {} addresses but --processes is {}",
                addresses.len(),
                self.processes
            )));
        }
        Ok(timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        })
    }
}

/// Reads `host:port` lines (blank lines and `#` comments ignored), checking each parses.
pub fn read_hostfile(path: &Path) -> Result<Vec<String>, EngineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Cluster(format!("hostfile {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let ok = line
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(EngineError::Cluster(format!(
                "{}:{}: `{line}` is not host:port",
                path.display(),
                i + 1
            )));
        }
        out.push(line.to_owned());
    }
    Ok(out)
}

/// Per-run switches that are not part of the spec (they do not change results).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides the spec's `output`.
    pub out_dir: Option<PathBuf>,
    pub quiet: bool,
    /// Set by the Ctrl-C handler: stop admitting items, finish those in flight.
    pub cancel: Arc<AtomicBool>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            out_dir: None,
            quiet: true,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Records flowing from the chains to worker 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Event {
    Item(Completion),
    NotStarted(u64, String),
    Chain(ChainSummary),
}

/// Stable item-to-worker routing (FNV-1a of the id): independent of manifest order and of how
/// many workers there are, so adding items never moves the others' partition membership logic.
pub fn route_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Reads and filters the manifest of a spec.
pub fn load_items(spec: &LoadedSpec) -> Result<Vec<ManifestRow>, EngineError> {
    let rows = read_manifest(&spec.manifest_path())?;
    let s = &spec.spec.source;
    let mut rows: Vec<ManifestRow> = rows
        .into_iter()
        .filter(|r| s.split.as_ref().is_none_or(|x| &r.split == x))
        .filter(|r| s.dataset.as_ref().is_none_or(|x| &r.dataset == x))
        .filter(|r| s.label.is_none_or(|x| r.label == x))
        .collect();
    if let Some(l) = s.limit {
        rows.truncate(l);
    }
    Ok(rows)
}

/// Runs a spec. Returns the report on the process that holds global worker 0 (process 0),
/// `None` on the others.
pub fn run(
    spec: &LoadedSpec,
    registry: Arc<Registry>,
    cluster: &ClusterOptions,
    opts: &RunOptions,
) -> Result<Option<RunReport>, EngineError> {
    let rows = if cluster.process == 0 {
        load_items(spec)?
    } else {
        Vec::new()
    };
    run_items(spec, rows, registry, cluster, opts)
}

/// Runs a spec over `rows` instead of its whole manifest (incremental runs pass only the items to
/// add or redo). Only process 0's rows are used; the other processes pass an empty list.
pub fn run_items(
    spec: &LoadedSpec,
    rows: Vec<ManifestRow>,
    registry: Arc<Registry>,
    cluster: &ClusterOptions,
    opts: &RunOptions,
) -> Result<Option<RunReport>, EngineError> {
    let config = cluster.timely_config()?;
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&spec.spec.output));
    std::fs::create_dir_all(&out_dir).map_err(|source| EngineError::Output {
        path: out_dir.clone(),
        source,
    })?;
    let provenance = Provenance::new(&spec.spec.name, &spec.hash, spec.spec.seed);
    let manifest_dir = spec
        .manifest_path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();

    // Stage plans shared by all workers; each builds its own instances.
    let mut plans = Vec::new();
    for st in spec
        .spec
        .stages
        .iter()
        .chain(std::iter::once(&spec.spec.sink))
    {
        let reg = registry.clone();
        let kind = st.kind.clone();
        let params = st.params.clone();
        if reg.get(&kind).is_none() {
            return Err(EngineError::Setup(format!("unknown stage kind `{kind}`")));
        }
        plans.push(StagePlan {
            name: kind.clone(),
            workers: st.workers,
            capacity: st.capacity,
            build: Arc::new(move |ctx: &BuildContext| {
                (reg.get(&kind).expect("checked").build)(&params, ctx)
            }),
        });
    }

    let shared = Arc::new(Shared {
        rows: std::sync::Mutex::new(Some(rows)),
        plans,
        base_ctx: BuildContext {
            out_dir: out_dir.clone(),
            spec_dir: spec.dir.clone(),
            provenance: provenance.clone(),
            worker: 0,
            cancel: opts.cancel.clone(),
        },
        manifest_dir,
        quiet: opts.quiet,
        panicked: Arc::new(AtomicBool::new(false)),
    });

    let started = Instant::now();
    let started_at = crate::report::now_rfc3339();
    let watch = crate::connect::ConnectWatch::start(cluster);
    let guards = timely::execute(config, move |worker| {
        watch.connected();
        run_worker(worker, &shared)
    })
    .map_err(EngineError::Cluster)?;
    // When a peer process dies, timely's network threads panic and joining them panics in the
    // guards' drop: turn that into an error naming the likely cause (a rerun of an incremental
    // run continues from the committed items).
    let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || guards.join()))
        .map_err(|_| {
            EngineError::Dataflow(
                "the connection to a peer process broke (see the timely communication error above): \
                 a peer probably died; rerun every process (finished items are kept)"
                    .into(),
            )
        })?;
    let mut results = Vec::new();
    for r in joined {
        results.push(r.map_err(|panic| {
            EngineError::Dataflow(format!(
                "a worker stopped ({panic}); with several processes, a peer probably died"
            ))
        })??);
    }
    let collected: Vec<Event> = results.into_iter().flatten().collect();
    if cluster.process != 0 {
        return Ok(None);
    }
    let mut items = Vec::new();
    let mut not_started = Vec::new();
    let mut chains = Vec::new();
    for e in collected {
        match e {
            Event::Item(c) => items.push(c),
            Event::NotStarted(o, id) => not_started.push((o, id)),
            Event::Chain(c) => chains.push(c),
        }
    }
    let stage_names: Vec<String> = spec
        .spec
        .stages
        .iter()
        .chain(std::iter::once(&spec.spec.sink))
        .map(|s| s.kind.clone())
        .collect();
    let report = RunReport::assemble(
        spec,
        provenance,
        cluster,
        &stage_names,
        items,
        not_started,
        chains,
        started_at,
        started.elapsed(),
        opts.cancel.load(Ordering::SeqCst),
    );
    report
        .write(&out_dir.join("report.json"))
        .map_err(|source| EngineError::Output {
            path: out_dir.join("report.json"),
            source,
        })?;
    Ok(Some(report))
}

/// (ordinal, id, row as JSON) — see `run_worker` for why JSON.
type RowInput =
    InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<(u64, String, String)>>>;

/// Sets the flag if the owning worker thread unwinds.
struct PanicFlag(Arc<AtomicBool>);

impl Drop for PanicFlag {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

struct Shared {
    rows: std::sync::Mutex<Option<Vec<ManifestRow>>>,
    plans: Vec<StagePlan>,
    base_ctx: BuildContext,
    manifest_dir: PathBuf,
    quiet: bool,
    panicked: Arc<AtomicBool>,
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    shared: &Arc<Shared>,
) -> Result<Vec<Event>, EngineError> {
    let index = worker.index();
    let mut ctx = shared.base_ctx.clone();
    ctx.worker = index;
    let plans: Vec<StagePlan> = shared.plans.clone();
    let nstages = plans.len();

    // Rows cross workers as JSON text: the manifest format skips empty optional fields, which a
    // non-self-describing wire format (timely uses bincode) cannot read back.
    let mut input: RowInput = InputHandle::new();
    let probe = ProbeHandle::new();
    let collected: Rc<RefCell<Vec<Event>>> = Default::default();
    let setup_error: Rc<RefCell<Option<String>>> = Default::default();
    let progress = Rc::new(RefCell::new(None::<Progress>));

    let manifest_dir = shared.manifest_dir.clone();
    let quiet = shared.quiet;
    let sink_collected = collected.clone();
    let setup_err = setup_error.clone();
    let progress_in = progress.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        input
            .to_stream(scope)
            .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<Event>>, _, _, _>(
                Exchange::new(|(_, id, _): &(u64, String, String)| route_hash(id)),
                "StageChain",
                move |cap, info| {
                    let wake = scope.worker().sync_activator_for(info.address.to_vec());
                    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                        let _ = wake.activate();
                    });
                    let retry = scope.activator_for(info.address.clone());
                    let mut chain = match Chain::start(&plans, &ctx, wake) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            *setup_err.borrow_mut() = Some(e);
                            None
                        }
                    };
                    if let Some(c) = &chain {
                        if !quiet {
                            *progress_in.borrow_mut() = Some(Progress::new(index, &c.live));
                        }
                    }
                    let mut cap = Some(cap);
                    let cancel = ctx.cancel.clone();
                    move |(input, frontier), output| {
                        input.for_each(|_time, data| {
                            for (ordinal, id, json) in data.drain(..) {
                                let row: ManifestRow = match serde_json::from_str(&json) {
                                    Ok(r) => r,
                                    Err(_) => {
                                        if let Some(cp) = cap.as_ref() {
                                            output.session(cp).give(Event::NotStarted(ordinal, id));
                                        }
                                        continue;
                                    }
                                };
                                let info = ItemInfo {
                                    ordinal,
                                    row: row.clone(),
                                    manifest_dir: manifest_dir.clone(),
                                };
                                match chain.as_mut() {
                                    Some(c) => c.admit(info, Box::new(row), nstages),
                                    None => {
                                        if let Some(cp) = cap.as_ref() {
                                            output
                                                .session(cp)
                                                .give(Event::NotStarted(ordinal, row.id));
                                        }
                                    }
                                }
                            }
                        });
                        let Some(c) = chain.as_mut() else {
                            if frontier.is_empty() {
                                cap = None;
                            }
                            return;
                        };
                        // After Ctrl-C, items not yet in the chain (also ones still arriving
                        // from other workers) are reported as not started.
                        if cancel.load(Ordering::SeqCst) {
                            let dropped = c.drop_pending();
                            if let Some(cp) = cap.as_ref() {
                                let mut s = output.session(cp);
                                for (o, id) in dropped {
                                    s.give(Event::NotStarted(o, id));
                                }
                            }
                        }
                        // Records still waiting for room in the first queue: look again
                        // shortly. A completion would wake us, but none may be due (an item's
                        // end marker waits while the stage works on its record).
                        if c.pump() > 0 {
                            retry.activate_after(Duration::from_millis(2));
                        }
                        if let Some(cp) = cap.as_ref() {
                            let mut s = output.session(cp);
                            while let Some(done) = c.try_completion() {
                                s.give(Event::Item(done));
                            }
                        }
                        if frontier.is_empty() && c.in_flight() == 0 && cap.is_some() {
                            let close = c.close();
                            let summary = ChainSummary {
                                worker: index,
                                stages: c
                                    .live
                                    .iter()
                                    .map(|l| StagePeak {
                                        stage: l.name.clone(),
                                        capacity: l.capacity,
                                        peak_queued: l.peak_queued.load(Ordering::SeqCst),
                                    })
                                    .collect(),
                                peak_records_alive: c.chain_live.peak_alive.load(Ordering::SeqCst),
                                error: close.err(),
                            };
                            if let Some(cp) = cap.as_ref() {
                                output.session(cp).give(Event::Chain(summary));
                            }
                            cap = None;
                        }
                    }
                },
            )
            .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                Exchange::new(|_e: &Event| 0),
                "Collect",
                move |_cap, _info| {
                    move |(input, _frontier), _output| {
                        input.for_each(|_time, data| {
                            sink_collected.borrow_mut().extend(data.drain(..));
                        });
                    }
                },
            )
            .probe_with(&probe);
    });

    if index == 0 {
        let rows = shared
            .rows
            .lock()
            .map_err(|_| EngineError::Dataflow("poisoned".into()))?
            .take()
            .unwrap_or_default();
        for (i, row) in rows.into_iter().enumerate() {
            let json = serde_json::to_string(&row).expect("manifest rows serialise");
            input.send((i as u64, row.id, json));
        }
    }
    drop(input);
    // A worker that panics never releases its capabilities; the others would wait forever.
    // Each worker flags its own panic, and every worker stops when it sees the flag.
    let _panic_guard = PanicFlag(shared.panicked.clone());
    while !probe.done() {
        if shared.panicked.load(Ordering::SeqCst) {
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
            return Err(EngineError::Dataflow(
                "another worker of this process panicked; the run stopped".into(),
            ));
        }
        worker.step_or_park(Some(Duration::from_millis(20)));
        if let Some(p) = progress.borrow().as_ref() {
            p.tick();
        }
    }
    if let Some(p) = progress.borrow_mut().take() {
        p.finish();
    }
    if let Some(e) = setup_error.borrow_mut().take() {
        return Err(EngineError::Setup(e));
    }
    let out = std::mem::take(&mut *collected.borrow_mut());
    Ok(out)
}
