//! dlib's `shape_predictor`: a cascade of regression-tree forests over pixel-difference
//! features (Kazemi & Sullivan 2014), loaded from dlib's serialized model files.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::dlib_format::{DlibReader, FormatError};
use super::image::GrayImage;
use super::leaf_table::LeafTable;
use super::rect::DlibRect;
use super::similarity::similarity_linear;

/// Why a shape predictor model could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read shape predictor {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shape predictor {item}: malformed dlib data: {source}")]
    Format { item: String, source: FormatError },
    #[error("shape predictor {item}: {reason}")]
    Invalid { item: String, reason: String },
}

/// One split node: go left when `f[idx1] - f[idx2] > thresh`.
#[derive(Debug, Clone, Copy)]
struct Split {
    idx1: u32,
    idx2: u32,
    thresh: f32,
}

/// Where a tree's nodes and leaves live in its cascade's flat arrays.
#[derive(Debug, Clone, Copy)]
struct TreeSpan {
    split_start: u32,
    num_splits: u32,
    /// Index of the tree's first leaf (in leaves, not floats).
    leaf_start: u32,
}

/// One cascade level: its feature pixels (relative to the mean shape) and its forest.
#[derive(Debug, Clone)]
struct Cascade {
    /// Landmark each feature pixel is anchored to.
    anchors: Vec<u32>,
    /// Offset of each feature pixel from its anchor, in the normalised (unit box) frame.
    deltas: Vec<[f32; 2]>,
    trees: Vec<TreeSpan>,
    splits: Vec<Split>,
    /// Where this level's leaves start in [`ShapePredictor::leaves`], in floats.
    leaf_offset: usize,
}

/// A loaded dlib shape predictor. Immutable and `Sync`: share one across threads and
/// give each thread its own [`PredictScratch`].
#[derive(Debug, Clone)]
pub struct ShapePredictor {
    num_parts: usize,
    /// Mean shape in the unit-box frame, `[x0, y0, x1, y1, …]`.
    initial_shape: Vec<f32>,
    cascades: Vec<Cascade>,
    /// All leaves of all trees of all levels, each `2 * num_parts` floats, contiguous.
    leaves: LeafTable,
}

/// Per-thread working memory, so prediction allocates nothing after the first call.
#[derive(Debug, Default, Clone)]
pub struct PredictScratch {
    shape: Vec<f32>,
    features: Vec<f32>,
    /// Buffer offset of each feature pixel (`usize::MAX` outside the image).
    pixels: Vec<usize>,
    /// Leaf reached in each tree of the current cascade level.
    leaves: Vec<u32>,
}

impl PredictScratch {
    /// Empty scratch; buffers grow on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ShapePredictor {
    /// Loads a serialized `dlib::shape_predictor` (e.g. `shape_predictor_68_face_landmarks.dat`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses a serialized predictor held in memory; `item` names it in errors.
    pub fn from_bytes(bytes: &[u8], item: &str) -> Result<Self, LoadError> {
        let fmt = |source| LoadError::Format {
            item: item.to_string(),
            source,
        };
        let invalid = |reason: String| LoadError::Invalid {
            item: item.to_string(),
            reason,
        };
        let mut r = DlibReader::new(bytes);
        let version = r.read_signed(4, "version").map_err(fmt)?;
        if version != 1 {
            return Err(invalid(format!(
                "unsupported shape_predictor version {version} (expected 1)"
            )));
        }
        let (nr, nc, initial_shape) = r.read_f32_matrix("initial_shape").map_err(fmt)?;
        if nc != 1 || nr == 0 || nr % 2 != 0 {
            return Err(invalid(format!(
                "initial_shape is {nr}x{nc}; expected a non-empty column of 2*parts values"
            )));
        }
        let num_parts = nr / 2;

        // forests: vector<vector<regression_tree>>
        let num_cascades = r.read_len(1, "forests").map_err(fmt)?;
        let mut cascades = Vec::with_capacity(num_cascades);
        // dlib writes each float as two variable-length integers of at least one byte, so
        // the file holds at most len / 2 floats: room for every leaf without reallocating.
        let mut leaves = LeafTable::with_capacity(bytes.len() / 2);
        for c in 0..num_cascades {
            let num_trees = r.read_len(2, "forest").map_err(fmt)?;
            let mut trees = Vec::with_capacity(num_trees);
            let mut splits = Vec::new();
            let leaf_offset = leaves.len();
            let mut num_leaves_total = 0usize;
            for t in 0..num_trees {
                let ns = r.read_len(3, "splits").map_err(fmt)?;
                let split_start = splits.len();
                for _ in 0..ns {
                    let idx1 = r.read_usize("split idx1").map_err(fmt)?;
                    let idx2 = r.read_usize("split idx2").map_err(fmt)?;
                    let thresh = r.read_f32("split thresh").map_err(fmt)?;
                    let (idx1, idx2) = match (u32::try_from(idx1), u32::try_from(idx2)) {
                        (Ok(a), Ok(b)) => (a, b),
                        _ => {
                            return Err(invalid(format!(
                                "cascade {c} tree {t}: split index {idx1}/{idx2} too large"
                            )))
                        }
                    };
                    splits.push(Split { idx1, idx2, thresh });
                }
                let nl = r.read_len(2, "leaf_values").map_err(fmt)?;
                if nl != ns + 1 {
                    return Err(invalid(format!(
                        "cascade {c} tree {t}: {nl} leaves for {ns} splits (dlib requires splits + 1)"
                    )));
                }
                for l in 0..nl {
                    let (lr, lc, v) = r.read_f32_matrix("leaf value").map_err(fmt)?;
                    if lr * lc != 2 * num_parts || lc != 1 {
                        return Err(invalid(format!(
                            "cascade {c} tree {t} leaf {l}: {lr}x{lc} values, expected {}x1",
                            2 * num_parts
                        )));
                    }
                    leaves.extend_from_slice(&v);
                }
                let too_big = |_| invalid(format!("cascade {c}: too many nodes"));
                trees.push(TreeSpan {
                    split_start: u32::try_from(split_start).map_err(too_big)?,
                    num_splits: u32::try_from(ns).map_err(too_big)?,
                    leaf_start: u32::try_from(num_leaves_total).map_err(too_big)?,
                });
                num_leaves_total += nl;
            }
            cascades.push(Cascade {
                anchors: Vec::new(),
                deltas: Vec::new(),
                trees,
                splits,
                leaf_offset,
            });
        }

        // anchor_idx: vector<vector<unsigned long>>
        let n = r.read_len(1, "anchor_idx").map_err(fmt)?;
        if n != num_cascades {
            return Err(invalid(format!(
                "{n} anchor sets for {num_cascades} cascades"
            )));
        }
        for (c, cascade) in cascades.iter_mut().enumerate() {
            let m = r.read_len(2, "anchor_idx[i]").map_err(fmt)?;
            cascade.anchors.reserve_exact(m);
            for _ in 0..m {
                let a = r.read_usize("anchor").map_err(fmt)?;
                if a >= num_parts {
                    return Err(invalid(format!(
                        "cascade {c}: anchor {a} >= {num_parts} parts"
                    )));
                }
                cascade.anchors.push(a as u32);
            }
        }
        // deltas: vector<vector<dlib::vector<float,2>>>
        let n = r.read_len(1, "deltas").map_err(fmt)?;
        if n != num_cascades {
            return Err(invalid(format!(
                "{n} delta sets for {num_cascades} cascades"
            )));
        }
        for (c, cascade) in cascades.iter_mut().enumerate() {
            let m = r.read_len(4, "deltas[i]").map_err(fmt)?;
            if m != cascade.anchors.len() {
                return Err(invalid(format!(
                    "cascade {c}: {m} deltas for {} anchors",
                    cascade.anchors.len()
                )));
            }
            cascade.deltas.reserve_exact(m);
            for _ in 0..m {
                let x = r.read_f32("delta x").map_err(fmt)?;
                let y = r.read_f32("delta y").map_err(fmt)?;
                cascade.deltas.push([x, y]);
            }
            let nf = cascade.anchors.len();
            if let Some(s) = cascade
                .splits
                .iter()
                .find(|s| s.idx1 as usize >= nf || s.idx2 as usize >= nf)
            {
                return Err(invalid(format!(
                    "cascade {c}: split uses feature {}/{} but only {nf} feature pixels exist",
                    s.idx1, s.idx2
                )));
            }
        }
        if r.remaining() != 0 {
            tracing::debug!(
                item,
                trailing = r.remaining(),
                "trailing bytes after shape_predictor"
            );
        }
        Ok(Self {
            num_parts,
            initial_shape,
            cascades,
            leaves,
        })
    }

    /// Number of landmarks the model predicts (68, 81, 5, …).
    pub fn num_parts(&self) -> usize {
        self.num_parts
    }

    /// Number of cascade levels.
    pub fn num_cascades(&self) -> usize {
        self.cascades.len()
    }

    /// Number of trees over all cascade levels.
    pub fn num_trees(&self) -> usize {
        self.cascades.iter().map(|c| c.trees.len()).sum()
    }

    /// The mean shape in the unit-box frame (`(0,0)` = box top-left, `(1,1)` = bottom-right).
    pub fn initial_shape(&self) -> &[f32] {
        &self.initial_shape
    }

    /// Runs the cascade and leaves the final shape, in the unit-box frame, in
    /// `scratch.shape`. This is `shape_predictor::operator()` minus the last mapping.
    fn run(&self, img: &GrayImage<'_>, rect: DlibRect, scratch: &mut PredictScratch) {
        let PredictScratch {
            shape,
            features,
            pixels,
            leaves,
        } = scratch;
        shape.clear();
        shape.extend_from_slice(&self.initial_shape);
        let to_img = UnitToImage::new(rect);
        for cascade in &self.cascades {
            // Feature pixels: anchored deltas rotated/scaled by the similarity from the mean
            // shape to the current estimate (dlib casts it to float first), then mapped to
            // image pixels and rounded to the nearest pixel; outside the image reads 0.
            // Located first (and prefetched), read second: the reads then mostly hit cache.
            let m = similarity_linear(&self.initial_shape, shape).map(|v| v as f32);
            pixels.clear();
            pixels.extend(cascade.anchors.iter().zip(&cascade.deltas).map(|(&a, d)| {
                let a = a as usize;
                let x = (m[0] * d[0] + m[1] * d[1]) + shape[2 * a];
                let y = (m[2] * d[0] + m[3] * d[1]) + shape[2 * a + 1];
                let (px, py) = to_img.apply(x, y);
                match img.offset(round_half_up(px), round_half_up(py)) {
                    Some(o) => {
                        img.prefetch(o);
                        o
                    }
                    None => usize::MAX,
                }
            }));
            features.clear();
            features.extend(pixels.iter().map(|&o| {
                if o == usize::MAX {
                    0.0
                } else {
                    f32::from(img.at(o))
                }
            }));
            // All trees of a level read the same features, so find every leaf first and
            // then add them in tree order (dlib's order, so the float sums are identical).
            // Knowing the leaves up front lets us prefetch them: the leaf tables are far
            // larger than the caches and this loop is bound by memory latency.
            leaves.clear();
            // Trees four at a time: each descent is a short chain of dependent loads, and
            // four independent chains keep the core busy while each waits.
            let descend = |tree: &TreeSpan| {
                let splits = &cascade.splits
                    [tree.split_start as usize..(tree.split_start + tree.num_splits) as usize];
                let mut i = 0usize;
                while i < splits.len() {
                    let s = splits[i];
                    // Branch-free descent: the comparisons are data-dependent coin flips
                    // that a branch predictor cannot learn.
                    let left = features[s.idx1 as usize] - features[s.idx2 as usize] > s.thresh;
                    i = 2 * i + 2 - left as usize;
                }
                tree.leaf_start + (i - splits.len()) as u32
            };
            let quads = cascade.trees.chunks_exact(4);
            let rest = quads.remainder();
            for q in quads {
                let (a, b, c, d) = (
                    descend(&q[0]),
                    descend(&q[1]),
                    descend(&q[2]),
                    descend(&q[3]),
                );
                leaves.extend_from_slice(&[a, b, c, d]);
            }
            leaves.extend(rest.iter().map(descend));
            let table = &self.leaves.as_slice()[cascade.leaf_offset..];
            add_leaves(shape, table, leaves);
        }
    }

    /// Predicts the landmarks of the face in `rect`, writing `num_parts()` image-pixel
    /// coordinates `[x, y]` into `out` (cleared first). Allocation-free once `scratch`
    /// and `out` have grown. Coordinates are continuous; dlib itself rounds them to
    /// integers, which [`Self::predict_dlib_rounded`] reproduces.
    pub fn predict_into(
        &self,
        img: &GrayImage<'_>,
        rect: DlibRect,
        scratch: &mut PredictScratch,
        out: &mut Vec<[f32; 2]>,
    ) {
        self.run(img, rect, scratch);
        let to_img = UnitToImage::new(rect);
        out.clear();
        out.extend(scratch.shape.chunks_exact(2).map(|p| {
            let (x, y) = to_img.apply(p[0], p[1]);
            [x as f32, y as f32]
        }));
    }

    /// Convenience form of [`Self::predict_into`] that allocates its result.
    pub fn predict(&self, img: &GrayImage<'_>, rect: DlibRect) -> Vec<[f32; 2]> {
        let mut out = Vec::with_capacity(self.num_parts);
        self.predict_into(img, rect, &mut PredictScratch::new(), &mut out);
        out
    }

    /// The landmarks exactly as dlib returns them: `full_object_detection` parts, i.e.
    /// pixel coordinates rounded half-up to integers.
    pub fn predict_dlib_rounded(
        &self,
        img: &GrayImage<'_>,
        rect: DlibRect,
        scratch: &mut PredictScratch,
    ) -> Vec<[i64; 2]> {
        self.run(img, rect, scratch);
        let to_img = UnitToImage::new(rect);
        scratch
            .shape
            .chunks_exact(2)
            .map(|p| {
                let (x, y) = to_img.apply(p[0], p[1]);
                [round_half_up(x), round_half_up(y)]
            })
            .collect()
    }
}

/// dlib's `unnormalizing_tform(rect)`: the affine map sending `(0,0)` to the box's
/// top-left corner and `(1,1)` to its (inclusive) bottom-right corner, evaluated in
/// double precision as dlib's `point_transform_affine` is.
#[derive(Debug, Clone, Copy)]
struct UnitToImage {
    sx: f64,
    sy: f64,
    ox: f64,
    oy: f64,
}

impl UnitToImage {
    fn new(r: DlibRect) -> Self {
        Self {
            sx: (r.right - r.left) as f64,
            sy: (r.bottom - r.top) as f64,
            ox: r.left as f64,
            oy: r.top as f64,
        }
    }

    #[inline]
    fn apply(&self, x: f32, y: f32) -> (f64, f64) {
        (self.sx * x as f64 + self.ox, self.sy * y as f64 + self.oy)
    }
}

/// Adds the leaves `leaves` of `table` (each `shape.len()` floats) to `shape`, in order
/// (dlib's order, so the float sums are identical), with AVX2 where the CPU has it: the
/// same IEEE additions element by element, 8 at a time instead of 4.
fn add_leaves(shape: &mut [f32], table: &[f32], leaves: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { add_leaves_avx2(shape, table, leaves) };
    }
    add_leaves_body(shape, table, leaves)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_leaves_avx2(shape: &mut [f32], table: &[f32], leaves: &[u32]) {
    add_leaves_body(shape, table, leaves)
}

#[inline(always)]
fn add_leaves_body(shape: &mut [f32], table: &[f32], leaves: &[u32]) {
    let stride = shape.len();
    let leaf = |k: usize| {
        let l = leaves[k] as usize;
        &table[l * stride..(l + 1) * stride]
    };
    // The leaf tables are far larger than the caches and this loop is bound by memory
    // latency: knowing every leaf up front lets us prefetch them.
    for k in 0..leaves.len().min(PREFETCH_AHEAD) {
        prefetch(leaf(k));
    }
    for k in 0..leaves.len() {
        if k + PREFETCH_AHEAD < leaves.len() {
            prefetch(leaf(k + PREFETCH_AHEAD));
        }
        for (s, v) in shape.iter_mut().zip(leaf(k)) {
            *s += *v;
        }
    }
}

/// How many trees ahead leaf values are prefetched.
const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to start loading `values` into cache; a hint with no semantic effect.
#[inline(always)]
fn prefetch(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in values.chunks(16) {
        // SAFETY: prefetching is only a hint; it never faults, even for invalid addresses,
        // and here the address is inside a live slice. SSE is baseline on x86_64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// dlib's float→integer point conversion: `floor(v + 0.5)`.
#[inline]
fn round_half_up(v: f64) -> i64 {
    // floor via truncation (a single instruction, unlike `f64::floor` without SSE4.1).
    // `as` saturates, so far-off-image or NaN coordinates become values that read as 0.
    let y = v + 0.5;
    let t = y as i64;
    if (t as f64) > y {
        t - 1
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::round_half_up;

    #[test]
    fn rounding_is_floor_of_half_up() {
        for (v, r) in [
            (0.5, 1),
            (0.49, 0),
            (-0.5, 0),
            (-0.51, -1),
            (-1.5, -1),
            (2.0, 2),
            (-3.2, -3),
        ] {
            assert_eq!(round_half_up(v), r, "{v}");
            assert_eq!(round_half_up(v), (v + 0.5f64).floor() as i64, "{v}");
        }
        assert_eq!(round_half_up(f64::NAN), 0);
        assert!(round_half_up(1e300) > 1 << 62);
    }
}
