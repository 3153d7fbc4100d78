//! Preview grid of synthesized pairs, so a person can see what the detector is trained on.
//! One block of five rows per clip: real frames, fake frames, blend mask, boundary map 4m(1−m),
//! and the grid target V_t (nearest-upscaled; masked-out cells drawn in dark red).

use std::path::Path;

use opencv::core::Vector;
use opencv::imgcodecs;

use super::batch::write_atomic;
use super::sbv::SynthesizedPair;
use super::{ImageU8, SynthError};

const GAP: usize = 4;

fn paste(canvas: &mut ImageU8, tile: &ImageU8, y0: usize, x0: usize) {
    for y in 0..tile.height {
        for x in 0..tile.width {
            let d = ((y0 + y) * canvas.width + x0 + x) * 3;
            let s = (y * tile.width + x) * tile.channels;
            if tile.channels == 1 {
                canvas.data[d..d + 3].fill(tile.data[s]);
            } else {
                canvas.data[d..d + 3].copy_from_slice(&tile.data[s..s + 3]);
            }
        }
    }
}

fn grid_tile(v: &[u8], keep: &[u8], grid: usize, size: usize) -> ImageU8 {
    let mut out = ImageU8::new(size, size, 3);
    for y in 0..size {
        for x in 0..size {
            let cell = (y * grid / size) * grid + x * grid / size;
            let d = (y * size + x) * 3;
            if keep[cell] == 0 {
                out.data[d..d + 3].copy_from_slice(&[96, 0, 0]);
            } else {
                out.data[d..d + 3].fill(v[cell]);
            }
        }
    }
    out
}

/// Renders the grid as RGB. Needs pairs synthesized with `SbvConfig::keep_debug`.
pub fn render(pairs: &[SynthesizedPair]) -> Result<ImageU8, SynthError> {
    let first = pairs
        .first()
        .ok_or_else(|| SynthError::BadInput("nothing to preview".into()))?;
    if first.real.is_empty() {
        return Err(SynthError::BadInput("pair without frames".into()));
    }
    let (t, s) = (first.real.len(), first.real[0].height);
    let grid = (first.keep.len() as f64).sqrt() as usize;
    let rows = 5 * pairs.len();
    let (w, h) = (t * (s + GAP) + GAP, rows * (s + GAP) + GAP * pairs.len());
    let mut canvas = ImageU8::new(h, w, 3);
    canvas.data.fill(255);
    for (k, p) in pairs.iter().enumerate() {
        let d = p.debug.as_ref().ok_or_else(|| {
            SynthError::BadInput("preview needs pairs synthesized with keep_debug".into())
        })?;
        if p.real.len() != t || p.real[0].height != s {
            return Err(SynthError::BadInput(format!(
                "pair {k} has a different clip shape"
            )));
        }
        let block_y = k * (5 * (s + GAP) + GAP);
        for f in 0..t {
            let x0 = GAP + f * (s + GAP);
            let row = |r: usize| block_y + GAP + r * (s + GAP);
            paste(&mut canvas, &p.real[f], row(0), x0);
            paste(&mut canvas, &p.fake[f], row(1), x0);
            paste(&mut canvas, &d.blend_mask[f], row(2), x0);
            paste(&mut canvas, &d.boundary[f], row(3), x0);
            paste(
                &mut canvas,
                &grid_tile(&p.boundary_grid[f], &p.keep, grid, s),
                row(4),
                x0,
            );
        }
    }
    Ok(canvas)
}

/// Renders and writes a PNG (atomic).
pub fn write_png(pairs: &[SynthesizedPair], path: &Path) -> Result<(), SynthError> {
    let rgb = render(pairs)?;
    // imencode expects BGR.
    let mut bgr = rgb.clone();
    for px in bgr.data.chunks_exact_mut(3) {
        px.swap(0, 2);
    }
    let mut buf: Vector<u8> = Vector::new();
    if !imgcodecs::imencode(".png", &bgr.as_mat()?, &mut buf, &Vector::new())? {
        return Err(SynthError::OpenCv("imencode(.png) failed".into()));
    }
    write_atomic(path, buf.as_slice())
}
