//! Training clip sampler over shard stores (spec §6, official `datasets/common.py:_sampler`).
//!
//! Each video's stored frames (in stored order, i.e. increasing frame index) are cut into
//! non-overlapping windows of [`CLIP_FRAMES`] consecutive stored frames `[k, k+T)` for
//! `k = s, s+T, …` while `k+T ≤ n`. The start offset `s` is 0 in epoch 0 and drawn from {0,1,2}
//! (never 3, as the official `randint(0, 3)`) for every later epoch, once per video. The draw is a
//! pure function of (seed, epoch, video id), so the clip list does not depend on thread count,
//! order of evaluation or which other videos are present.
//!
//! Landmarks: the store index does not say which frames have landmarks, so windows are cut from
//! the index alone and a window containing a frame without landmarks is **dropped when it is
//! loaded** ([`ClipError::NoLandmarks`], naming the video and frame); the other windows keep
//! their positions, so nothing else shifts.
//!
//! A sampler input folder is either a store (it holds `index.bin`) or a folder whose sub-folders
//! (at any depth) hold stores, e.g. one store per preprocessed video.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::shard::{ShardError, ShardReader, INDEX_FILE};
use crate::synth::sbv::ClipInput;
use crate::synth::ImageU8;

/// Frames per clip (NUM_FRAMES).
pub const CLIP_FRAMES: usize = 4;
/// Start offsets are drawn from `0..=MAX_OFFSET` after epoch 0.
pub const MAX_OFFSET: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("{0}: no shard store (no {INDEX_FILE}) in it or below it")]
    NoStore(PathBuf),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("video {video}: frame {frame_index} has no landmarks")]
    NoLandmarks { video: String, frame_index: u64 },
    #[error("video {video}: frame {frame_index}: {reason}")]
    BadFrame {
        video: String,
        frame_index: u64,
        reason: String,
    },
}

/// One sampled clip: `frames` stored positions of a video in store `store` of a [`ShardSet`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClipRef {
    pub store: usize,
    pub video_id: String,
    /// Stored positions (0 = first stored frame of the video).
    pub positions: Range<usize>,
}

impl std::fmt::Display for ClipRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}+++{}..{}",
            self.video_id, self.positions.start, self.positions.end
        )
    }
}

/// splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of the id: stable across platforms and Rust releases (unlike `DefaultHasher`).
fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The start offset of `video_id` in `epoch`: 0 in epoch 0, else in {0, 1, 2}.
pub fn start_offset(seed: u64, epoch: u64, video_id: &str) -> usize {
    if epoch == 0 {
        return 0;
    }
    let h = mix(mix(mix(seed ^ 0x434c_4950_5341_4d50) ^ epoch) ^ id_hash(video_id));
    (h % (MAX_OFFSET + 1)) as usize
}

/// Non-overlapping windows `[k, k+t)` for `k = offset, offset+t, …` within `0..stored`.
pub fn windows(stored: usize, offset: usize, t: usize) -> Vec<Range<usize>> {
    if t == 0 {
        return Vec::new();
    }
    (offset..)
        .step_by(t)
        .take_while(|k| k + t <= stored)
        .map(|k| k..k + t)
        .collect()
}

/// The shard stores found at or below a folder, in path order.
pub struct ShardSet {
    stores: Vec<(PathBuf, ShardReader)>,
}

fn find_stores(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ClipError> {
    if dir.join(INDEX_FILE).is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let io = |e: std::io::Error| ClipError::Io {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    subs.sort();
    for s in subs {
        find_stores(&s, out)?;
    }
    Ok(())
}

impl ShardSet {
    /// Opens `dir` if it is a store, else every store below it (sorted by path). A store that
    /// fails to open is an error naming it; no store at all is [`ClipError::NoStore`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ClipError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(ClipError::Io {
                path: dir.to_path_buf(),
                reason: "not a folder".into(),
            });
        }
        let mut paths = Vec::new();
        find_stores(dir, &mut paths)?;
        if paths.is_empty() {
            return Err(ClipError::NoStore(dir.to_path_buf()));
        }
        let stores = paths
            .into_iter()
            .map(|p| ShardReader::open(&p).map(|r| (p, r)))
            .collect::<Result<_, _>>()?;
        Ok(Self { stores })
    }

    pub fn stores(&self) -> impl Iterator<Item = (&Path, &ShardReader)> {
        self.stores.iter().map(|(p, r)| (p.as_path(), r))
    }

    /// Every clip of `epoch`: stores in path order, videos sorted by id within a store, windows
    /// in position order.
    pub fn clips(&self, seed: u64, epoch: u64) -> Vec<ClipRef> {
        let mut out = Vec::new();
        for (store, (_, r)) in self.stores.iter().enumerate() {
            let mut videos: Vec<_> = r.videos().iter().collect();
            videos.sort_by(|a, b| a.meta.video_id.cmp(&b.meta.video_id));
            for v in videos {
                let id = &v.meta.video_id;
                let s = start_offset(seed, epoch, id);
                out.extend(
                    windows(v.frames.len(), s, CLIP_FRAMES)
                        .into_iter()
                        .map(|positions| ClipRef {
                            store,
                            video_id: id.clone(),
                            positions,
                        }),
                );
            }
        }
        out
    }

    /// Reads and decodes a clip's frames and landmarks; a frame without landmarks drops the clip.
    pub fn load(&self, clip: &ClipRef) -> Result<ClipInput, ClipError> {
        let (path, r) = self.stores.get(clip.store).ok_or_else(|| ClipError::Io {
            path: PathBuf::new(),
            reason: format!(
                "clip {clip} names store {} of {}",
                clip.store,
                self.stores.len()
            ),
        })?;
        let crops = r.read_frames(&clip.video_id, clip.positions.clone())?;
        let mut frames = Vec::with_capacity(crops.len());
        let mut landmarks = Vec::with_capacity(crops.len());
        for c in crops {
            let bad = |reason: String| ClipError::BadFrame {
                video: format!("{} ({})", clip.video_id, path.display()),
                frame_index: c.frame_index,
                reason,
            };
            if c.landmarks.is_empty() {
                return Err(ClipError::NoLandmarks {
                    video: clip.video_id.clone(),
                    frame_index: c.frame_index,
                });
            }
            let img = c.decode_image().map_err(|e| bad(e.to_string()))?;
            let img = ImageU8::from_vec(img.height as usize, img.width as usize, 3, img.data)
                .map_err(|e| bad(e.to_string()))?;
            frames.push(img);
            landmarks.push(c.landmarks);
        }
        Ok(ClipInput { frames, landmarks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_non_overlapping_and_in_range() {
        assert_eq!(windows(10, 0, 4), vec![0..4, 4..8]);
        assert_eq!(windows(10, 2, 4), vec![2..6, 6..10]);
        assert_eq!(windows(9, 2, 4), vec![2..6]);
        assert!(windows(3, 0, 4).is_empty());
        assert!(windows(5, 2, 4).is_empty());
    }

    #[test]
    fn offsets_follow_the_epoch_rule() {
        let ids: Vec<String> = (0..200).map(|i| format!("video_{i:03}")).collect();
        for id in &ids {
            assert_eq!(start_offset(317, 0, id), 0);
        }
        let mut seen = [0usize; 3];
        for epoch in 1..6 {
            for id in &ids {
                let s = start_offset(317, epoch, id);
                assert!(s <= MAX_OFFSET as usize);
                assert_eq!(s, start_offset(317, epoch, id), "not deterministic");
                seen[s] += 1;
            }
        }
        // 1000 draws from {0,1,2}: each value must occur (expected ~333 each).
        assert!(seen.iter().all(|&n| n > 250), "offset histogram {seen:?}");
        // Re-drawn each epoch and dependent on the seed.
        let e1: Vec<_> = ids.iter().map(|i| start_offset(317, 1, i)).collect();
        let e2: Vec<_> = ids.iter().map(|i| start_offset(317, 2, i)).collect();
        let s2: Vec<_> = ids.iter().map(|i| start_offset(318, 1, i)).collect();
        assert_ne!(e1, e2);
        assert_ne!(e1, s2);
    }

    use crate::crop::CropRegion;
    use crate::decode::DecodeReport;
    use crate::detect::Face;
    use crate::lossless::{self, ImageCodec};
    use crate::rgb::RgbImage;
    use crate::shard::{FrameCrop, ShardConfig, ShardWriter, VideoMeta};

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("clips_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Frame `i` of a video: a 16×16 image whose pixels encode (video, i), with landmarks unless
    /// `i` is in `no_lms`.
    fn crop(video: u8, i: u64, no_lms: &[u64]) -> FrameCrop {
        let data: Vec<u8> = (0..16 * 16 * 3)
            .map(|p| (p as u8) ^ video ^ i as u8)
            .collect();
        let img = RgbImage::new(16, 16, data).unwrap();
        FrameCrop {
            frame_index: i * 2,
            time_s: i as f64,
            face: Face {
                x0: 0.0,
                y0: 0.0,
                x1: 16.0,
                y1: 16.0,
                score: 1.0,
                landmarks5: None,
            },
            region: CropRegion {
                x0: 0,
                y0: 0,
                x1: 16,
                y1: 16,
            },
            landmarks: if no_lms.contains(&i) {
                Vec::new()
            } else {
                vec![[i as f32, video as f32]; 68]
            },
            image: lossless::encode(&img, ImageCodec::default()).unwrap(),
        }
    }

    /// Writes videos (id, stored frame count, frames without landmarks) into a store at `dir`.
    fn write_store(dir: &Path, videos: &[(&str, u64, &[u64])]) {
        let mut w = ShardWriter::open(dir, ShardConfig::default()).unwrap();
        for (k, (id, n, no_lms)) in videos.iter().enumerate() {
            w.begin_video(id).unwrap();
            for i in 0..*n {
                w.push_frame(crop(k as u8, i, no_lms)).unwrap();
            }
            w.end_video(VideoMeta {
                video_id: id.to_string(),
                source: format!("{id}.mp4"),
                category: "original".into(),
                split: "train".into(),
                width: 16,
                height: 16,
                fps: 25.0,
                frame_count: *n * 2,
                no_face: Vec::new(),
                decode: DecodeReport::default(),
            })
            .unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn clips_from_a_store_follow_the_offsets_and_load_their_frames() {
        let dir = temp_dir("single");
        // Written out of id order: the clip list is sorted by id.
        write_store(&dir, &[("b", 11, &[]), ("a", 9, &[5]), ("c", 3, &[])]);
        let set = ShardSet::open(&dir).unwrap();
        let e0 = set.clips(7, 0);
        let want: Vec<(&str, Range<usize>)> =
            vec![("a", 0..4), ("a", 4..8), ("b", 0..4), ("b", 4..8)];
        let got: Vec<(&str, Range<usize>)> = e0
            .iter()
            .map(|c| (c.video_id.as_str(), c.positions.clone()))
            .collect();
        assert_eq!(got, want);
        for epoch in 1..5 {
            let clips = set.clips(7, epoch);
            for id in ["a", "b", "c"] {
                let n = [("a", 9), ("b", 11), ("c", 3)]
                    .iter()
                    .find(|v| v.0 == id)
                    .unwrap()
                    .1;
                let mine: Vec<_> = clips
                    .iter()
                    .filter(|c| c.video_id == id)
                    .map(|c| c.positions.clone())
                    .collect();
                assert_eq!(mine, windows(n, start_offset(7, epoch, id), CLIP_FRAMES));
            }
        }
        // Frames come back in position order with their landmarks; frame 5 of `a` has none.
        let b = set.load(&e0[3]).unwrap();
        assert_eq!(b.frames.len(), 4);
        for (t, (img, lms)) in b.frames.iter().zip(&b.landmarks).enumerate() {
            let i = 4 + t as u64;
            assert_eq!(img.data, crop(0, i, &[]).decode_image().unwrap().data);
            assert_eq!(lms[0], [i as f32, 0.0]);
        }
        assert!(set.load(&e0[0]).is_ok());
        match set.load(&e0[1]) {
            Err(ClipError::NoLandmarks { video, frame_index }) => {
                assert_eq!(video, "a");
                assert_eq!(frame_index, 10);
            }
            other => panic!("expected NoLandmarks, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_of_stores_is_searched_recursively() {
        let dir = temp_dir("nested");
        write_store(&dir.join("z/v2"), &[("v2", 4, &[])]);
        write_store(&dir.join("a"), &[("v1", 8, &[])]);
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        let set = ShardSet::open(&dir).unwrap();
        let clips = set.clips(1, 0);
        let got: Vec<_> = clips
            .iter()
            .map(|c| (c.store, c.video_id.as_str(), c.positions.start))
            .collect();
        assert_eq!(got, vec![(0, "v1", 0), (0, "v1", 4), (1, "v2", 0)]);
        assert_eq!(set.load(&clips[2]).unwrap().frames.len(), 4);
        assert!(matches!(
            ShardSet::open(dir.join("empty")),
            Err(ClipError::NoStore(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
