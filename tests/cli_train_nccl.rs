//! A cluster training run on GPUs sums gradients with NCCL (one process per GPU). On a machine
//! without a CUDA driver both ranks stop quickly with exit 2 and a message that names NCCL and
//! the driver — no panic, no rank left waiting for the other. Needs no media: the run stops
//! before it opens any data. (On a machine with a driver this test has nothing to check.)

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use support::{bin, free_port};

/// A spec over an empty store folder: valid, but nothing to train on.
fn spec(dir: &Path, device: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("empty-stores")).unwrap();
    let p = dir.join(format!("train-{}.toml", device.replace(':', "-")));
    std::fs::write(
        &p,
        format!(
            r#"name = "cli-train-nccl"
output = "unused"
seed = 11
device = "{device}"
[data]
train = "empty-stores"
[model]
preset = "tiny"
[train]
epochs = 1
batch_items = 2
val_every = 0
"#
        ),
    )
    .unwrap();
    p
}

fn spawn_rank(spec: &Path, out: &Path, hosts: &Path, rank: usize) -> Child {
    bin()
        .args(["--quiet", "train"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .args(["--processes", "2", "--process", &rank.to_string()])
        .arg("--hostfile")
        .arg(hosts)
        .args(["--peer-timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most until `deadline`, killing it if it is still running then.
fn finish(mut child: Child, deadline: Instant) -> (Output, bool) {
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), false);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            return (child.wait_with_output().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn both_ranks(spec: &Path, dir: &Path) -> Vec<(usize, Output, bool)> {
    let hosts = dir.join(format!("hosts-{}", free_port()));
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let out = dir.join("run");
    let r1 = spawn_rank(spec, &out, &hosts, 1);
    let r0 = spawn_rank(spec, &out, &hosts, 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (o0, hung0) = finish(r0, deadline);
    let (o1, hung1) = finish(r1, deadline);
    vec![(0, o0, hung0), (1, o1, hung1)]
}

#[test]
fn cuda_cluster_without_a_driver_stops_both_ranks_naming_nccl() {
    if kernels::cuda::driver_available() {
        eprintln!("a CUDA driver is present: this test covers machines without one");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (rank, o, hung) in both_ranks(&spec(dir.path(), "cuda:0"), dir.path()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!hung, "rank {rank} did not stop within 90 s:\n{err}");
        assert_eq!(o.status.code(), Some(2), "rank {rank}:\n{err}");
        assert!(!err.contains("panicked"), "rank {rank}:\n{err}");
        // each rank fails its own driver check, or hears that its peer stopped
        assert!(
            (err.contains("NCCL") && err.contains("no CUDA driver"))
                || err.contains("stopped the run"),
            "rank {rank}:\n{err}"
        );
        assert!(err.contains("NCCL"), "rank {rank}:\n{err}");
    }
}

/// The same cluster on the CPU gets past the device step (it fails later, at the missing
/// stores): the NCCL refusal above is about the device, not the spec.
#[test]
fn the_same_cluster_on_cpu_gets_past_the_device() {
    let dir = tempfile::tempdir().unwrap();
    for (rank, o, hung) in both_ranks(&spec(dir.path(), "cpu"), dir.path()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!hung, "rank {rank} did not stop within 90 s:\n{err}");
        assert_eq!(o.status.code(), Some(2), "rank {rank}:\n{err}");
        assert!(!err.contains("NCCL"), "rank {rank}:\n{err}");
        assert!(
            err.contains("empty-stores") || err.contains("stopped the run"),
            "rank {rank}:\n{err}"
        );
    }
}
