//! `fakestormer plot RUN_DIR` end to end: prints the three PNG paths it wrote; an empty log is an
//! error with exit code 2 and a message naming the file.

use std::process::Command;

fn plot(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fakestormer"))
        .args(["--quiet", "plot"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn plot_prints_the_written_charts() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for step in 1..=12 {
        log.push_str(&format!(
            "{{\"kind\":\"step\",\"epoch\":0,\"step\":{step},\"lr\":{},\"loss\":{},\"acc\":0.5}}\n",
            1e-6 * step as f64,
            1.0 / step as f64
        ));
    }
    log.push_str("{\"kind\":\"epoch\",\"epoch\":0,\"step\":12,\"train_loss\":0.3,\"train_acc\":0.5,\"val_acc\":null}\n");
    std::fs::write(dir.path().join("metrics.jsonl"), log).unwrap();
    let out = plot(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<_> = stdout.lines().collect();
    assert_eq!(printed.len(), 3, "{stdout}");
    for (line, name) in printed.iter().zip(["loss.png", "accuracy.png", "lr.png"]) {
        let path = std::path::Path::new(line);
        assert_eq!(path, dir.path().join("plots").join(name));
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5_000,
            "{line}"
        );
    }
}

#[test]
fn plot_of_an_empty_log_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.jsonl"), "\n").unwrap();
    let out = plot(dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metrics.jsonl") && stderr.contains("nothing to plot"),
        "{stderr}"
    );
}
