//! Incremental runs: an output folder remembers what each finished output was made from, and a
//! later run over a changed manifest or spec redoes only what changed.
//!
//! The output folder's index (`index.jsonl`) is a collection of
//! `(item id, input content hash, manifest-row hash, stage-config hash) → output`. A run computes
//! the current collection from the manifest and the resolved spec and diffs it against the index
//! with differential-dataflow ([`plan`]): ids only in the manifest are *added*, ids only in the
//! index are *retired*, ids in both with a different fingerprint (or a missing output) are
//! *changed*, the rest are *unchanged*. Only added and changed items go through the pipeline;
//! retired outputs are moved to a trash folder and deleted; a changed item's stale output is
//! replaced by the sink's atomic commit (or removed, when the redo fails). Failed items are never
//! recorded, so the next run retries them.
//!
//! Content hashes are sha256 over the whole input file. The index keeps each file's size and
//! modification time next to its hash, and a later run re-reads only files whose size or mtime
//! changed (`rehash` re-reads all), so only the first run over a corpus pays the full read.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{load_items, run_items, ClusterOptions, EngineError, RunOptions};
use crate::manifest::ManifestRow;
use crate::registry::Registry;
use crate::report::RunReport;
use crate::spec::{LoadedSpec, Spec};

/// The index of an output folder, one [`IndexEntry`] per line, sorted by id.
pub const INDEX_FILE: &str = "index.jsonl";
/// Where retired outputs are moved (atomically) before being deleted.
pub const TRASH_DIR: &str = ".trash";

/// Whether `out` is managed by an index: stages must then not skip items on their own (the index
/// decides what is done; an output that exists may be stale).
pub fn manages(out: &Path) -> bool {
    out.join(INDEX_FILE).is_file()
}

#[derive(Debug, thiserror::Error)]
pub enum IncrementalError {
    #[error("{path}:{line}: {reason} (delete the index to rebuild every output)")]
    Index {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("planning dataflow: {0}")]
    Plan(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IncrementalError + '_ {
    move |source| IncrementalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an item's output was made from. Equal fingerprints mean an identical output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// sha256 (hex) of the input file; empty when the file could not be read.
    pub content: String,
    /// sha256 of the manifest row without `path` and `sha256` (label, split, method... reach the
    /// output; where the file lives does not).
    pub row: String,
    /// [`config_hash`] of the spec.
    pub config: String,
}

/// One finished item in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub id: String,
    /// The item's output, relative to the output folder.
    pub output: String,
    pub content_sha256: String,
    pub row_sha256: String,
    pub config_sha256: String,
    /// Size and mtime of the input when it was hashed: unchanged ones skip re-hashing.
    pub size: u64,
    pub mtime_ns: u64,
    /// Hash of the full spec of the run that made the output (provenance only).
    pub spec_sha256: String,
}

impl IndexEntry {
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            content: self.content_sha256.clone(),
            row: self.row_sha256.clone(),
            config: self.config_sha256.clone(),
        }
    }
}

/// Reads an index (missing file: empty). Duplicate ids and outputs that could leave the output
/// folder are refused: retiring trusts these paths.
pub fn read_index(path: &Path) -> Result<BTreeMap<String, IndexEntry>, IncrementalError> {
    let mut out = BTreeMap::new();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(path)(e)),
    };
    let bad = |line: usize, reason: String| IncrementalError::Index {
        path: path.to_path_buf(),
        line,
        reason,
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: IndexEntry = serde_json::from_str(&line).map_err(|e| bad(i + 1, e.to_string()))?;
        if !is_inside(Path::new(&e.output)) {
            return Err(bad(
                i + 1,
                format!(
                    "output `{}` is not a path inside the output folder",
                    e.output
                ),
            ));
        }
        if out.contains_key(&e.id) {
            return Err(bad(i + 1, format!("duplicate id `{}`", e.id)));
        }
        out.insert(e.id.clone(), e);
    }
    Ok(out)
}

/// Writes the index atomically (temp file + rename), sorted by id.
pub fn write_index(
    path: &Path,
    index: &BTreeMap<String, IndexEntry>,
) -> Result<(), IncrementalError> {
    let mut text = String::new();
    for e in index.values() {
        text.push_str(&serde_json::to_string(e).expect("index entries serialise"));
        text.push('\n');
    }
    crate::atomic_file::write_atomic(path, text.as_bytes()).map_err(io_err(path))
}

/// A relative path of plain components only (no `..`, no root).
fn is_inside(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Hash of everything in the spec that decides an item's output: the seed and each stage's and
/// the sink's kind and parameters, less the parameters `neutral` names as output-neutral
/// (thread counts). Worker counts, capacities, names, the output folder and the source section
/// do not count (which items are run is the diff's business, not the config's).
pub fn config_hash(spec: &Spec, neutral: &[(&str, &str)]) -> String {
    let stages: Vec<(String, toml::Value)> = spec
        .stages
        .iter()
        .chain(std::iter::once(&spec.sink))
        .map(|st| {
            let mut params = st.params.clone();
            if let toml::Value::Table(t) = &mut params {
                for (kind, key) in neutral {
                    if *kind == st.kind {
                        t.remove(*key);
                    }
                }
            }
            (st.kind.clone(), params)
        })
        .collect();
    let text = serde_json::to_string(&(spec.seed, stages)).expect("spec values serialise");
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Hash of a manifest row without `path` and `sha256`.
pub fn row_hash(row: &ManifestRow) -> String {
    let mut v = serde_json::to_value(row).expect("manifest rows serialise");
    if let Some(m) = v.as_object_mut() {
        m.remove("path");
        m.remove("sha256");
    }
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// The current state of an item's input.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Current {
    pub fingerprint: Fingerprint,
    pub size: u64,
    pub mtime_ns: u64,
}

impl Current {
    /// The index entry recording that `id`'s output at `output` was made from this input.
    pub fn entry(&self, id: &str, output: &Path, spec_sha256: &str) -> IndexEntry {
        IndexEntry {
            id: id.to_owned(),
            output: output.display().to_string(),
            content_sha256: self.fingerprint.content.clone(),
            row_sha256: self.fingerprint.row.clone(),
            config_sha256: self.fingerprint.config.clone(),
            size: self.size,
            mtime_ns: self.mtime_ns,
            spec_sha256: spec_sha256.to_owned(),
        }
    }
}

/// sha256 of the file at `path`, reusing `cached` (hash, size, mtime) when size and mtime agree.
fn stamp(path: &Path, cached: Option<(&str, u64, u64)>) -> Result<(String, u64, u64), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let size = meta.len();
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    if let Some((hash, s, m)) = cached {
        if s == size && m == mtime_ns && mtime_ns != 0 {
            return Ok((hash.to_owned(), size, mtime_ns));
        }
    }
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size, mtime_ns))
}

/// What to do with one item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Decision {
    Add(Current),
    /// With the reasons (what changed).
    Redo(Current, Vec<String>),
    Keep(Current),
    Retire,
}

/// The diff between an output folder's index and the current manifest + spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ids not in the index (new, or failed before).
    pub add: BTreeMap<String, Current>,
    /// Ids whose fingerprint changed or whose output is missing, with the reasons.
    pub redo: BTreeMap<String, (Current, Vec<String>)>,
    pub keep: BTreeMap<String, Current>,
    /// Ids in the index but no longer in the (filtered) manifest.
    pub retire: BTreeSet<String>,
}

/// Manifest side of the diff: (path to hash, row hash).
type RowIn = (String, String);
/// Index side: (fingerprint, size, mtime, output).
type PrevIn = (Fingerprint, u64, u64, String);

/// What [`plan`] compares against the index.
struct PlanInputs {
    rows: Vec<(String, RowIn)>,
    prev: Vec<(String, PrevIn)>,
}

/// What the current fingerprints are computed against.
#[derive(Debug, Clone)]
pub struct PlanContext {
    /// Folder the manifest's relative paths resolve against.
    pub manifest_dir: PathBuf,
    /// The output folder (an unchanged item's output must still be there).
    pub out: PathBuf,
    /// [`config_hash`] of the spec.
    pub config: String,
    pub output_of: fn(&str) -> PathBuf,
    /// Re-hash every input (see [`IncrementalOptions::rehash`]).
    pub rehash: bool,
    /// Planning threads (timely workers of this process).
    pub workers: usize,
}

/// Per-worker decisions with their multiplicities, as the dataflow emits them.
type Decisions = Vec<((String, Decision), isize)>;

/// Diffs `rows` (the filtered manifest) against `index` as a differential-dataflow computation
/// on `ctx.workers` threads: the two sides are collections keyed by id, exchanged by id so each
/// worker hashes the input files of its own share; `antijoin` gives added and retired ids, `join`
/// pairs the rest, whose fingerprints are compared.
pub fn plan(
    rows: &[ManifestRow],
    index: &BTreeMap<String, IndexEntry>,
    ctx: &PlanContext,
) -> Result<Plan, IncrementalError> {
    let inputs = PlanInputs {
        rows: rows
            .iter()
            .map(|r| {
                let path = r.resolved_path(&ctx.manifest_dir).display().to_string();
                (r.id.clone(), (path, row_hash(r)))
            })
            .collect(),
        prev: index
            .values()
            .map(|e| {
                let v = (e.fingerprint(), e.size, e.mtime_ns, e.output.clone());
                (e.id.clone(), v)
            })
            .collect(),
    };
    let (config, out, output_of, rehash, workers) = (
        ctx.config.clone(),
        ctx.out.clone(),
        ctx.output_of,
        ctx.rehash,
        ctx.workers,
    );
    let shared = Arc::new(Mutex::new(Some(inputs)));
    let timely_config = if workers <= 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    };
    let guards = timely::execute(timely_config, move |worker| {
        let config = config.clone();
        let config2 = config.clone();
        let out = out.clone();
        let found: Rc<RefCell<Decisions>> = Default::default();
        let sink = found.clone();
        let (mut rows_in, mut prev_in, probe) = worker.dataflow::<u32, _, _>(|scope| {
            let (rows_in, rows) = scope.new_collection::<(String, RowIn), isize>();
            let (prev_in, prev) = scope.new_collection::<(String, PrevIn), isize>();
            let row_ids = rows.clone().map(|(id, _)| id);
            let prev_ids = prev.clone().map(|(id, _)| id);
            // Consolidated before hashing, so an id cancelled by the antijoin is never hashed.
            let added =
                rows.clone()
                    .antijoin(prev_ids)
                    .consolidate()
                    .map(move |(id, (path, row))| {
                        let (content, size, mtime_ns) =
                            stamp(Path::new(&path), None).unwrap_or_default();
                        let fingerprint = Fingerprint {
                            content,
                            row,
                            config: config.clone(),
                        };
                        let cur = Current {
                            fingerprint,
                            size,
                            mtime_ns,
                        };
                        (id, Decision::Add(cur))
                    });
            let retired = prev
                .clone()
                .antijoin(row_ids)
                .consolidate()
                .map(|(id, _)| (id, Decision::Retire));
            let both = rows.join_map(prev, move |id, (path, row), (old, size, mtime, output)| {
                let cached = (!rehash).then_some((old.content.as_str(), *size, *mtime));
                let (content, size, mtime_ns) = stamp(Path::new(path), cached).unwrap_or_default();
                let cur = Current {
                    fingerprint: Fingerprint {
                        content,
                        row: row.clone(),
                        config: config2.clone(),
                    },
                    size,
                    mtime_ns,
                };
                let mut why = Vec::new();
                if cur.fingerprint.content.is_empty() {
                    why.push("input unreadable".to_owned());
                } else if cur.fingerprint.content != old.content {
                    why.push("input content changed".to_owned());
                }
                if cur.fingerprint.row != old.row {
                    why.push("manifest row changed".to_owned());
                }
                if cur.fingerprint.config != old.config {
                    why.push("stage config changed".to_owned());
                }
                if Path::new(output) != output_of(id) {
                    why.push("output location changed".to_owned());
                } else if !out.join(output).exists() {
                    why.push("output missing".to_owned());
                }
                let d = if why.is_empty() {
                    Decision::Keep(cur)
                } else {
                    Decision::Redo(cur, why)
                };
                (id.clone(), d)
            });
            let probe = added
                .concat(retired)
                .concat(both)
                .inspect(move |(d, _t, r)| sink.borrow_mut().push((d.clone(), *r)))
                .probe()
                .0;
            (rows_in, prev_in, probe)
        });
        if worker.index() == 0 {
            let inputs = shared.lock().ok().and_then(|mut g| g.take());
            if let Some(inputs) = inputs {
                for r in inputs.rows {
                    rows_in.insert(r);
                }
                for p in inputs.prev {
                    prev_in.insert(p);
                }
            }
        }
        rows_in.close();
        prev_in.close();
        while !probe.done() {
            worker.step();
        }
        let v = std::mem::take(&mut *found.borrow_mut());
        v
    })
    .map_err(IncrementalError::Plan)?;
    // Each decision must come out exactly once; anything else is a bug, not a plan.
    let mut net: BTreeMap<(String, Decision), isize> = BTreeMap::new();
    for r in guards.join() {
        for (d, n) in r.map_err(IncrementalError::Plan)? {
            *net.entry(d).or_default() += n;
        }
    }
    let mut plan = Plan::default();
    for ((id, d), n) in net {
        if n == 0 {
            continue;
        }
        if n != 1 {
            return Err(IncrementalError::Plan(format!(
                "item `{id}` came out with multiplicity {n}"
            )));
        }
        match d {
            Decision::Add(c) => {
                plan.add.insert(id, c);
            }
            Decision::Redo(c, why) => {
                plan.redo.insert(id, (c, why));
            }
            Decision::Keep(c) => {
                plan.keep.insert(id, c);
            }
            Decision::Retire => {
                plan.retire.insert(id);
            }
        }
    }
    Ok(plan)
}

/// How a sink lays out per-item outputs, for the index to name and retire them.
#[derive(Debug, Clone, Copy)]
pub struct OutputLayout {
    /// Output of item `id`, relative to the output folder.
    pub output_of: fn(&str) -> PathBuf,
    /// Every item output present under the output folder (relative paths), so outputs no index
    /// entry accounts for (left by a crash or an older tool) are removed, not kept as stale.
    pub existing: fn(&Path) -> std::io::Result<Vec<PathBuf>>,
    /// `(stage kind, parameter)` pairs that do not change outputs (left out of the config hash).
    pub neutral_params: &'static [(&'static str, &'static str)],
}

/// Per-run switches of an incremental run.
#[derive(Debug, Clone, Default)]
pub struct IncrementalOptions {
    /// Re-read every input file instead of trusting an unchanged size + mtime.
    pub rehash: bool,
}

/// One changed item and why it was redone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub id: String,
    pub reasons: Vec<String>,
}

/// The incremental part of `report.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Index file, and the config hash this run's outputs are recorded under.
    pub index: String,
    pub config_sha256: String,
    pub added: u64,
    pub changed: u64,
    pub retired: u64,
    pub unchanged: u64,
    /// Items that went through the pipeline (added + changed).
    pub processed: u64,
    /// Of the processed items, those that failed (not recorded: the next run retries them).
    pub failed: u64,
    /// Outputs found on disk that no index entry accounted for, removed.
    pub orphans_removed: u64,
    pub added_items: Vec<String>,
    pub changed_items: Vec<Changed>,
    pub retired_items: Vec<String>,
}

/// Moves `out/rel` into the trash (one rename, so readers see it whole or not at all), deletes
/// it there, and removes the folders it leaves empty.
pub fn retire_output(out: &Path, rel: &Path) -> Result<bool, IncrementalError> {
    if !is_inside(rel) {
        return Ok(false);
    }
    let path = out.join(rel);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(false);
    }
    let trash = out.join(TRASH_DIR);
    std::fs::create_dir_all(&trash).map_err(io_err(&trash))?;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dest = trash.join(format!("{}-{n}", std::process::id()));
    std::fs::rename(&path, &dest).map_err(io_err(&path))?;
    let removed = if dest.is_dir() {
        std::fs::remove_dir_all(&dest)
    } else {
        std::fs::remove_file(&dest)
    };
    removed.map_err(io_err(&dest))?;
    let _ = std::fs::remove_dir(&trash);
    let mut cur = path.parent();
    while let Some(d) = cur {
        if d == out || !d.starts_with(out) || std::fs::remove_dir(d).is_err() {
            break;
        }
        cur = d.parent();
    }
    Ok(true)
}

/// Runs `spec` incrementally over its output folder: plans against the index, retires removed
/// items, runs only added and changed ones, and records the finished ones. Returns the report
/// (with [`RunReport::incremental`]) on process 0, `None` on the others.
pub fn run(
    spec: &LoadedSpec,
    registry: Arc<Registry>,
    cluster: &ClusterOptions,
    opts: &RunOptions,
    layout: &OutputLayout,
    inc: &IncrementalOptions,
) -> Result<Option<RunReport>, IncrementalError> {
    if cluster.process != 0 {
        // Process 0 plans and hands out the items; the others run what reaches their workers.
        return Ok(run_items(spec, Vec::new(), registry, cluster, opts)?);
    }
    let out = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&spec.spec.output));
    std::fs::create_dir_all(&out).map_err(io_err(&out))?;
    let index_path = out.join(INDEX_FILE);
    let mut index = read_index(&index_path)?;
    let rows = load_items(spec)?;
    let config = config_hash(&spec.spec, layout.neutral_params);
    let manifest_dir = spec
        .manifest_path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let ctx = PlanContext {
        manifest_dir,
        out: out.clone(),
        config: config.clone(),
        output_of: layout.output_of,
        rehash: inc.rehash,
        workers: cluster.workers,
    };
    let plan = plan(&rows, &index, &ctx)?;
    tracing::info!(
        added = plan.add.len(),
        changed = plan.redo.len(),
        retired = plan.retire.len(),
        unchanged = plan.keep.len(),
        "incremental plan"
    );

    for id in &plan.retire {
        if let Some(e) = index.remove(id) {
            retire_output(&out, Path::new(&e.output))?;
        }
    }
    // Outputs no entry accounts for: unknown provenance, so never kept.
    let known: BTreeSet<PathBuf> = index.values().map(|e| PathBuf::from(&e.output)).collect();
    let mut orphans = 0;
    for rel in (layout.existing)(&out).map_err(io_err(&out))? {
        if !known.contains(&rel) && retire_output(&out, &rel)? {
            orphans += 1;
        }
    }
    // Written before the run: the folder is now index-managed (stages stop skipping on their own).
    write_index(&index_path, &index)?;

    let todo: BTreeSet<&String> = plan.add.keys().chain(plan.redo.keys()).collect();
    let todo_rows: Vec<ManifestRow> = rows
        .iter()
        .filter(|r| todo.contains(&r.id))
        .cloned()
        .collect();
    let mut report = if todo_rows.is_empty() && cluster.processes == 1 {
        // Nothing to do: skip building the stages (model loading costs seconds).
        RunReport::empty(spec, cluster)
    } else {
        run_items(spec, todo_rows, registry, cluster, opts)?
            .ok_or_else(|| IncrementalError::Plan("process 0 got no report".into()))?
    };

    let mut failed = 0;
    for item in &report.items {
        let cur = plan
            .add
            .get(&item.id)
            .or_else(|| plan.redo.get(&item.id).map(|(c, _)| c));
        let Some(cur) = cur else { continue };
        if item.status == "ok" {
            let e = cur.entry(&item.id, &(layout.output_of)(&item.id), &spec.hash);
            index.insert(item.id.clone(), e);
        } else {
            failed += 1;
            // A stale output must not outlive a failed redo.
            let old = index.remove(&item.id).map(|e| PathBuf::from(e.output));
            retire_output(&out, &old.unwrap_or_else(|| (layout.output_of)(&item.id)))?;
        }
    }
    // Unchanged items whose file was touched: remember the new stat so it is not re-hashed.
    for (id, cur) in &plan.keep {
        if let Some(e) = index.get_mut(id) {
            e.size = cur.size;
            e.mtime_ns = cur.mtime_ns;
        }
    }
    write_index(&index_path, &index)?;

    report.incremental = Some(Summary {
        index: index_path.display().to_string(),
        config_sha256: config,
        added: plan.add.len() as u64,
        changed: plan.redo.len() as u64,
        retired: plan.retire.len() as u64,
        unchanged: plan.keep.len() as u64,
        processed: report.items.len() as u64,
        failed,
        orphans_removed: orphans,
        added_items: plan.add.keys().cloned().collect(),
        changed_items: plan
            .redo
            .iter()
            .map(|(id, (_, why))| Changed {
                id: id.clone(),
                reasons: why.clone(),
            })
            .collect(),
        retired_items: plan.retire.iter().cloned().collect(),
    });
    let report_path = out.join("report.json");
    report.write(&report_path).map_err(io_err(&report_path))?;
    Ok(Some(report))
}
