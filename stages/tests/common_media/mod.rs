//! Locating the demo media (fetched by scripts/fetch-demo-media.sh) for integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The demo media folder: `$FAKESTORMER_MEDIA` or `<workspace>/.cache/media`. Panics with the
/// setup command when a file is missing, so a test never passes without its data.
pub fn media(name: &str) -> PathBuf {
    let dir = std::env::var_os("FAKESTORMER_MEDIA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/media"));
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "demo media {} is missing: run scripts/fetch-demo-media.sh (or set FAKESTORMER_MEDIA)",
        p.display()
    );
    p
}

/// A fresh scratch directory under the target dir.
pub fn scratch(test: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
