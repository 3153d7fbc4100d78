//! Test-time clips against the official test-time path (fixtures README §2.5:
//! `crop_by_margin(img256_f0, 15)` → 224, bit-exact) and against a real shard store: windows from
//! offset 0, remainder dropped, frames prepared in stored order, too-short videos reported.

mod synth_common;

use stages::crop::CropRegion;
use stages::decode::DecodeReport;
use stages::detect::Face;
use stages::lossless::{self, ImageCodec};
use stages::rgb::RgbImage;
use stages::shard::{FrameCrop, ShardConfig, ShardReader, ShardWriter, VideoMeta};
use stages::synth::ImageU8;
use stages::test_clips::{
    prepare_frame, push_clip_tensor, video_clips, TestClipConfig, TestClipError,
};
use synth_common::Fixtures;

#[test]
fn margin_15_resize_matches_the_official_test_path() {
    let f = Fixtures::load();
    let got = prepare_frame(&f.image("img256_f0"), 15, 224).unwrap();
    let want = f.image("warp_test224_margin15");
    assert_eq!((got.height, got.width, got.channels), (224, 224, 3));
    let differing = got
        .data
        .iter()
        .zip(&want.data)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "pixels differing from the official output");
}

fn crop(img: &ImageU8, frame_index: u64) -> FrameCrop {
    let rgb = RgbImage::new(img.width as u32, img.height as u32, img.data.clone()).unwrap();
    FrameCrop {
        frame_index,
        time_s: frame_index as f64 / 25.0,
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
        // Test clips need no landmarks.
        landmarks: Vec::new(),
        image: lossless::encode(&rgb, ImageCodec::default()).unwrap(),
    }
}

#[test]
fn clips_of_a_stored_video() {
    let f = Fixtures::load();
    let imgs: Vec<ImageU8> = (0..4).map(|t| f.image(&format!("img256_f{t}"))).collect();
    let dir = std::env::temp_dir().join(format!("test_clips_store_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = ShardWriter::open(&dir, ShardConfig::default()).unwrap();
    for (id, n) in [("long", 11u64), ("short", 3)] {
        w.begin_video(id).unwrap();
        for i in 0..n {
            w.push_frame(crop(&imgs[(i % 4) as usize], 10 * i)).unwrap();
        }
        w.end_video(VideoMeta {
            video_id: id.into(),
            source: format!("{id}.mp4"),
            category: "original".into(),
            split: "test".into(),
            width: 256,
            height: 256,
            fps: 25.0,
            frame_count: 10 * n,
            no_face: Vec::new(),
            decode: DecodeReport::default(),
        })
        .unwrap();
    }
    w.finish().unwrap();
    let r = ShardReader::open(&dir).unwrap();
    let cfg = TestClipConfig {
        margin: 13,
        clip_frames: 4,
        size: 64,
    };
    let clips = video_clips(&r, "long", &cfg).unwrap();
    // 11 frames: clips [0,4) and [4,8); frames 8..11 are the dropped remainder.
    assert_eq!(clips.len(), 2);
    assert_eq!(clips[1].positions, 4..8);
    assert_eq!(clips[1].frame_indices, vec![40, 50, 60, 70]);
    for (k, c) in clips.iter().enumerate() {
        for (t, frame) in c.frames.iter().enumerate() {
            let want = prepare_frame(&imgs[(4 * k + t) % 4], 13, 64).unwrap();
            assert_eq!(frame, &want, "clip {k} frame {t}");
        }
    }
    let mut x = Vec::new();
    for c in &clips {
        push_clip_tensor(&c.frames, &mut x);
    }
    assert_eq!(x.len(), 2 * 3 * 4 * 64 * 64);
    match video_clips(&r, "short", &cfg) {
        Err(TestClipError::TooFewFrames {
            stored: 3, need: 4, ..
        }) => {}
        other => panic!("expected TooFewFrames, got {other:?}"),
    }
    assert!(video_clips(&r, "absent", &cfg).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
