//! Clip batching (spec §4.9): B items → 2B clips (reals and fakes, deterministically shuffled) as
//! contiguous N×C×T×H×W tensors (ImageNet-normalised f32, optionally bf16) plus every target, and
//! a safetensors writer for `synth dump`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use half::bf16;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::sbv::{self, ClipInput, ItemKey, SbvConfig, SynthesizedPair};
use super::{ImageU8, SynthError};

/// ImageNet statistics of `TRANSFORM.normalize`.
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// One training batch of N = 2B clips.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub clips: usize,
    pub frames: usize,
    pub size: usize,
    pub grid: usize,
    /// N×3×T×H×W, (v/255 − mean)/std computed in f64 and stored as f32.
    pub images: Vec<f32>,
    /// Temporal-branch target (official `heatmap`), N×1×T×g×g.
    pub heatmap: Vec<f32>,
    /// Spatial-branch target (official `temp_loc`), N×T.
    pub spatial: Vec<f32>,
    /// N×1: 0 real, 1 fake.
    pub labels: Vec<f32>,
    /// Mask-out keep mask (official `mask_out_p`), N×1×T×g×g, 1 keep / 0 masked.
    pub mask: Vec<u8>,
    /// Clip n of the batch = (item index in the input slice, is_fake).
    pub order: Vec<(usize, bool)>,
}

/// The batch shuffle key: a permutation that depends only on (seed, epoch, batch index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchKey {
    pub seed: u64,
    pub epoch: u64,
    pub index: u64,
}

/// Per channel, the normalised value of every uint8 level: `(v/255 − mean)/std` in f64, as f32.
pub fn normalise_lut() -> [[f32; 256]; 3] {
    let mut lut = [[0f32; 256]; 3];
    for (c, row) in lut.iter_mut().enumerate() {
        for (v, o) in row.iter_mut().enumerate() {
            *o = ((v as f64 / 255.0 - MEAN[c]) / STD[c]) as f32;
        }
    }
    lut
}

/// Writes one clip of T RGB frames (all H×W×3, H·W = hw) as 3×T×H×W normalised planes into
/// `out` (length 3·T·hw), one pass over the interleaved pixels per frame.
pub fn normalise_clip(clip: &[ImageU8], lut: &[[f32; 256]; 3], out: &mut [f32]) {
    let frames = clip.len();
    let hw = out.len() / (3 * frames.max(1));
    for (t, img) in clip.iter().enumerate() {
        let plane = |c: usize| (c * frames + t) * hw;
        let (p0, p1, p2) = (plane(0), plane(1), plane(2));
        let (head, rest) = out.split_at_mut(p1);
        let (mid, tail) = rest.split_at_mut(p2 - p1);
        let (r, g, b) = (&mut head[p0..p0 + hw], &mut mid[..hw], &mut tail[..hw]);
        for (i, px) in img.data.chunks_exact(3).take(hw).enumerate() {
            r[i] = lut[0][px[0] as usize];
            g[i] = lut[1][px[1] as usize];
            b[i] = lut[2][px[2] as usize];
        }
    }
}

impl Batch {
    /// Stacks reals then fakes (as the official collate) and applies the deterministic permutation.
    pub fn assemble(pairs: &[SynthesizedPair], key: BatchKey) -> Result<Self, SynthError> {
        let mut b = Self {
            clips: 0,
            frames: 0,
            size: 0,
            grid: 0,
            images: Vec::new(),
            heatmap: Vec::new(),
            spatial: Vec::new(),
            labels: Vec::new(),
            mask: Vec::new(),
            order: Vec::new(),
        };
        b.assemble_into(pairs, key)?;
        Ok(b)
    }

    /// [`Batch::assemble`] reusing this batch's buffers (a loader keeps one per worker, which
    /// avoids faulting in tens of MB of fresh pages per batch).
    pub fn assemble_into(
        &mut self,
        pairs: &[SynthesizedPair],
        key: BatchKey,
    ) -> Result<(), SynthError> {
        let first = pairs
            .first()
            .ok_or_else(|| SynthError::BadInput("empty batch".into()))?;
        if first.real.is_empty() || pairs.iter().any(|p| p.real.len() != p.fake.len()) {
            return Err(SynthError::BadInput(
                "pairs without frames or with unequal real/fake lengths".into(),
            ));
        }
        let frames = first.real.len();
        let size = first.real[0].height;
        let grid = (first.keep.len() as f64).sqrt() as usize;
        for (i, p) in pairs.iter().enumerate() {
            if p.real.len() != frames || p.real[0].height != size || p.keep.len() != grid * grid {
                return Err(SynthError::BadInput(format!(
                    "item {i} has a different clip shape"
                )));
            }
        }
        let mut order: Vec<(usize, bool)> = (0..pairs.len())
            .map(|i| (i, false))
            .chain((0..pairs.len()).map(|i| (i, true)))
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(
            key.seed
                ^ key.epoch.rotate_left(21)
                ^ key.index.rotate_left(42)
                ^ 0x4241_5443_4853_4846,
        );
        order.shuffle(&mut rng);

        let n = order.len();
        let (hw, cells) = (size * size, grid * grid);
        let lut = normalise_lut();
        let reuse = |v: &mut Vec<f32>, len: usize| {
            let mut v = std::mem::take(v);
            v.clear();
            v.resize(len, 0.0);
            v
        };
        let mut images = reuse(&mut self.images, n * 3 * frames * hw);
        let mut heatmap = reuse(&mut self.heatmap, n * frames * cells);
        let mut spatial = reuse(&mut self.spatial, n * frames);
        let mut labels = reuse(&mut self.labels, n);
        let mut mask = std::mem::take(&mut self.mask);
        mask.clear();
        mask.resize(n * frames * cells, 0);
        let clip_len = 3 * frames * hw;
        for (slot, &(item, is_fake)) in order.iter().enumerate() {
            let p = &pairs[item];
            let clip = if is_fake { &p.fake } else { &p.real };
            normalise_clip(
                clip,
                &lut,
                &mut images[slot * clip_len..(slot + 1) * clip_len],
            );
            let hm = if is_fake {
                &p.temporal.fake
            } else {
                &p.temporal.real
            };
            for (o, &v) in heatmap[slot * frames * cells..(slot + 1) * frames * cells]
                .iter_mut()
                .zip(hm)
            {
                *o = v as f32;
            }
            if is_fake {
                for (o, &v) in spatial[slot * frames..(slot + 1) * frames]
                    .iter_mut()
                    .zip(&p.spatial_fake)
                {
                    *o = v as f32;
                }
                labels[slot] = 1.0;
            }
            for t in 0..frames {
                mask[(slot * frames + t) * cells..(slot * frames + t + 1) * cells]
                    .copy_from_slice(&p.keep);
            }
        }
        *self = Self {
            clips: n,
            frames,
            size,
            grid,
            images,
            heatmap,
            spatial,
            labels,
            mask,
            order,
        };
        Ok(())
    }

    /// The images as bf16 (round to nearest even).
    pub fn images_bf16(&self) -> Vec<bf16> {
        self.images.iter().map(|&v| bf16::from_f32(v)).collect()
    }

    /// Writes every tensor to `path` atomically (temp file + rename). Names: `images` (f32),
    /// `images_bf16`, `heatmap`, `temp_loc`, `label`, `mask_out_p` (u8), `order` (i64 N×2:
    /// item, is_fake); metadata holds the layout and `extra` (e.g. per-item parameters).
    pub fn write_safetensors(
        &self,
        path: &Path,
        extra: HashMap<String, String>,
    ) -> Result<(), SynthError> {
        let (n, t, s, g) = (self.clips, self.frames, self.size, self.grid);
        let bf: Vec<u8> = self
            .images_bf16()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f32b = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let images = f32b(&self.images);
        let heat = f32b(&self.heatmap);
        let spatial = f32b(&self.spatial);
        let labels = f32b(&self.labels);
        let order: Vec<u8> = self
            .order
            .iter()
            .flat_map(|&(i, f)| [(i as i64).to_le_bytes(), (f as i64).to_le_bytes()])
            .flatten()
            .collect();
        let st = |e: safetensors::SafeTensorError| SynthError::SafeTensors(e.to_string());
        let tensors = vec![
            (
                "images",
                TensorView::new(Dtype::F32, vec![n, 3, t, s, s], &images).map_err(st)?,
            ),
            (
                "images_bf16",
                TensorView::new(Dtype::BF16, vec![n, 3, t, s, s], &bf).map_err(st)?,
            ),
            (
                "heatmap",
                TensorView::new(Dtype::F32, vec![n, 1, t, g, g], &heat).map_err(st)?,
            ),
            (
                "temp_loc",
                TensorView::new(Dtype::F32, vec![n, t], &spatial).map_err(st)?,
            ),
            (
                "label",
                TensorView::new(Dtype::F32, vec![n, 1], &labels).map_err(st)?,
            ),
            (
                "mask_out_p",
                TensorView::new(Dtype::U8, vec![n, 1, t, g, g], &self.mask).map_err(st)?,
            ),
            (
                "order",
                TensorView::new(Dtype::I64, vec![n, 2], &order).map_err(st)?,
            ),
        ];
        let mut meta = extra;
        meta.insert(
            "layout".into(),
            "images N x C x T x H x W, ImageNet-normalised RGB; targets N x 1 x T x g x g".into(),
        );
        let bytes = safetensors::tensor::serialize(tensors, Some(meta)).map_err(st)?;
        write_atomic(path, &canonical_header(bytes)?)
    }
}

/// Rewrites a safetensors file's JSON header with sorted keys. `safetensors` writes the
/// metadata map in `HashMap` order, which differs between runs once it has more than one key;
/// sorting makes equal batches byte-identical files. Data offsets are relative to the end of the
/// header, so only the header changes.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, SynthError> {
    let bad = |r: String| SynthError::SafeTensors(format!("re-reading own header: {r}"));
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or_else(|| bad("file shorter than 8 bytes".into()))?
            .try_into()
            .map_err(|_| bad("length prefix".into()))?,
    ) as usize;
    let header = bytes
        .get(8..8 + n)
        .ok_or_else(|| bad("header past the end".into()))?;
    let mut map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
    if let Some(m) = map.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> =
            serde_json::from_value(m.take()).map_err(|e| bad(e.to_string()))?;
        *m = serde_json::to_value(sorted).map_err(|e| bad(e.to_string()))?;
    }
    let mut head = serde_json::to_vec(&map).map_err(|e| bad(e.to_string()))?;
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + head.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    let name = path
        .file_name()
        .ok_or_else(|| SynthError::BadInput(format!("{} has no file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Synthesizes every item on a pool of `threads` workers. Results come back in input order and,
/// because each item seeds its own RNG, are identical for any thread count.
pub fn synthesize_items(
    inputs: &[ClipInput],
    keys: &[ItemKey],
    cfg: &SbvConfig,
    threads: usize,
) -> Result<Vec<Result<SynthesizedPair, SynthError>>, SynthError> {
    if inputs.len() != keys.len() {
        return Err(SynthError::BadInput(format!(
            "{} inputs but {} keys",
            inputs.len(),
            keys.len()
        )));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| SynthError::BadInput(e.to_string()))?;
    Ok(pool.install(|| {
        inputs
            .par_iter()
            .zip(keys)
            .map(|(inp, &k)| sbv::synthesize(inp, k, cfg))
            .collect()
    }))
}

/// A batch, the pairs it was built from, and the items that failed (input index, error).
pub type BatchOutcome = (Batch, Vec<SynthesizedPair>, Vec<(usize, SynthError)>);

/// Items → batch: failed items are skipped and reported (index, error) so the caller can log them.
pub fn synthesize_batch(
    inputs: &[ClipInput],
    keys: &[ItemKey],
    cfg: &SbvConfig,
    batch_key: BatchKey,
    threads: usize,
) -> Result<BatchOutcome, SynthError> {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (i, r) in synthesize_items(inputs, keys, cfg, threads)?
        .into_iter()
        .enumerate()
    {
        match r {
            Ok(p) => ok.push(p),
            Err(e) => {
                tracing::warn!(item = i, error = %e, "SBV synthesis failed");
                failed.push((i, e));
            }
        }
    }
    let batch = Batch::assemble(&ok, batch_key)?;
    Ok((batch, ok, failed))
}

/// Safetensors metadata describing the pairs of a dump: per item, the drawn clip parameters and
/// the attempt that succeeded (keys `item.<i>.params`, `item.<i>.attempt`).
pub fn describe_pairs(pairs: &[SynthesizedPair]) -> HashMap<String, String> {
    let mut meta = HashMap::new();
    for (i, p) in pairs.iter().enumerate() {
        meta.insert(format!("item.{i}.params"), format!("{:?}", p.params));
        meta.insert(format!("item.{i}.attempt"), p.attempt.to_string());
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_batch() -> Batch {
        let (n, t, s, g) = (2, 1, 2, 1);
        Batch {
            clips: n,
            frames: t,
            size: s,
            grid: g,
            images: (0..n * 3 * t * s * s).map(|v| v as f32 * 0.5).collect(),
            heatmap: vec![0.25; n * t * g * g],
            spatial: vec![0.0, 1.0],
            labels: vec![0.0, 1.0],
            mask: vec![1; n * t * g * g],
            order: vec![(0, false), (0, true)],
        }
    }

    /// Many metadata keys: every `HashMap` gets its own iteration order, so without the
    /// canonical header the two files differ.
    #[test]
    fn files_with_many_metadata_keys_are_byte_identical() {
        let dir = std::env::temp_dir().join(format!("batch_meta_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = || -> HashMap<String, String> {
            (0..32)
                .map(|i| (format!("k{i}"), format!("v{i}")))
                .collect()
        };
        let b = tiny_batch();
        let (pa, pb) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
        b.write_safetensors(&pa, meta()).unwrap();
        b.write_safetensors(&pb, meta()).unwrap();
        let (a, c) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        assert!(a == c, "headers differ between two writes");
        let st = safetensors::SafeTensors::deserialize(&a).unwrap();
        assert_eq!(st.tensor("images").unwrap().shape(), &[2, 3, 1, 2, 2]);
        let got: Vec<f32> = st
            .tensor("images")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, b.images);
        let (_, m) = safetensors::SafeTensors::read_metadata(&a).unwrap();
        let m = m.metadata().as_ref().unwrap();
        assert_eq!(m.get("k31").map(String::as_str), Some("v31"));
        assert_eq!(m.len(), 33);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
