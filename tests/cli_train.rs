//! `fakestormer train` end to end on the demo media (preprocessed through the CLI): a run killed
//! with SIGKILL and resumed from its checkpoint ends with bit-identical parameters, optimizer state
//! and per-step losses to an uninterrupted run; the outputs (metrics, best/final weights, report)
//! hold what they claim; spec problems and a resume with another spec are clear errors.
//! Needs the demo media and MTCNN models (scripts/setup.sh).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::train::{steps, tensors, train, trajectory};
use support::{bin, ok};

fn spec(dir: &Path, extra: &str) -> std::path::PathBuf {
    support::train::spec(dir, "cli-train", 3, extra)
}

#[test]
fn sigkill_and_resume_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));

    let out = ok(train(&spec, &a, &[]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("completed: 9 steps"), "{stdout}");
    let ra = steps(&a);
    assert_eq!(ra.iter().filter(|r| r["kind"] == "step").count(), 9);
    assert_eq!(ra.iter().filter(|r| r["kind"] == "epoch").count(), 3);
    // epoch 0 trains the heads only (frozen backbone), later epochs everything
    assert!(ra
        .iter()
        .filter(|r| r["kind"] == "step")
        .all(|r| r["frozen_backbone"] == serde_json::json!(r["epoch"] == 0)));
    // the schedule: lr per epoch from LinearDecayLR(1e-4, ×5, 3 epochs, peak at 3/2 = 1)
    let lrs: Vec<f64> = ra
        .iter()
        .filter(|r| r["kind"] == "epoch")
        .map(|r| r["lr"].as_f64().unwrap())
        .collect();
    assert_eq!(lrs, vec![1e-4, 5e-4, 2.5e-4]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["global_step"], 9);
    assert!(report["best_val_acc"].as_f64().is_some());
    assert!((0.0..=1.0).contains(&report["data_wait_fraction"].as_f64().unwrap()));
    for f in [
        "best.safetensors",
        "final.safetensors",
        "checkpoint.safetensors",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }

    // run b: killed with SIGKILL after its third checkpoint, then resumed
    let mut child = bin()
        .args(["--quiet", "train"])
        .arg(&spec)
        .arg("--out")
        .arg(&b)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let done = steps(&b).iter().filter(|r| r["kind"] == "step").count();
        if done >= 3 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "run b made no progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "run b ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "run b was not killed mid-run");
    let killed_at = steps(&b).iter().filter(|r| r["kind"] == "step").count();
    assert!(
        killed_at < 9,
        "run b finished before the kill; the test proves nothing"
    );
    let out = ok(train(&spec, &b, &["--resume", "auto"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("completed: 9 steps"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // bit-identical weights, Adam moments and progress; identical per-step losses
    assert_eq!(
        std::fs::read(a.join("final.safetensors")).unwrap(),
        std::fs::read(b.join("final.safetensors")).unwrap(),
        "final weights differ"
    );
    let (ta, ma) = tensors(&a.join("checkpoint.safetensors"));
    let (tb, mb) = tensors(&b.join("checkpoint.safetensors"));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, v) in &ta {
        assert!(v == &tb[k], "{k} differs after resume");
    }
    assert!(ta.keys().any(|k| k.starts_with("optim.m.")));
    assert_eq!(ma, mb);
    assert_eq!(
        std::fs::read(a.join("best.safetensors")).unwrap(),
        std::fs::read(b.join("best.safetensors")).unwrap()
    );
    assert_eq!(trajectory(&ra), trajectory(&steps(&b)));
}

#[test]
fn max_steps_stops_with_a_checkpoint_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(train(&spec, &a, &["--max-steps", "5"]));
    ok(train(&spec, &b, &["--max-steps", "2"]));
    let out = ok(train(&spec, &b, &["--max-steps", "5", "--resume", "auto"]));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("stopped at --max-steps: 5 steps (3 this run)"));
    assert_eq!(
        std::fs::read(a.join("final.safetensors")).unwrap(),
        std::fs::read(b.join("final.safetensors")).unwrap()
    );
    assert_eq!(trajectory(&steps(&a)), trajectory(&steps(&b)));
}

#[test]
fn spec_problems_and_foreign_resume_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = spec(dir.path(), "bach_items = 3\n");
    let out = train(&spec_path, &dir.path().join("x"), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("train.toml:20:1"), "{err}");
    assert!(err.contains("did you mean `batch_items`"), "{err}");

    // a checkpoint of one spec does not resume another
    let a = dir.path().join("a");
    let good = spec(dir.path(), "");
    ok(train(&good, &a, &["--max-steps", "1"]));
    let other = spec(dir.path(), "val_limit = 2\n");
    let out = train(&other, &a, &["--resume", "auto"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("written by another spec"), "{err}");
    // ... but settings that do not change the computation may differ
    let same = spec(dir.path(), "");
    let text = std::fs::read_to_string(&same).unwrap();
    let text = text
        .replace("threads = 2", "threads = 1")
        .replace("checkpoint_every = 1", "checkpoint_every = 7")
        .replace("seed = 11", "seed = 11\nmath = \"tf32\"");
    std::fs::write(&same, &text).unwrap();
    ok(train(&same, &a, &["--resume", "auto", "--max-steps", "2"]));

    // an unknown GEMM math is a located spec error
    std::fs::write(&same, text.replace("math = \"tf32\"", "math = \"fp8\"")).unwrap();
    let out = train(&same, &dir.path().join("y"), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("math") && err.contains("fp8"), "{err}");
}

/// The shipped train specs pass `spec check` (from a copy next to placeholders for the data,
/// weights and model files they name), and `spec show` prints them with the defaults filled.
#[test]
fn shipped_train_specs_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(root.join("specs")).unwrap() {
        let src = e.unwrap().path();
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("train-") && name.ends_with(".toml")) {
            continue;
        }
        let text = std::fs::read_to_string(&src).unwrap();
        let t: toml::Table = text.parse().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let specs = tmp.path().join("specs");
        std::fs::create_dir_all(specs.join("models")).unwrap();
        std::fs::write(specs.join(&name), &text).unwrap();
        for m in std::fs::read_dir(root.join("specs/models")).unwrap() {
            let m = m.unwrap().path();
            std::fs::copy(&m, specs.join("models").join(m.file_name().unwrap())).unwrap();
        }
        let get = |a: &str, b: &str| t.get(a).and_then(|x| x.get(b)).and_then(|v| v.as_str());
        for dir in [get("data", "train"), get("data", "val")]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(specs.join(dir)).unwrap();
        }
        if let Some(w) = get("model", "init") {
            std::fs::create_dir_all(specs.join(w).parent().unwrap()).unwrap();
            std::fs::write(specs.join(w), b"placeholder").unwrap();
        }
        let o = bin()
            .args(["spec", "check"])
            .arg(specs.join(&name))
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let o = ok(bin()
            .args(["spec", "show"])
            .arg(specs.join(&name))
            .output()
            .unwrap());
        let shown = String::from_utf8_lossy(&o.stdout);
        assert!(
            shown.contains("rho = 0.05") && shown.contains("val_batch"),
            "{shown}"
        );
        n += 1;
    }
    assert!(n >= 3, "only {n} train specs in specs/");
}
