//! The incremental plan (differential-dataflow diff of an index against a manifest) on small
//! generated files: classification, independence from the worker count, the size+mtime hash
//! cache, which spec keys count, and the safety checks on index paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipeline::incremental::{
    config_hash, plan, read_index, retire_output, write_index, IndexEntry, Plan, PlanContext,
};
use pipeline::manifest::ManifestRow;
use pipeline::spec::{SourceSpec, Spec, StageSpec};

fn row(id: &str, split: &str) -> ManifestRow {
    ManifestRow {
        id: id.into(),
        path: format!("in/{id}.bin"),
        label: 0,
        dataset: "gen".into(),
        split: split.into(),
        method: None,
        identity: None,
        compression: None,
        sha256: None,
        extra: BTreeMap::new(),
    }
}

fn output_of(id: &str) -> PathBuf {
    Path::new("out").join(format!("{id}.o"))
}

fn ctx(dir: &Path, workers: usize, rehash: bool) -> PlanContext {
    PlanContext {
        manifest_dir: dir.to_path_buf(),
        out: dir.to_path_buf(),
        config: "cfg".into(),
        output_of,
        rehash,
        workers,
    }
}

fn put(dir: &Path, id: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::write(dir.join(format!("in/{id}.bin")), bytes).unwrap();
}

/// Records every added item of `p` as done (index entry + an output file), as a run would.
fn record(dir: &Path, p: &Plan, index: &mut BTreeMap<String, IndexEntry>) {
    for (id, cur) in &p.add {
        let out = output_of(id);
        std::fs::create_dir_all(dir.join(&out)).unwrap();
        index.insert(id.clone(), cur.entry(id, &out, "spec"));
    }
}

fn ids<V>(m: &BTreeMap<String, V>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

#[test]
fn plan_classifies_every_item_the_same_for_any_worker_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let v1: Vec<ManifestRow> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|id| row(id, "s"))
        .collect();
    for r in &v1 {
        put(dir, &r.id, format!("content of {}", r.id).as_bytes());
    }
    let first = plan(&v1, &BTreeMap::new(), &ctx(dir, 1, false)).unwrap();
    assert_eq!(ids(&first.add), ["a", "b", "c", "d", "e"]);
    assert!(first.redo.is_empty() && first.keep.is_empty() && first.retire.is_empty());
    let mut index = BTreeMap::new();
    record(dir, &first, &mut index);
    // The recorded hash is the file's sha256 (`printf 'content of a' | sha256sum`).
    assert_eq!(
        index["a"].content_sha256,
        "8e56b639882ef91f67c597965dfb451cbd2e4b41d1a8cd9b01dd3241aa518796"
    );
    assert_eq!(index["a"].size, 12);

    // v2: c's bytes change (same length, so only the hash can tell), d leaves, f arrives, e's
    // row changes split, b's output disappears, a is untouched.
    std::thread::sleep(std::time::Duration::from_millis(20));
    put(dir, "c", b"CONTENT of c");
    put(dir, "f", b"content of f");
    std::fs::remove_dir_all(dir.join(output_of("b"))).unwrap();
    let v2: Vec<ManifestRow> = vec![
        row("a", "s"),
        row("b", "s"),
        row("c", "s"),
        row("e", "t"),
        row("f", "s"),
    ];
    let plans: Vec<Plan> = [1, 2, 4]
        .iter()
        .map(|&w| plan(&v2, &index, &ctx(dir, w, false)).unwrap())
        .collect();
    assert_eq!(plans[0], plans[1]);
    assert_eq!(plans[0], plans[2]);
    let p = &plans[0];
    assert_eq!(ids(&p.add), ["f"]);
    assert_eq!(ids(&p.keep), ["a"]);
    assert_eq!(p.retire.iter().collect::<Vec<_>>(), ["d"]);
    let why: BTreeMap<&str, &[String]> = p
        .redo
        .iter()
        .map(|(id, (_, w))| (id.as_str(), w.as_slice()))
        .collect();
    assert_eq!(why["b"], ["output missing"]);
    assert_eq!(why["c"], ["input content changed"]);
    assert_eq!(why["e"], ["manifest row changed"]);
    assert_eq!(why.len(), 3);

    // Another config redoes every kept item, and a missing input is a change, not an error.
    std::fs::remove_file(dir.join("in/a.bin")).unwrap();
    let mut c = ctx(dir, 2, false);
    c.config = "other".into();
    let p = plan(&v1[..1], &index, &c).unwrap();
    assert_eq!(
        p.redo["a"].1,
        [
            "input unreadable".to_owned(),
            "stage config changed".to_owned()
        ]
    );
}

#[test]
fn unchanged_size_and_mtime_reuse_the_recorded_hash_unless_rehash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    put(dir, "a", b"bytes");
    let rows = [row("a", "s")];
    let first = plan(&rows, &BTreeMap::new(), &ctx(dir, 1, false)).unwrap();
    let mut index = BTreeMap::new();
    record(dir, &first, &mut index);
    // A recorded hash that does not match the bytes: trusted while size and mtime agree...
    index.get_mut("a").unwrap().content_sha256 = "0".repeat(64);
    let p = plan(&rows, &index, &ctx(dir, 1, false)).unwrap();
    assert_eq!(ids(&p.keep), ["a"]);
    // ...and caught when every file is re-read.
    let p = plan(&rows, &index, &ctx(dir, 1, true)).unwrap();
    assert_eq!(p.redo["a"].1, ["input content changed"]);
}

fn spec(frames: i64, threads: i64, workers: usize, capacity: usize) -> Spec {
    let params: toml::Value = toml::toml! { frames = frames
    threads = threads }
    .into();
    Spec {
        name: "n".into(),
        description: String::new(),
        seed: 1,
        output: "o".into(),
        source: SourceSpec {
            manifest: "m.jsonl".into(),
            split: None,
            dataset: None,
            label: None,
            limit: None,
        },
        stages: vec![StageSpec {
            kind: "work".into(),
            workers,
            capacity,
            params,
        }],
        sink: StageSpec {
            kind: "store".into(),
            workers: 1,
            capacity: 4,
            params: toml::Value::Table(Default::default()),
        },
        sections: Default::default(),
    }
}

#[test]
fn config_hash_counts_params_and_seed_not_workers_capacity_or_neutral_params() {
    let neutral: &[(&str, &str)] = &[("work", "threads")];
    let base = config_hash(&spec(32, 1, 1, 4), neutral);
    assert_eq!(base, config_hash(&spec(32, 8, 3, 64), neutral));
    assert_ne!(base, config_hash(&spec(16, 1, 1, 4), neutral));
    // Without the neutral list, the thread count counts too.
    assert_ne!(
        config_hash(&spec(32, 1, 1, 4), &[]),
        config_hash(&spec(32, 8, 1, 4), &[])
    );
    let mut seeded = spec(32, 1, 1, 4);
    seeded.seed = 2;
    assert_ne!(base, config_hash(&seeded, neutral));
}

#[test]
fn index_round_trips_and_refuses_paths_outside_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    put(dir, "a", b"x");
    let p = plan(&[row("a", "s")], &BTreeMap::new(), &ctx(dir, 1, false)).unwrap();
    let mut index = BTreeMap::new();
    record(dir, &p, &mut index);
    let path = dir.join("index.jsonl");
    write_index(&path, &index).unwrap();
    assert_eq!(read_index(&path).unwrap(), index);
    assert!(read_index(&dir.join("missing.jsonl")).unwrap().is_empty());

    let line = std::fs::read_to_string(&path).unwrap();
    for bad in ["../escape", "/etc", ""] {
        let text = line.replace("out/a.o", bad);
        std::fs::write(&path, &text).unwrap();
        let e = read_index(&path).unwrap_err().to_string();
        assert!(e.contains(":1:") && e.contains("not a path inside"), "{e}");
    }
    std::fs::write(&path, format!("{line}{line}")).unwrap();
    let e = read_index(&path).unwrap_err().to_string();
    assert!(e.contains(":2: duplicate id `a`"), "{e}");
    std::fs::write(&path, "{not json\n").unwrap();
    assert!(read_index(&path).is_err());
}

#[test]
fn retiring_removes_the_output_and_the_folders_it_empties_only() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    std::fs::create_dir_all(out.join("shards/x/y/a.store")).unwrap();
    std::fs::write(out.join("shards/x/y/a.store/data"), b"1").unwrap();
    std::fs::create_dir_all(out.join("shards/x/b.store")).unwrap();
    assert!(retire_output(out, Path::new("shards/x/y/a.store")).unwrap());
    assert!(!out.join("shards/x/y").exists());
    assert!(out.join("shards/x/b.store").exists());
    assert!(!out.join(".trash").exists());
    // Already gone, or outside the output folder: nothing happens.
    assert!(!retire_output(out, Path::new("shards/x/y/a.store")).unwrap());
    assert!(!retire_output(out, Path::new("../x")).unwrap());
}
