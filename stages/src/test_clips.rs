//! Test-time clips (spec §7.1): a video's stored face crops are cut into non-overlapping clips of
//! T consecutive stored frames from offset 0 (a trailing remainder of fewer than T frames is
//! dropped); every frame loses `margin` pixels on each border (`crop_by_margin`, the per-dataset
//! test margin of spec §8) and is warped to the network size with the corner-aligned bilinear
//! transform of the official code (the same warp synthesis uses), then ImageNet-normalised.
//!
//! Unlike training clips, test clips need no landmarks, so a video whose crops have none (e.g.
//! preprocessed with `landmarks = false`) is still scored.

use std::ops::Range;

use crate::clips::windows;
use crate::shard::{ShardError, ShardReader};
use crate::synth::batch::{normalise_clip, normalise_lut};
use crate::synth::warp::{self, Rect};
use crate::synth::{ImageU8, SynthError};

/// How test clips are cut and sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestClipConfig {
    /// Pixels removed from every border of a stored crop before resizing.
    pub margin: usize,
    /// Frames per clip T (4).
    pub clip_frames: usize,
    /// Network input side (224 for the official model).
    pub size: usize,
}

impl Default for TestClipConfig {
    fn default() -> Self {
        Self {
            margin: 15,
            clip_frames: 4,
            size: 224,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestClipError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("video {video}: {stored} stored frames with a face, a clip needs {need}")]
    TooFewFrames {
        video: String,
        stored: usize,
        need: usize,
    },
    #[error("video {video}: frame {frame_index}: {reason}")]
    BadFrame {
        video: String,
        frame_index: u64,
        reason: String,
    },
    #[error("margin {margin} leaves nothing of a {height}x{width} crop")]
    Margin {
        margin: usize,
        height: usize,
        width: usize,
    },
    #[error("resize: {0}")]
    Warp(#[from] SynthError),
}

/// One test clip: the source frame indices and the prepared `size`×`size` RGB frames.
#[derive(Debug, Clone, PartialEq)]
pub struct TestClip {
    /// Stored positions of the frames (0 = first stored frame of the video).
    pub positions: Range<usize>,
    /// Frame indices in the video file.
    pub frame_indices: Vec<u64>,
    pub frames: Vec<ImageU8>,
}

/// The clip windows of a video with `stored` frames: `[0, T)`, `[T, 2T)`, … (offset 0).
pub fn test_windows(stored: usize, clip_frames: usize) -> Vec<Range<usize>> {
    windows(stored, 0, clip_frames)
}

/// `crop_by_margin(margin)` then the network-size warp of one frame (any H×W×3).
pub fn prepare_frame(img: &ImageU8, margin: usize, size: usize) -> Result<ImageU8, TestClipError> {
    let (h, w) = (img.height, img.width);
    if 2 * margin >= h || 2 * margin >= w {
        return Err(TestClipError::Margin {
            margin,
            height: h,
            width: w,
        });
    }
    let (ch, cw) = (h - 2 * margin, w - 2 * margin);
    let m = warp::network_transform(ch, cw, size)?;
    let view = Rect {
        y0: margin,
        x0: margin,
        height: ch,
        width: cw,
    };
    Ok(warp::warp_affine_linear_u8_view(
        img, view, &m, size, size, None,
    ))
}

/// The windows of `video_id` in `reader`; none (fewer than T stored frames) is
/// [`TestClipError::TooFewFrames`].
pub fn video_windows(
    reader: &ShardReader,
    video_id: &str,
    clip_frames: usize,
) -> Result<Vec<Range<usize>>, TestClipError> {
    let entry = reader
        .video(video_id)
        .ok_or_else(|| ShardError::UnknownVideo(video_id.to_owned()))?;
    let stored = entry.frames.len();
    let wins = test_windows(stored, clip_frames);
    if wins.is_empty() {
        return Err(TestClipError::TooFewFrames {
            video: video_id.to_owned(),
            stored,
            need: clip_frames,
        });
    }
    Ok(wins)
}

/// One clip (stored positions `positions`) of `video_id`, frames prepared.
pub fn load_clip(
    reader: &ShardReader,
    video_id: &str,
    positions: Range<usize>,
    cfg: &TestClipConfig,
) -> Result<TestClip, TestClipError> {
    let crops = reader.read_frames(video_id, positions.clone())?;
    let mut frames = Vec::with_capacity(crops.len());
    for c in &crops {
        let bad = |reason: String| TestClipError::BadFrame {
            video: video_id.to_owned(),
            frame_index: c.frame_index,
            reason,
        };
        let img = c.decode_image().map_err(|e| bad(e.to_string()))?;
        let img = ImageU8::from_vec(img.height as usize, img.width as usize, 3, img.data)
            .map_err(|e| bad(e.to_string()))?;
        frames.push(prepare_frame(&img, cfg.margin, cfg.size)?);
    }
    Ok(TestClip {
        frame_indices: crops.iter().map(|c| c.frame_index).collect(),
        frames,
        positions,
    })
}

/// Every test clip of `video_id` in `reader`, frames prepared.
pub fn video_clips(
    reader: &ShardReader,
    video_id: &str,
    cfg: &TestClipConfig,
) -> Result<Vec<TestClip>, TestClipError> {
    video_windows(reader, video_id, cfg.clip_frames)?
        .into_iter()
        .map(|w| load_clip(reader, video_id, w, cfg))
        .collect()
}

/// Appends one clip as a 3×T×H×W ImageNet-normalised f32 block (the layout of
/// `synth::batch::Batch::images`), so clips stack into an N×3×T×H×W batch.
pub fn push_clip_tensor(frames: &[ImageU8], out: &mut Vec<f32>) {
    let Some(first) = frames.first() else {
        return;
    };
    let len = 3 * frames.len() * first.height * first.width;
    let start = out.len();
    out.resize(start + len, 0.0);
    normalise_clip(frames, &normalise_lut(), &mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_at_zero_and_drop_the_remainder() {
        assert_eq!(test_windows(32, 4).len(), 8);
        assert_eq!(test_windows(10, 4), vec![0..4, 4..8]);
        assert!(test_windows(3, 4).is_empty());
    }

    #[test]
    fn a_margin_that_eats_the_crop_is_an_error() {
        let img = ImageU8::new(20, 20, 3);
        assert!(matches!(
            prepare_frame(&img, 10, 8),
            Err(TestClipError::Margin { margin: 10, .. })
        ));
        assert_eq!(prepare_frame(&img, 9, 8).unwrap().height, 8);
    }

    #[test]
    fn clip_tensor_is_planar_and_normalised() {
        // Two 1×2 frames with distinct pixel values: channel planes come out frame-major.
        let f = |v: u8| ImageU8::from_vec(1, 2, 3, (0..6).map(|i| v + i).collect()).unwrap();
        let mut out = vec![9.0];
        push_clip_tensor(&[f(10), f(100)], &mut out);
        assert_eq!(out.len(), 1 + 3 * 2 * 2);
        let mean = crate::synth::batch::MEAN;
        let std = crate::synth::batch::STD;
        let norm = |v: u8, c: usize| ((v as f64 / 255.0 - mean[c]) / std[c]) as f32;
        // out[1 + (c·T + t)·hw + x] = frame t, pixel x, channel c.
        for c in 0..3 {
            for (t, base) in [10u8, 100].into_iter().enumerate() {
                for x in 0..2 {
                    let got = out[1 + (c * 2 + t) * 2 + x];
                    assert_eq!(got, norm(base + (x * 3 + c) as u8, c));
                }
            }
        }
    }
}
