//! Data-parallel training through the CLI on the demo media: two processes on 127.0.0.1
//! (`--processes 2`) end with the same bits as one process with `replicas = 2` (both sum the
//! replicas' gradients in replica order with the same f32 arithmetic, so the tolerance is zero);
//! replicas change the result; a 2-process run stopped at --max-steps and resumed equals an
//! uninterrupted one; a rank that dies stops the other with an error; mismatched replica counts
//! are refused. Needs the demo media and MTCNN models (scripts/setup.sh).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use support::train::{steps, tensors, train, trajectory};
use support::{bin, free_port, ok};

fn spec(dir: &Path, extra: &str) -> PathBuf {
    support::train::spec(dir, "cli-train-cluster", 2, extra)
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
