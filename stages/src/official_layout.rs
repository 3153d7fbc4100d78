//! Export of a shard store to the official FakeSTormer layout (spec §5.1–5.2) for interop:
//! `<out>/<split>/videos/<category>/<video>/NNN.png` crops and the landmarks JSON
//! `<out>/processed_data/<compression>/<split>_<dataset>_videos_<N>.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::lossless;
use crate::shard::{write_atomic, ShardError, ShardReader};

/// Names used in the exported paths.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportOptions {
    /// `DATASET` of the landmark config, e.g. `FaceForensics`.
    pub dataset: String,
    /// `COMPRESSION`, e.g. `c23`.
    pub compression: String,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            dataset: "FaceForensics".into(),
            compression: "c23".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("video {video} frame {frame}: {reason}")]
    Image {
        video: String,
        frame: u64,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub videos: usize,
    pub images: usize,
    pub json_files: Vec<PathBuf>,
}

/// The official "alignment": rotate about the image centre by the angle of the inner eye
/// corners (points 39 and 42), `cv2.getRotationMatrix2D(centre, angle°, 1)`, truncated to int.
pub fn aligned_landmarks(lms: &[[i64; 2]], width: u32, height: u32) -> Vec<[i64; 2]> {
    if lms.len() <= 42 {
        return Vec::new();
    }
    let (a, b) = (lms[39], lms[42]);
    let dx = (a[0] - b[0]) as f64;
    let dy = (a[1] - b[1]) as f64;
    // numpy: atan(dy/dx) with dx = 0 gives ±90° (or nan for 0/0, which we map to 0).
    let angle = if dx == 0.0 {
        if dy == 0.0 {
            0.0
        } else {
            90f64.copysign(dy)
        }
    } else {
        (dy / dx).atan().to_degrees()
    };
    let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
    let r = angle.to_radians();
    let (al, be) = (r.cos(), r.sin());
    let m = [
        [al, be, (1.0 - al) * cx - be * cy],
        [-be, al, be * cx + (1.0 - al) * cy],
    ];
    lms.iter()
        .map(|p| {
            let (x, y) = (p[0] as f64, p[1] as f64);
            [
                (m[0][0] * x + m[0][1] * y + m[0][2]) as i64,
                (m[1][0] * x + m[1][1] * y + m[1][2]) as i64,
            ]
        })
        .collect()
}

#[derive(serde::Serialize)]
struct JsonEntry {
    image_path: String,
    file_name: String,
    id: u64,
    fake_type: String,
    orig_lms: Vec<[i64; 2]>,
    aligned_lms: Vec<[i64; 2]>,
}

#[derive(serde::Serialize)]
struct JsonFile {
    data: Vec<JsonEntry>,
}

/// Writes every stored crop as PNG in the official layout plus one landmarks JSON per split.
pub fn export_official(
    reader: &ShardReader,
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    export_official_stores(std::slice::from_ref(reader), out, opts)
}

/// [`export_official`] over several stores (e.g. the one-store-per-video output of the
/// `shard-store` sink), with one landmarks JSON per split covering all of them.
pub fn export_official_stores(
    readers: &[ShardReader],
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let mut report = ExportReport::default();
    // split -> (landmark count, entries)
    let mut per_split: BTreeMap<String, (usize, Vec<JsonEntry>)> = BTreeMap::new();
    for (reader, v) in readers
        .iter()
        .flat_map(|r| r.videos().iter().map(move |v| (r, v)))
    {
        let meta = &v.meta;
        let rel_dir = format!("{}/videos/{}/{}", meta.split, meta.category, meta.video_id);
        let crops = reader.read_frames(&meta.video_id, 0..v.frames.len())?;
        let slot = per_split
            .entry(meta.split.clone())
            .or_insert((0, Vec::new()));
        for c in crops {
            let img = c.decode_image().map_err(|e| ExportError::Image {
                video: meta.video_id.clone(),
                frame: c.frame_index,
                reason: e.to_string(),
            })?;
            let file_name = format!("{:03}.png", c.frame_index);
            let path = out.join(&rel_dir).join(&file_name);
            lossless::write_png(&img, &path).map_err(|e| ExportError::Io {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            report.images += 1;
            let orig: Vec<[i64; 2]> = c
                .landmarks
                .iter()
                .map(|p| [p[0].round() as i64, p[1].round() as i64])
                .collect();
            if !orig.is_empty() {
                slot.0 = slot.0.max(orig.len());
            }
            let aligned = aligned_landmarks(&orig, img.width, img.height);
            let id = slot.1.len() as u64;
            slot.1.push(JsonEntry {
                image_path: format!("{rel_dir}/{file_name}"),
                file_name,
                id,
                fake_type: meta.category.clone(),
                orig_lms: orig,
                aligned_lms: aligned,
            });
        }
        report.videos += 1;
    }
    for (split, (n, data)) in per_split {
        let path = out
            .join("processed_data")
            .join(&opts.compression)
            .join(format!("{split}_{}_videos_{n}.json", opts.dataset));
        let text = serde_json::to_vec(&JsonFile { data }).map_err(|e| ExportError::Io {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &text).map_err(|e| ExportError::Io {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        report.json_files.push(path);
    }
    Ok(report)
}
