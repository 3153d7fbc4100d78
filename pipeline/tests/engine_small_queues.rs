//! Queues of one record: an item is two messages (its record and its end marker), so the end
//! marker waits outside a full first queue while the stage works on the record. The chain must
//! still admit it once the stage frees the slot, even when no completion is due to wake it
//! (this used to hang the run forever).

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use pipeline::manifest::{write_manifest, ManifestRow};
use pipeline::{
    parse_spec, BuildContext, ClusterOptions, Params, Registry, RunOptions, Stage, StageContext,
    StageError,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct NoParams {}
impl Params for NoParams {}

/// Holds each record a little, so the end marker finds the queue full.
struct Slow;
impl Stage for Slow {
    type In = ManifestRow;
    type Out = String;
    fn process(
        &mut self,
        row: ManifestRow,
        ctx: &mut StageContext<'_, String>,
    ) -> Result<(), StageError> {
        std::thread::sleep(Duration::from_millis(30));
        ctx.emit(row.id);
        Ok(())
    }
}

struct Done;
impl Stage for Done {
    type In = String;
    type Out = ();
    fn process(&mut self, _id: String, ctx: &mut StageContext<'_, ()>) -> Result<(), StageError> {
        ctx.emit(());
        Ok(())
    }
}

fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.stage(
        "slow",
        "row -> id, slowly",
        |_: &NoParams, _: &BuildContext| Ok(Slow),
    );
    r.sink("done", "id -> nothing", |_: &NoParams, _: &BuildContext| {
        Ok(Done)
    });
    Arc::new(r)
}

fn run(items: usize, workers: usize, stage_workers: usize, capacity: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<ManifestRow> = (0..items)
        .map(|i| ManifestRow {
            id: format!("i{i}"),
            path: format!("i{i}.mp4"),
            label: 0,
            dataset: "synthetic".into(),
            split: "train".into(),
            method: None,
            identity: None,
            compression: None,
            sha256: None,
            extra: BTreeMap::new(),
        })
        .collect();
    write_manifest(&tmp.path().join("m.jsonl"), &rows).unwrap();
    let text = format!(
        "name = \"q1\"\n[source]\nmanifest = \"m.jsonl\"\n[[stages]]\nkind = \"slow\"\n\
         workers = {stage_workers}\ncapacity = {capacity}\n[sink]\nkind = \"done\"\ncapacity = 1\n"
    );
    let registry = registry();
    let spec = parse_spec(&tmp.path().join("s.toml"), &text, &registry).unwrap();
    let (tx, rx) = mpsc::channel();
    let out = tmp.path().join("out");
    std::thread::spawn(move || {
        let cluster = ClusterOptions {
            workers,
            ..ClusterOptions::default()
        };
        let opts = RunOptions {
            out_dir: Some(out),
            ..RunOptions::default()
        };
        let _ = tx.send(pipeline::run(&spec, registry, &cluster, &opts));
    });
    let report = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "run hung: {items} items, {workers} workers, stage workers {stage_workers}, \
                 capacity {capacity}"
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(report.counts.completed, items as u64);
}

#[test]
fn single_slot_queues_do_not_hang() {
    run(1, 1, 1, 1);
    run(3, 1, 1, 1);
    run(5, 2, 2, 2);
    run(4, 1, 2, 3);
}
