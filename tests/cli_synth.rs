//! `fakestormer synth dump|preview` end to end on shard stores built from the official synthesis
//! fixtures (franck.mp4 crops 50–53 with their 81 landmarks): dumps are byte-identical for 1 and 2
//! threads and across runs, the preview is a PNG of the documented grid size, and a video without
//! landmarks is reported while the run completes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stages::crop::CropRegion;
use stages::decode::DecodeReport;
use stages::detect::Face;
use stages::lossless::{self, ImageCodec};
use stages::rgb::RgbImage;
use stages::shard::{FrameCrop, ShardConfig, ShardWriter, VideoMeta};

/// `FAKESTORMER_FIXTURES`, else `shared/fixtures` next to (or above) the checkout.
fn fixtures_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FAKESTORMER_FIXTURES") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/fixtures"))
        .find(|p| p.join("synth_primitives.safetensors").is_file())
        .unwrap_or_else(|| manifest.join("../shared/fixtures"))
}

/// Tensors of a safetensors file by name: (dtype, shape, bytes). Parsed by hand (8-byte
/// header length, JSON header, data) so the CLI package needs no extra dependency.
fn read_safetensors(bytes: &[u8]) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let off: Vec<usize> = serde_json::from_value(v["data_offsets"].clone()).unwrap();
            let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
            let dtype = v["dtype"].as_str().unwrap().to_string();
            (k.clone(), (dtype, shape, data[off[0]..off[1]].to_vec()))
        })
        .collect()
}

/// The four fixture frames with their 81 raw landmarks (crop pixels).
fn fixture_frames() -> Vec<(RgbImage, Vec<[f32; 2]>)> {
    let path = fixtures_dir().join("synth_primitives.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "synthesis fixtures missing: cannot read {} ({e}); set FAKESTORMER_FIXTURES",
            path.display()
        )
    });
    let t = read_safetensors(&bytes);
    (0..4)
        .map(|f| {
            let (dt, shape, img) = &t[&format!("img256_f{f}")];
            assert_eq!((dt.as_str(), shape.as_slice()), ("U8", &[256, 256, 3][..]));
            let (dt, shape, lms) = &t[&format!("lms81_raw_f{f}")];
            assert_eq!((dt.as_str(), shape.as_slice()), ("I64", &[81, 2][..]));
            let pts: Vec<i64> = lms
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (
                RgbImage::new(256, 256, img.clone()).unwrap(),
                pts.chunks_exact(2)
                    .map(|p| [p[0] as f32, p[1] as f32])
                    .collect(),
            )
        })
        .collect()
}

/// Writes a store at `dir` with `videos` (id, stored frames, with landmarks?); frame i is fixture
/// frame i mod 4.
fn write_store(dir: &Path, videos: &[(&str, u64, bool)]) {
    let frames = fixture_frames();
    let mut w = ShardWriter::open(dir, ShardConfig::default()).unwrap();
    for &(id, n, with_lms) in videos {
        w.begin_video(id).unwrap();
        for i in 0..n {
            let (img, lms) = &frames[i as usize % 4];
            w.push_frame(FrameCrop {
                frame_index: 50 + i,
                time_s: (50 + i) as f64 / 25.0,
                face: Face {
                    x0: 0.0,
                    y0: 0.0,
                    x1: 256.0,
                    y1: 256.0,
                    score: 1.0,
                    landmarks5: None,
                },
                region: CropRegion {
                    x0: 0,
                    y0: 0,
                    x1: 256,
                    y1: 256,
                },
                landmarks: if with_lms { lms.clone() } else { Vec::new() },
                image: lossless::encode(img, ImageCodec::default()).unwrap(),
            })
            .unwrap();
        }
        w.end_video(VideoMeta {
            video_id: id.into(),
            source: format!("{id}.mp4"),
            category: "original".into(),
            split: "train".into(),
            width: 256,
            height: 256,
            fps: 25.0,
            frame_count: 50 + n,
            no_face: Vec::new(),
            decode: DecodeReport::default(),
        })
        .unwrap();
    }
    w.finish().unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cli_synth_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn synth(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_fakestormer"))
        .arg("--quiet")
        .arg("synth")
        .args(args)
        .output()
        .unwrap();
    out
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dump(shards: &Path, out: &Path, items: &str, threads: &str) -> Vec<u8> {
    let o = synth(&[
        "dump",
        "--shards",
        shards.to_str().unwrap(),
        "--items",
        items,
        "--seed",
        "317",
        "--epoch",
        "1",
        "--threads",
        threads,
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    std::fs::read(out).unwrap()
}

#[test]
fn dump_is_byte_identical_across_threads_and_runs() {
    let dir = temp_dir("dump");
    let store = dir.join("store");
    write_store(&store, &[("a", 12, true), ("b", 12, true)]);
    let a = dump(&store, &dir.join("a.safetensors"), "3", "1");
    let b = dump(&store, &dir.join("b.safetensors"), "3", "2");
    let c = dump(&store, &dir.join("c.safetensors"), "3", "2");
    assert!(a == b, "1 vs 2 threads differ");
    assert!(b == c, "two runs differ");
    let t = read_safetensors(&a);
    let shape = |k: &str| t[k].1.clone();
    assert_eq!(shape("images"), vec![6, 3, 4, 224, 224]);
    assert_eq!(shape("images_bf16"), vec![6, 3, 4, 224, 224]);
    assert_eq!(shape("heatmap"), vec![6, 1, 4, 14, 14]);
    assert_eq!(shape("temp_loc"), vec![6, 4]);
    assert_eq!(shape("mask_out_p"), vec![6, 1, 4, 14, 14]);
    let labels: Vec<f32> = t["label"]
        .2
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(labels.iter().filter(|&&l| l == 1.0).count(), 3);
    assert_eq!(labels.iter().filter(|&&l| l == 0.0).count(), 3);
    // A different seed gives a different batch (the seed reaches the synthesis).
    let o = synth(&[
        "dump",
        "--shards",
        store.to_str().unwrap(),
        "--items",
        "3",
        "--seed",
        "318",
        "--epoch",
        "1",
        "--out",
        dir.join("d.safetensors").to_str().unwrap(),
    ]);
    ok(&o);
    assert!(std::fs::read(dir.join("d.safetensors")).unwrap() != a);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Width and height from a PNG's IHDR, after checking the signature and the IEND chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
    let be = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn preview_writes_a_png_of_the_grid_size() {
    let dir = temp_dir("preview");
    let store = dir.join("store");
    write_store(&store, &[("a", 8, true)]);
    let png = dir.join("grid.png");
    let o = synth(&[
        "preview",
        "--shards",
        store.to_str().unwrap(),
        "--items",
        "2",
        "--out",
        png.to_str().unwrap(),
    ]);
    ok(&o);
    // Layout of stages::synth::preview: T=4 tiles of 224 with 4 px gaps per row; per clip five
    // rows plus one extra gap.
    let (s, gap, clips) = (224u32, 4u32, 2u32);
    let want = (4 * (s + gap) + gap, 5 * clips * (s + gap) + gap * clips);
    assert_eq!(png_size(&std::fs::read(&png).unwrap()), want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_video_without_landmarks_is_reported_and_the_run_completes() {
    let dir = temp_dir("nolms");
    // One store per video under a parent folder, as `preprocess` may write them.
    write_store(&dir.join("shards/good"), &[("good", 4, true)]);
    write_store(&dir.join("shards/nolms"), &[("nolms", 4, false)]);
    let shards = dir.join("shards");
    let out = dir.join("batch.safetensors");
    let o = synth(&[
        "dump",
        "--shards",
        shards.to_str().unwrap(),
        "--items",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nolms") && err.contains("no landmarks"),
        "failure not reported: {err}"
    );
    let t = read_safetensors(&std::fs::read(&out).unwrap());
    assert_eq!(t["images"].1, vec![2, 3, 4, 224, 224], "one item → 2 clips");
    let png = dir.join("grid.png");
    let o = synth(&[
        "preview",
        "--shards",
        shards.to_str().unwrap(),
        "--items",
        "2",
        "--out",
        png.to_str().unwrap(),
    ]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no landmarks"));
    assert!(png.is_file());
    // Only the bad video: nothing to write, a clear error, no panic.
    let o = synth(&[
        "dump",
        "--shards",
        dir.join("shards/nolms").to_str().unwrap(),
        "--items",
        "1",
        "--out",
        dir.join("none.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no landmarks") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!dir.join("none.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
