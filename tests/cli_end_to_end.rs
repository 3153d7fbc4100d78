//! The whole user path through the CLI on the demo media: preprocess → train a tiny model for a
//! few steps (checkpoint, stop, resume) → plot → evaluate the best weights on the held-out
//! identity (real clips against self-blended fakes) → detect on a demo video with the trained
//! weights. Asserts on the files and values each step produces; the weights carry their model
//! configuration, so eval and detect are given no preset. Needs scripts/setup.sh (demo media,
//! MTCNN models, Debian dlib data, DejaVu fonts).

mod support;

use std::path::Path;
use std::process::Output;

use support::{bin, media_dir};

/// stdout of a command that must succeed.
fn ok(out: Output) -> String {
    String::from_utf8_lossy(&support::ok(out).stdout).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn preprocess_train_resume_plot_eval_detect() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = support::train::demo_rows();
    std::fs::write(d.join("all.jsonl"), rows.join("\n") + "\n").unwrap();
    std::fs::write(d.join("holdout.jsonl"), rows[2].clone() + "\n").unwrap();
    std::fs::write(
        d.join("pre.toml"),
        r#"name = "e2e-pre"
[source]
manifest = "all.jsonl"
[[stages]]
kind = "preprocess"
workers = 2
params = { select = "first", frames = 16, detector = "mtcnn", min_face_fraction = 0.1, landmarks = true }
[sink]
kind = "shard-store"
"#,
    )
    .unwrap();
    let out = ok(bin()
        .args(["--quiet", "run"])
        .arg(d.join("pre.toml"))
        .arg("--out")
        .arg(d.join("pre"))
        .output()
        .unwrap());
    assert!(out.contains("3 added"), "{out}");

    std::fs::write(
        d.join("train.toml"),
        r#"name = "e2e-train"
output = "unused"
[data]
train = "pre/shards"
holdout = ["demo/franck"]
[model]
preset = "tiny"
[optim]
base_lr = 1e-3
booster = 1
[train]
epochs = 2
batch_items = 4
freeze_backbone_epochs = 0
checkpoint_every = 2
val_batch = 8
"#,
    )
    .unwrap();
    let run = d.join("run");
    let train = |args: &[&str]| {
        ok(bin()
            .args(["--quiet", "train"])
            .arg(d.join("train.toml"))
            .arg("--out")
            .arg(&run)
            .args(args)
            .output()
            .unwrap())
    };
    // epoch 0: 8 training clips (cap12 and carphone, 4 each) → 2 batches of 4 items
    let first = train(&["--max-steps", "3"]);
    assert!(first.contains("stopped at --max-steps: 3 steps"), "{first}");
    let second = train(&["--resume", "auto"]);
    assert!(
        second.contains("completed: 4 steps (1 this run), 2 epochs"),
        "{second}"
    );
    let report = json(&run.join("report.json"));
    assert_eq!(report["global_step"], 4);
    assert!(report["resumed_from"].as_str().is_some());
    let val = report["best_val_acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&val), "{report}");
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["kind"] == "step")
        .collect();
    assert_eq!(
        steps
            .iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // a real and a fake clip per item; epoch 1 may cut fewer windows (offset ∈ {0,1,2})
    for r in &steps {
        let clips = r["clips"].as_u64().unwrap();
        assert!(clips % 2 == 0 && (2..=8).contains(&clips), "{r}");
        assert!(r["loss"].as_f64().unwrap().is_finite(), "{r}");
    }
    assert_eq!(steps[0]["clips"], 8);

    // the weights carry their model configuration (the head count is not in the shapes)
    let bytes = std::fs::read(run.join("best.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let cfg = header["__metadata__"]["fakestormer_model_config"]
        .as_str()
        .unwrap_or_else(|| panic!("no model config in the weights' metadata: {header}"));
    assert!(
        cfg.contains("num_heads = 4") && cfg.contains("embed_dim = 64"),
        "{cfg}"
    );

    let plots = ok(bin().arg("plot").arg(&run).output().unwrap());
    for f in ["loss.png", "accuracy.png", "lr.png"] {
        assert!(is_png(&run.join("plots").join(f)), "{f}: {plots}");
    }

    // eval: franck's 4 clips (from its stored frames) against self-blended copies of them
    let eval_dir = d.join("eval");
    ok(bin()
        .args(["--quiet", "eval", "--weights"])
        .arg(run.join("best.safetensors"))
        .arg("--manifest")
        .arg(d.join("holdout.jsonl"))
        .arg("--shards")
        .arg(d.join("pre/shards"))
        .arg("--synthetic")
        .arg("--out")
        .arg(&eval_dir)
        .output()
        .unwrap());
    let m = json(&eval_dir.join("metrics.json"));
    let scores = std::fs::read_to_string(eval_dir.join("scores.csv")).unwrap();
    let rows: Vec<&str> = scores.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{scores}");
    assert!(
        rows.iter().any(|r| r.starts_with("demo/franck,0,")),
        "{scores}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with("demo/franck#sbv,1,")),
        "{scores}"
    );
    let clip_auc = m.to_string();
    assert!(clip_auc.contains("auc"), "{m}");
    assert!(is_png(&eval_dir.join("roc.png")));

    // detect on a demo video with the trained weights (no preset: read from the weights)
    let sheet = d.join("why.png");
    let out = ok(bin()
        .args(["--quiet", "detect", "--frames", "8", "--weights"])
        .arg(run.join("final.safetensors"))
        .arg("--explain")
        .arg(&sheet)
        .arg(media_dir().join("cap13_edit2.mp4"))
        .output()
        .unwrap());
    assert!(out.contains("P(fake) = "), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("  clip ")).count(),
        2,
        "{out}"
    );
    assert!(is_png(&sheet));
}
