//! Engine behaviour with synthetic stages: backpressure and bounded memory under a slow sink,
//! per-record failures, identical outputs for any worker/process count.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pipeline::manifest::{write_manifest, ManifestRow};
use pipeline::{
    parse_spec, BuildContext, ClusterOptions, Params, Registry, RunOptions, Stage, StageContext,
    StageError,
};
use serde::{Deserialize, Serialize};

/// One number of an item; `k` is its position within the item.
struct Num {
    k: u32,
    value: u64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ExpandParams {
    per_item: u32,
}
impl Params for ExpandParams {}

/// Turns an item into `per_item` numbers; items whose id ends in "bad" fail outright.
struct Expand(u32);
impl Stage for Expand {
    type In = ManifestRow;
    type Out = Num;
    fn process(&mut self, row: ManifestRow, ctx: &mut StageContext<'_, Num>) -> Result<(), StageError> {
        if row.id.ends_with("bad") {
            return Err(StageError::new(format!("cannot expand {}", row.id)));
        }
        let seed = pipeline::engine::route_hash(&row.id);
        for k in 0..self.0 {
            ctx.emit(Num {
                k,
                value: seed.wrapping_mul(u64::from(k) + 1) % 1000,
            });
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct SquareParams {
    /// Values divisible by this fail the record (0 = never).
    fail_multiple: u64,
    /// Values divisible by this are skipped (0 = never).
    skip_multiple: u64,
}
impl Params for SquareParams {}

struct Square(SquareParams);
impl Stage for Square {
    type In = Num;
    type Out = Num;
    fn process(&mut self, n: Num, ctx: &mut StageContext<'_, Num>) -> Result<(), StageError> {
        if self.0.fail_multiple > 0 && n.value % self.0.fail_multiple == 0 && n.value > 0 {
            return Err(StageError::new(format!("value {} is poison", n.value)));
        }
        if self.0.skip_multiple > 0 && n.value % self.0.skip_multiple == 0 {
            ctx.skip(format!("value {} skipped", n.value));
            return Ok(());
        }
        ctx.emit(Num {
            k: n.k,
            value: n.value * n.value,
        });
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct CollectParams {
    /// Microseconds of simulated work per record.
    delay_us: u64,
}
impl Params for CollectParams {}

/// Writes `<id>.txt` with the item's numbers when the item is complete (not for failed items).
struct Collect {
    delay_us: u64,
    out: PathBuf,
    open: HashMap<String, Vec<(u32, u64)>>,
}
impl Stage for Collect {
    type In = Num;
    type Out = ();
    fn process(&mut self, n: Num, ctx: &mut StageContext<'_, ()>) -> Result<(), StageError> {
        if self.delay_us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(self.delay_us));
        }
        self.open
            .entry(ctx.item().id().to_owned())
            .or_default()
            .push((n.k, n.value));
        Ok(())
    }
    fn finish_item(&mut self, failed: bool, ctx: &mut StageContext<'_, ()>) -> Result<(), StageError> {
        let nums = self.open.remove(ctx.item().id()).unwrap_or_default();
        if failed {
            return Ok(());
        }
        let text: String = nums.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        pipeline::atomic_file::write_atomic(&self.out.join(format!("{}.txt", ctx.item().id())), text.as_bytes())
            .map_err(|e| StageError::new(e.to_string()))?;
        ctx.emit(());
        Ok(())
    }
}

fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.stage("expand", "item -> numbers", |p: &ExpandParams, _: &BuildContext| Ok(Expand(p.per_item)));
    r.stage("square", "number -> its square", |p: &SquareParams, _: &BuildContext| {
        Ok(Square(SquareParams {
            fail_multiple: p.fail_multiple,
            skip_multiple: p.skip_multiple,
        }))
    });
    r.sink("collect", "numbers -> <id>.txt", |p: &CollectParams, ctx: &BuildContext| {
        Ok(Collect {
            delay_us: p.delay_us,
            out: ctx.out_dir.clone(),
            open: HashMap::new(),
        })
    });
    Arc::new(r)
}

fn manifest(dir: &Path, n: usize, bad: &[usize]) -> PathBuf {
    let rows: Vec<ManifestRow> = (0..n)
        .map(|i| ManifestRow {
            id: if bad.contains(&i) { format!("v{i:04}-bad") } else { format!("v{i:04}") },
            path: format!("v{i}.mp4"),
            label: (i % 2) as u8,
            dataset: "synthetic".into(),
            split: "train".into(),
            method: None,
            identity: None,
            compression: None,
            sha256: None,
            extra: BTreeMap::new(),
        })
        .collect();
    let p = dir.join("m.jsonl");
    write_manifest(&p, &rows).unwrap();
    p
}

fn spec_text(per_item: u32, square_workers: usize, cap: usize, delay_us: u64, fail: u64, skip: u64) -> String {
    format!(
        r#"
name = "synthetic"
seed = 7
[source]
manifest = "m.jsonl"
[[stages]]
kind = "expand"
capacity = {cap}
params = {{ per_item = {per_item} }}
[[stages]]
kind = "square"
workers = {square_workers}
capacity = {cap}
params = {{ fail_multiple = {fail}, skip_multiple = {skip} }}
[sink]
kind = "collect"
capacity = {cap}
params = {{ delay_us = {delay_us} }}
"#
    )
}

fn run_in(dir: &Path, spec: &str, out: &str, cluster: ClusterOptions) -> Option<pipeline::report::RunReport> {
    let reg = registry();
    let loaded = parse_spec(&dir.join("s.toml"), spec, &reg).unwrap();
    let opts = RunOptions {
        out_dir: Some(dir.join(out)),
        ..Default::default()
    };
    pipeline::run(&loaded, reg, &cluster, &opts).unwrap()
}

fn outputs(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn slow_sink_backpressures_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    manifest(dir.path(), 60, &[]);
    let cap = 4;
    let spec = spec_text(100, 2, cap, 100, 0, 0);
    let report = run_in(dir.path(), &spec, "out", ClusterOptions::default()).unwrap();
    assert_eq!(report.counts.completed, 60);
    let total_records: u64 = 60 * 100;
    assert_eq!(report.stages[1].records_in, total_records);
    for s in &report.stages {
        assert!(
            s.peak_queued <= s.capacity,
            "{}: peak {} > capacity {}",
            s.stage,
            s.peak_queued,
            s.capacity
        );
    }
    // The sink is the bottleneck, so its queue must actually have filled up.
    assert_eq!(report.stages[2].peak_queued, cap, "backpressure never engaged");
    // Records alive anywhere: queues (3 stages x cap) plus per worker one being handled and one
    // blocked on send. 6000 records went through; at most this many existed at once.
    let workers = 1 + 2 + 1;
    let bound = 3 * cap + 2 * workers;
    assert!(
        report.peak_records_alive <= bound,
        "peak alive {} > bound {bound}",
        report.peak_records_alive
    );
    assert_eq!(outputs(&dir.path().join("out")).len(), 60);
}

#[test]
fn per_record_failures_are_reported_and_the_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    manifest(dir.path(), 40, &[3, 17]);
    let spec = spec_text(10, 2, 8, 0, 97, 89);
    let report = run_in(dir.path(), &spec, "out", ClusterOptions::default()).unwrap();
    assert_eq!(report.counts.total, 40);
    assert_eq!(report.counts.completed + report.counts.failed, 40);
    // The two "bad" items fail in `expand` with their reason.
    let expand_fail: Vec<_> = report.failed.iter().filter(|f| f.stage == "expand").collect();
    assert_eq!(expand_fail.len(), 2);
    assert!(expand_fail.iter().any(|f| f.item == "v0003-bad" && f.reason.contains("cannot expand v0003-bad")));
    // Poison values fail single records in `square`; those items are failed, others are fine.
    let square_fail: Vec<_> = report.failed.iter().filter(|f| f.stage == "square").collect();
    assert!(!square_fail.is_empty(), "the synthetic data should hit a poison value");
    for f in &square_fail {
        assert!(f.reason.starts_with("value ") && f.reason.ends_with(" is poison"));
    }
    // No output for failed items, one for every other.
    let outs = outputs(&dir.path().join("out"));
    assert_eq!(outs.len() as u64, report.counts.completed);
    for item in &report.items {
        assert_eq!(outs.contains_key(&format!("{}.txt", item.id)), item.status == "ok", "{}", item.id);
    }
    // Skips are counted with their reasons, and do not fail an item.
    let skipped: u64 = report.items.iter().map(|i| i.stages[1].skipped).sum();
    assert_eq!(skipped, report.stages[1].skipped);
    // Report on disk matches.
    let on_disk = pipeline::report::RunReport::read(&dir.path().join("out/report.json")).unwrap();
    assert_eq!(on_disk.items, report.items);
}

#[test]
fn outputs_are_identical_for_1_2_and_4_workers() {
    let dir = tempfile::tempdir().unwrap();
    manifest(dir.path(), 50, &[5]);
    let mut reference = None;
    for (workers, stage_workers) in [(1, 1), (2, 3), (4, 2)] {
        let spec = spec_text(20, stage_workers, 4, 0, 97, 89);
        let out = format!("out{workers}");
        let report = run_in(
            dir.path(),
            &spec,
            &out,
            ClusterOptions {
                workers,
                ..Default::default()
            },
        )
        .unwrap();
        let files = outputs(&dir.path().join(&out));
        let got = (files, report.items.clone(), report.failed.clone(), report.counts.clone());
        match &reference {
            None => reference = Some(got),
            Some(r) => assert!(r == &got, "{workers} workers differ from 1 worker"),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn two_processes_on_localhost_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    manifest(dir.path(), 30, &[7]);
    let spec = spec_text(15, 2, 4, 0, 97, 89);
    let single = run_in(dir.path(), &spec, "single", ClusterOptions::default()).unwrap();

    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|p| {
            let d = dir.path().to_path_buf();
            let s = spec.clone();
            let h = hostfile.clone();
            std::thread::spawn(move || {
                run_in(
                    &d,
                    &s,
                    "cluster",
                    ClusterOptions {
                        workers: 2,
                        processes: 2,
                        process: p,
                        hostfile: Some(h),
                    },
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results[1].is_none(), "only process 0 writes the report");
    let cluster = results[0].clone().unwrap();
    assert_eq!(cluster.items, single.items);
    assert_eq!(cluster.failed, single.failed);
    assert_eq!(cluster.cluster.processes, 2);
    assert_eq!(outputs(&dir.path().join("cluster")), outputs(&dir.path().join("single")));
}

#[test]
fn hostfile_that_disagrees_with_the_process_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, "127.0.0.1:4000\n127.0.0.1:4001\n127.0.0.1:4002\n").unwrap();
    let err = ClusterOptions {
        workers: 1,
        processes: 2,
        process: 0,
        hostfile: Some(hostfile),
    }
    .timely_config()
    .err()
    .unwrap();
    assert!(err.to_string().contains("lists 3 addresses but --processes is 2"), "{err}");
}
