//! SBV synthesis throughput: training pairs per second for 256² inputs → 224² outputs, T = 4, on
//! 1 and 2 threads, against a baseline measured in the same run (decoding the 4 PNG crops alone).
//!
//! `cargo bench -p stages --bench synth [-- --items N] [--preview out.png]`
//! Inputs: the fixture clip (img256_f0..f3 + 81 landmarks), re-encoded as PNG files.

#[path = "../tests/synth_common/mod.rs"]
mod synth_common;

use std::time::Instant;

use opencv::core::Vector;
use opencv::imgcodecs;
use opencv::prelude::*;
use rayon::prelude::*;
use stages::lossless::{self, ImageCodec};
use stages::synth::batch::{self, Batch, BatchKey};
use stages::synth::sbv::{self, ClipInput, ItemKey, SbvConfig};
use stages::synth::{preview, ImageU8};
use synth_common::*;

fn decode_rgb(bytes: &[u8]) -> ImageU8 {
    let buf = Vector::<u8>::from_slice(bytes);
    let m = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR).expect("decode");
    let mut rgb = Mat::default();
    opencv::imgproc::cvt_color(&m, &mut rgb, opencv::imgproc::COLOR_BGR2RGB, 0).expect("cvt");
    let data = rgb.data_bytes().unwrap().to_vec();
    ImageU8::from_vec(rgb.rows() as usize, rgb.cols() as usize, 3, data).unwrap()
}

/// Process CPU time (user + system) in seconds, from /proc/self/stat: throughput per CPU-second
/// is the per-core figure, robust to other processes sharing the machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let items: u64 = arg("--items").and_then(|v| v.parse().ok()).unwrap_or(200);
    // `--default-malloc` measures without the glibc tuning the loader is meant to apply.
    let tuned = !args.iter().any(|a| a == "--default-malloc")
        && stages::synth::allocator::tune_for_synthesis();
    if args.iter().any(|a| a == "--cv-single-thread") {
        opencv::core::set_num_threads(1).unwrap();
    }
    let f = Fixtures::load();
    let clip = fixture_clip(&f);

    // PNG crops on disk, as the shard store would hand them over.
    let dir = std::env::temp_dir().join(format!("synth_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for (t, img) in clip.frames.iter().enumerate() {
        let mut bgr = img.clone();
        bgr.data.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
        let m = Mat::new_rows_cols_with_data(256, 256 * 3, &bgr.data).unwrap();
        let m = m.reshape(3, 256).unwrap();
        let mut buf = Vector::<u8>::new();
        imgcodecs::imencode(".png", &m, &mut buf, &Vector::new()).unwrap();
        let p = dir.join(format!("f{t}.png"));
        std::fs::write(&p, buf.as_slice()).unwrap();
        paths.push(p);
    }
    let load = || -> ClipInput {
        let frames = paths
            .iter()
            .map(|p| decode_rgb(&std::fs::read(p).unwrap()))
            .collect();
        ClipInput {
            frames,
            landmarks: clip.landmarks.clone(),
        }
    };
    assert_eq!(load().frames, clip.frames, "PNG round trip");

    // The same crops in the shard store's default codec (`med`, zstd level 1): what the training
    // loader actually decodes (`fakestormer train` reads shard stores, not PNG folders).
    let med_paths: Vec<_> = clip
        .frames
        .iter()
        .enumerate()
        .map(|(t, img)| {
            let rgb =
                stages::rgb::RgbImage::new(img.width as u32, img.height as u32, img.data.clone())
                    .unwrap();
            let enc = lossless::encode(&rgb, ImageCodec::Med { zstd_level: 1 }).unwrap();
            let p = dir.join(format!("f{t}.med"));
            std::fs::write(&p, &enc.bytes).unwrap();
            p
        })
        .collect();
    let load_med = || -> ClipInput {
        let frames = med_paths
            .iter()
            .map(|p| {
                let enc = lossless::EncodedImage {
                    codec: ImageCodec::Med { zstd_level: 1 },
                    width: 256,
                    height: 256,
                    bytes: std::fs::read(p).unwrap(),
                };
                let rgb = lossless::decode(&enc).unwrap();
                ImageU8::from_vec(256, 256, 3, rgb.data).unwrap()
            })
            .collect();
        ClipInput {
            frames,
            landmarks: clip.landmarks.clone(),
        }
    };
    assert_eq!(load_med().frames, clip.frames, "med round trip");

    let cfg = SbvConfig::default();
    let keys: Vec<ItemKey> = (0..items)
        .map(|item| ItemKey {
            seed: 317,
            epoch: 0,
            item,
        })
        .collect();
    let per_s = |n: u64, secs: f64| n as f64 / secs;

    // Warm-up (OpenCV lazy init, page faults).
    for k in keys.iter().take(4) {
        sbv::synthesize(&load(), *k, &cfg).unwrap();
    }

    let (t0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..items {
        std::hint::black_box(load());
    }
    let base = per_s(items, t0.elapsed().as_secs_f64());
    let base_cpu = per_s(items, cpu_seconds() - c0);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..items {
        std::hint::black_box(load_med());
    }
    let base_med = per_s(items, t0.elapsed().as_secs_f64());
    let base_med_cpu = per_s(items, cpu_seconds() - c0);

    let inputs: Vec<ClipInput> = (0..items).map(|_| clip.clone()).collect();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for (inp, k) in inputs.iter().zip(&keys) {
        std::hint::black_box(sbv::synthesize(inp, *k, &cfg).unwrap());
    }
    let synth1 = per_s(items, t0.elapsed().as_secs_f64());
    let synth1_cpu = per_s(items, cpu_seconds() - c0);

    // A loader's loop: synthesize a batch of 16 items on the pool, assemble it into a reused
    // batch buffer, drop the pairs, next batch.
    let run_e2e = |threads: usize, load: &(dyn Fn() -> ClipInput + Sync)| -> (f64, f64) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let mut batch: Option<Batch> = None;
        for (i, chunk) in keys.chunks(16).enumerate() {
            let pairs: Vec<_> = pool.install(|| {
                chunk
                    .par_iter()
                    .map(|k| sbv::synthesize(&load(), *k, &cfg).unwrap())
                    .collect()
            });
            let bk = BatchKey {
                seed: 317,
                epoch: 0,
                index: i as u64,
            };
            match batch.as_mut() {
                Some(b) => b.assemble_into(&pairs, bk).unwrap(),
                None => batch = Some(Batch::assemble(&pairs, bk).unwrap()),
            }
            std::hint::black_box(&batch);
        }
        (
            per_s(items, t0.elapsed().as_secs_f64()),
            per_s(items, cpu_seconds() - c0),
        )
    };
    let (e2e1, e2e1_cpu) = run_e2e(1, &load);
    let (e2e2, e2e2_cpu) = run_e2e(2, &load);
    let (med1, med1_cpu) = run_e2e(1, &load_med);
    let (med2, med2_cpu) = run_e2e(2, &load_med);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!(
        "items per measurement: {items}; glibc malloc tuned: {tuned}; load average at end: {}",
        load.trim()
    );
    println!(
        "{:<44} {:>12} {:>16}",
        "measurement", "wall items/s", "items/CPU-second"
    );
    println!(
        "{:<44} {base:>12.1} {base_cpu:>16.1}",
        "baseline: read+decode 4 PNG crops, 1 thread"
    );
    println!(
        "{:<44} {synth1:>12.1} {synth1_cpu:>16.1}",
        "SBV synthesis only (decoded), 1 thread"
    );
    println!(
        "{:<44} {e2e1:>12.1} {e2e1_cpu:>16.1}",
        "decode + SBV + f32 batch, 1 thread"
    );
    println!(
        "{:<44} {e2e2:>12.1} {e2e2_cpu:>16.1}",
        "decode + SBV + f32 batch, 2 threads"
    );
    println!(
        "{:<44} {base_med:>12.1} {base_med_cpu:>16.1}",
        "baseline: read+decode 4 med crops, 1 thread"
    );
    println!(
        "{:<44} {med1:>12.1} {med1_cpu:>16.1}",
        "med decode + SBV + f32 batch, 1 thread"
    );
    println!(
        "{:<44} {med2:>12.1} {med2_cpu:>16.1}",
        "med decode + SBV + f32 batch, 2 threads"
    );
    println!(
        "ratio end-to-end / baseline (1 thread, wall): {:.3}; (per CPU-second): {:.3}",
        e2e1 / base,
        e2e1_cpu / base_cpu
    );
    println!("2-thread scaling (wall): x{:.2}", e2e2 / e2e1);

    if args.iter().any(|a| a == "--stages") {
        stage_breakdown(&f, &clip);
    }

    if let Some(out) = arg("--preview") {
        let cfg = SbvConfig {
            keep_debug: true,
            ..SbvConfig::default()
        };
        let n = arg("--preview-items")
            .and_then(|v| v.parse().ok())
            .unwrap_or(4);
        let pairs: Vec<_> = batch::synthesize_items(&inputs[..n], &keys[..n], &cfg, 2)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        preview::write_png(&pairs, std::path::Path::new(&out)).unwrap();
        println!("preview written to {out}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Per-primitive costs on the fixture frame (CPU µs per call, 1 thread), to see where a pair's
/// time goes.
fn stage_breakdown(f: &Fixtures, clip: &ClipInput) {
    use stages::synth::blend::{self, BlendParams};
    use stages::synth::color::{Degrade, PostTransform, SourceTransform};
    use stages::synth::deform::{AffineParams, MaskDeformation};
    use stages::synth::hull::{self, HullType};
    use stages::synth::warp;
    let reps = 200;
    let time = |name: &str, per_pair: usize, mut op: Box<dyn FnMut() + '_>| {
        let c0 = cpu_seconds();
        for _ in 0..reps {
            op();
        }
        let us = (cpu_seconds() - c0) * 1e6 / reps as f64;
        println!(
            "{name:<44} {us:>9.1} us/call  x{per_pair:<2} per pair = {:>7.2} ms",
            us * per_pair as f64 / 1000.0
        );
    };
    let img = clip.frames[0].clone();
    let pts: Vec<[f64; 2]> = stages::synth::landmarks::reorder(&f.points("lms81_raw_f0"));
    let hullm = hull::hull_mask(&pts, HullType::Components, 256, 256).unwrap();
    let bp = BlendParams {
        size_h: 290,
        size_w: 250,
        kernel_1: 15,
        kernel_2: 15,
        sigma_2: 25.0,
        blend_ratio: 1.0,
    };
    let m = blend::blend_mask(&hullm, &bp).unwrap();
    let src_tf = SourceTransform {
        rgb_shift: None,
        hsv: [0.1, -0.1, 0.2],
        brightness_contrast: (1.05, 0.02),
        degrade: Degrade::Sharpen {
            alpha: 0.3,
            lightness: 0.7,
        },
    };
    let post = PostTransform {
        rgb_shift: Some([3.0, -4.0, 5.0]),
        hsv: Some([0.1, 0.1, -0.1]),
        brightness_contrast: Some((1.1, 0.1)),
        jpeg_quality: Some(70),
    };
    let aff = AffineParams {
        translate_x: 3.0,
        translate_y: -2.0,
        scale_x: 1.02,
        scale_y: 0.98,
    };
    let mut rng = sbv::attempt_rng(
        ItemKey {
            seed: 0,
            epoch: 0,
            item: 0,
        },
        1,
    );
    let deform = MaskDeformation::draw(&mut rng, &aff, 256, 256);
    let m224 = warp::network_transform(236, 236, 224).unwrap();
    let view = warp::Rect {
        y0: 10,
        x0: 10,
        height: 236,
        width: 236,
    };
    let img224 = warp::warp_affine_linear_u8_view(&img, view, &m224, 224, 224, None);
    println!("per-primitive costs (CPU time, 1 thread, fixture frame 0):");
    time(
        "hull mask (components)",
        4,
        Box::new(|| drop(hull::hull_mask(&pts, HullType::Components, 256, 256).unwrap())),
    );
    time(
        "source transform (HSV+BC+sharpen) 256^2",
        4,
        Box::new(|| drop(src_tf.apply(&img).unwrap())),
    );
    time(
        "elastic field + affine index map (per clip)",
        1,
        Box::new(|| drop(MaskDeformation::draw(&mut rng.clone(), &aff, 256, 256))),
    );
    time(
        "deform mask (gather)",
        4,
        Box::new(|| drop(deform.apply_mask(&hullm))),
    );
    time(
        "blend mask (resize, 2 blurs, resize)",
        4,
        Box::new(|| drop(blend::blend_mask(&hullm, &bp).unwrap())),
    );
    time(
        "affine warp of source where m > 0",
        4,
        Box::new(|| drop(deform.apply_image(&img, Some(&m)))),
    );
    time(
        "blend + boundary map",
        4,
        Box::new(|| {
            drop(blend::blend_images(&img, &img, &m, 0.75).unwrap());
            drop(blend::boundary_map_u8(&m));
        }),
    );
    time(
        "2 warps to 224 + 1 to 14",
        4,
        Box::new(|| {
            drop(warp::warp_affine_linear_u8_view(
                &img, view, &m224, 224, 224, None,
            ));
            drop(warp::warp_affine_linear_u8_view(
                &img, view, &m224, 224, 224, None,
            ));
        }),
    );
    time(
        "post transform, all four fire (x8 max)",
        8,
        Box::new(|| {
            let mut x = img224.clone();
            post.apply(&mut x).unwrap();
        }),
    );
}
