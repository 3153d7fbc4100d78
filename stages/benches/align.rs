//! Landmarks/s of the pure-Rust dlib shape predictor on the golden demo frames.
//!
//! `cargo bench -p stages --bench align` (after `scripts/setup-align.sh`); compare with
//! `.cache/venv-align/bin/python scripts/align-golden.py --bench` (dlib's own Python
//! binding on the same frames and boxes). Results: docs/benchmarks.md.

use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use stages::align::{rgb_to_gray, DlibRect, GrayImage, PredictScratch, ShapePredictor};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = std::env::var("DLIB_SHAPE_PREDICTOR_68")
        .unwrap_or_else(|_| "/usr/share/dlib/shape_predictor_68_face_landmarks.dat".into());
    let t = Instant::now();
    let sp = ShapePredictor::load(&model).expect("load model (see scripts/setup-align.sh)");
    println!("load {model}: {:.2} s", t.elapsed().as_secs_f64());

    let golden: Value = serde_json::from_slice(
        &std::fs::read(root.join("stages/fixtures/align/dlib_golden.json")).unwrap(),
    )
    .unwrap();
    let mut cases = Vec::new();
    for item in golden["images"].as_array().unwrap() {
        if item["kind"] != "frame" {
            continue;
        }
        let img = image::open(root.join(item["file"].as_str().unwrap()))
            .expect("frame (run scripts/setup-align.sh)")
            .to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut gray = Vec::new();
        rgb_to_gray(img.as_raw(), w, h, &mut gray).unwrap();
        for f in item["faces"].as_array().unwrap() {
            let b: Vec<i64> = f["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            cases.push((gray.clone(), w, h, DlibRect::new(b[0], b[1], b[2], b[3])));
        }
    }
    let mut scratch = PredictScratch::new();
    let mut out = Vec::new();
    let reps = 200;
    let mut checksum = 0f64;
    // Warm-up pass (page in the model's leaves).
    for (g, w, h, r) in &cases {
        sp.predict_into(
            &GrayImage::packed(g, *w, *h).unwrap(),
            *r,
            &mut scratch,
            &mut out,
        );
    }
    let t = Instant::now();
    let cpu0 = thread_cpu_ns();
    for _ in 0..reps {
        for (g, w, h, r) in &cases {
            sp.predict_into(
                &GrayImage::packed(g, *w, *h).unwrap(),
                *r,
                &mut scratch,
                &mut out,
            );
            checksum += out[30][0] as f64;
        }
    }
    let n = reps * cases.len();
    let secs = t.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns()
        .zip(cpu0)
        .map(|(b, a)| (b - a) as f64 * 1e-9);
    println!(
        "rust predict_into, 1 thread: {n} faces, wall {secs:.3} s = {:.0} faces/s ({:.1} us/face); \
         cpu {} ; checksum {checksum:.1}",
        n as f64 / secs,
        1e6 * secs / n as f64,
        cpu.map_or("n/a".into(), |c| format!("{c:.3} s = {:.0} faces/s ({:.1} us/face)", n as f64 / c, 1e6 * c / n as f64)),
    );

    // All cores: one shared predictor, one scratch per thread.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut scratch = PredictScratch::new();
                let mut out = Vec::new();
                for _ in 0..reps {
                    for (g, w, h, r) in &cases {
                        sp.predict_into(
                            &GrayImage::packed(g, *w, *h).unwrap(),
                            *r,
                            &mut scratch,
                            &mut out,
                        );
                    }
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    let n = threads * reps * cases.len();
    println!(
        "rust predict_into, {threads} threads: {n} faces, wall {secs:.3} s = {:.0} faces/s",
        n as f64 / secs
    );
}

/// This thread's CPU time in ns (Linux `schedstat`), so that numbers taken on a busy
/// machine are not inflated by time spent waiting for a core.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
