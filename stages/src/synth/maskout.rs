//! Mask-out augmentation (`_mask_out_vulnerability2`, spec §4.8): black out the most vulnerable
//! 16×16 patches (plus a random extra one) so the spatial target becomes the remaining
//! vulnerability. The selection is made on frame 0 of the fake clip and replayed everywhere.

use super::{ImageU8, SynthError};

/// ρ = `MASK_PROB`.
pub const MASK_PROB: f64 = 0.01;

/// Draws `size` distinct positions in `0..n` (the role of `np.random.choice(n, size, replace=False)`).
pub trait Chooser {
    fn choose(&mut self, n: usize, size: usize) -> Vec<usize>;
}

impl<R: rand::Rng> Chooser for R {
    fn choose(&mut self, n: usize, size: usize) -> Vec<usize> {
        rand::seq::index::sample(self, n, size.min(n)).into_vec()
    }
}

/// The frame-0 selection: keep-matrix (1 keep, 0 masked, row-major cells) and the values the
/// official function returns.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskOutSelection {
    pub keep: Vec<u8>,
    /// φ after clipping to max(1, max V)/255: y_s[0] of the fake clip.
    pub intensity: f64,
    /// u = max(1, max{V < 255·φ}).
    pub upper_bound: f64,
}

/// Selects the masked cells from V₀ (uint8 per cell) and φ₀.
pub fn select(
    v0: &[u8],
    phi: f64,
    chooser: &mut dyn Chooser,
) -> Result<MaskOutSelection, SynthError> {
    let n = v0.len();
    let vmax = v0.iter().copied().max().unwrap_or(0).max(1) as f64;
    let phi = phi.min(vmax / 255.0);
    let thr = 255.0 * phi;
    let below = v0
        .iter()
        .filter(|&&v| (v as f64) < thr)
        .map(|&v| v as f64)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let Some(below) = below else {
        return Err(SynthError::MaskOut(
            "no cell below the intensity threshold".into(),
        ));
    };
    let u = below.max(1.0);
    let mut selected: Vec<bool> = v0.iter().map(|&v| v as f64 > u).collect();
    let n_sel = selected.iter().filter(|&&s| s).count();
    let quota = (MASK_PROB * n as f64).ceil() as usize;
    if n_sel == 0 {
        for i in chooser.choose(n, quota) {
            selected[i] = true;
        }
    } else {
        let candidates: Vec<usize> = (0..n)
            .filter(|&i| (v0[i] as f64) < u && !selected[i])
            .collect();
        if candidates.is_empty() {
            return Err(SynthError::MaskOut("no candidate cell left to mask".into()));
        }
        let k = ((MASK_PROB * n as f64 - n_sel as f64).ceil() as i64).max(1) as usize;
        for p in chooser.choose(candidates.len(), k) {
            selected[candidates[p]] = true;
        }
    }
    Ok(MaskOutSelection {
        keep: selected.iter().map(|&s| u8::from(!s)).collect(),
        intensity: phi,
        upper_bound: u,
    })
}

/// max(1, max(V·K)): the remaining vulnerability of a frame under the stored keep-matrix.
pub fn remaining_upper_bound(v: &[u8], keep: &[u8]) -> f64 {
    v.iter()
        .zip(keep)
        .map(|(&a, &k)| if k != 0 { a } else { 0 })
        .max()
        .unwrap_or(0)
        .max(1) as f64
}

/// Zeroes the image blocks of masked cells (grid `grid`×`grid` over the image).
pub fn apply(img: &mut ImageU8, keep: &[u8], grid: usize) -> Result<(), SynthError> {
    if grid == 0
        || keep.len() != grid * grid
        || (img.height / grid) * grid != img.height
        || (img.width / grid) * grid != img.width
    {
        return Err(SynthError::BadInput(format!(
            "mask-out grid {grid} does not fit {}x{}",
            img.height, img.width
        )));
    }
    let (ch, cw) = (img.height / grid, img.width / grid);
    let c = img.channels;
    for (cell, _) in keep.iter().enumerate().filter(|(_, &k)| k == 0) {
        let (i, j) = (cell / grid, cell % grid);
        for y in i * ch..(i + 1) * ch {
            let row = (y * img.width + j * cw) * c;
            img.data[row..row + cw * c].fill(0);
        }
    }
    Ok(())
}
