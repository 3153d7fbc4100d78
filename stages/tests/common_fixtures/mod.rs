//! Reading the golden fixtures of /work/shared/fixtures (or $FAKESTORMER_FIXTURES).
#![allow(dead_code)]

use std::path::PathBuf;

/// `$FAKESTORMER_FIXTURES`, else the first of `<repo>/shared/fixtures`, `<repo>/../shared/fixtures`
/// (the checkout layout next to the shared folder) and `/work/shared/fixtures` that exists.
pub fn fixtures_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FAKESTORMER_FIXTURES") {
        return PathBuf::from(d);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        repo.join("shared/fixtures"),
        repo.join("../shared/fixtures"),
        PathBuf::from("/work/shared/fixtures"),
    ]
    .into_iter()
    .find(|d| d.is_dir())
    .unwrap_or_else(|| repo.join("shared/fixtures"))
}

/// The bytes and shape of one tensor of `synth_primitives.safetensors`.
pub fn synth_tensor(name: &str) -> (Vec<usize>, Vec<u8>) {
    let p = fixtures_dir().join("synth_primitives.safetensors");
    let bytes = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "fixture {} missing ({e}); set FAKESTORMER_FIXTURES",
            p.display()
        )
    });
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    (t.shape().to_vec(), t.data().to_vec())
}

/// dlib 68-point landmarks of franck.mp4 frame 50+t in the 256×256 crop (int64 → f32).
pub fn lms68(t: usize) -> Vec<[f32; 2]> {
    let (shape, data) = synth_tensor(&format!("lms68_f{t}"));
    assert_eq!(shape, vec![68, 2]);
    data.chunks_exact(16)
        .map(|c| {
            let x = i64::from_le_bytes(c[0..8].try_into().unwrap());
            let y = i64::from_le_bytes(c[8..16].try_into().unwrap());
            [x as f32, y as f32]
        })
        .collect()
}

/// The official-convention crop box of the fixture frames in franck.mp4 frame pixels.
pub const FIXTURE_CROP_XYXY: [i32; 4] = [76, 42, 308, 274];
