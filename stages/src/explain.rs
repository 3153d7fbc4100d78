//! The explanation sheet of `fakestormer detect --explain`: every scored clip as a row of its
//! frames, each frame overlaid with the temporal-vulnerability map (the `hm` head, spec §7.3:
//! sigmoid clamped to [1e-4, 1 − 1e-4], jet colours, bilinear upscaling from the g×g grid) and
//! labelled with its spatial score (sigmoid of the frame's `temp_loc` logit); a header line per
//! clip gives the clip's fake probability (sigmoid of `cls`).
//!
//! Layout: tiles of [`TILE`]² pixels separated by [`GAP`]; row k starts at
//! `GAP + k·(HEADER + TILE + GAP)`, so the sheet is `T·TILE + (T+1)·GAP` wide and
//! `clips·(HEADER + TILE + GAP) + GAP` high.

use std::path::Path;

use opencv::core::{Point, Scalar, Vector};
use opencv::imgcodecs;
use opencv::imgproc;

use crate::synth::{ImageU8, SynthError};

/// Displayed frame side in pixels (frames are resized to it, whatever the network size).
pub const TILE: usize = 224;
pub const GAP: usize = 4;
/// Height of a clip's header line.
pub const HEADER: usize = 22;
/// Weight of the heat colour over the frame.
const ALPHA: f32 = 0.4;

/// One clip's frames (any square size, RGB) and the network's outputs for it.
#[derive(Debug, Clone)]
pub struct ExplainedClip {
    pub frames: Vec<ImageU8>,
    /// Frame indices in the video, for the header.
    pub frame_indices: Vec<u64>,
    /// Raw `cls` logit.
    pub cls: f32,
    /// Raw spatial-branch logits, one per frame.
    pub spatial: Vec<f32>,
    /// Raw temporal-branch logits, T×grid×grid.
    pub temporal: Vec<f32>,
    pub grid: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("opencv: {0}")]
    OpenCv(String),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
}

impl From<opencv::Error> for ExplainError {
    fn from(e: opencv::Error) -> Self {
        ExplainError::OpenCv(e.to_string())
    }
}

impl From<SynthError> for ExplainError {
    fn from(e: SynthError) -> Self {
        ExplainError::OpenCv(e.to_string())
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `(height, width)` of the sheet for `clips` rows of `frames` frames.
pub fn sheet_size(clips: usize, frames: usize) -> (usize, usize) {
    (
        clips * (HEADER + TILE + GAP) + GAP,
        frames * TILE + (frames + 1) * GAP,
    )
}

/// The jet colour map (as OpenCV's COLORMAP_JET) of `v` in [0, 1], RGB.
fn jet(v: f32) -> [f32; 3] {
    let c = |x: f32| (1.5 - (4.0 * v - x).abs()).clamp(0.0, 1.0) * 255.0;
    [c(3.0), c(2.0), c(1.0)]
}

/// Bilinear sample of a g×g map at tile pixel (y, x), pixel centres aligned.
fn sample(map: &[f32], g: usize, y: usize, x: usize) -> f32 {
    let pos =
        |p: usize| ((p as f32 + 0.5) * g as f32 / TILE as f32 - 0.5).clamp(0.0, (g - 1) as f32);
    let (fy, fx) = (pos(y), pos(x));
    let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(g - 1), (x0 + 1).min(g - 1));
    let (wy, wx) = (fy - y0 as f32, fx - x0 as f32);
    let at = |yy: usize, xx: usize| map[yy * g + xx];
    (1.0 - wy) * ((1.0 - wx) * at(y0, x0) + wx * at(y0, x1))
        + wy * ((1.0 - wx) * at(y1, x0) + wx * at(y1, x1))
}

/// One frame resized to the tile (nearest neighbour) with the heat map blended over it.
fn tile(frame: &ImageU8, heat: &[f32], g: usize) -> ImageU8 {
    let mut out = ImageU8::new(TILE, TILE, 3);
    for y in 0..TILE {
        let sy = y * frame.height / TILE;
        for x in 0..TILE {
            let sx = x * frame.width / TILE;
            let s = (sy * frame.width + sx) * frame.channels;
            let h = jet(sample(heat, g, y, x));
            let d = (y * TILE + x) * 3;
            for (c, hc) in h.iter().enumerate() {
                let px = frame.data[s + c.min(frame.channels - 1)] as f32;
                out.data[d + c] = ((1.0 - ALPHA) * px + ALPHA * hc).round() as u8;
            }
        }
    }
    out
}

fn paste(canvas: &mut ImageU8, tile: &ImageU8, y0: usize, x0: usize) {
    for y in 0..tile.height {
        let d = ((y0 + y) * canvas.width + x0) * 3;
        let s = y * tile.width * 3;
        canvas.data[d..d + tile.width * 3].copy_from_slice(&tile.data[s..s + tile.width * 3]);
    }
}

fn fill(canvas: &mut ImageU8, y0: usize, x0: usize, h: usize, w: usize, rgb: [u8; 3]) {
    for y in y0..(y0 + h).min(canvas.height) {
        for x in x0..(x0 + w).min(canvas.width) {
            let d = (y * canvas.width + x) * 3;
            canvas.data[d..d + 3].copy_from_slice(&rgb);
        }
    }
}

fn text(
    canvas: &mut ImageU8,
    s: &str,
    x: usize,
    y: usize,
    rgb: [u8; 3],
) -> Result<(), ExplainError> {
    let mut m = canvas.as_mat_mut()?;
    imgproc::put_text(
        &mut m,
        s,
        Point::new(x as i32, y as i32),
        imgproc::FONT_HERSHEY_SIMPLEX,
        0.5,
        Scalar::new(rgb[0] as f64, rgb[1] as f64, rgb[2] as f64, 0.0),
        1,
        imgproc::LINE_AA,
        false,
    )?;
    Ok(())
}

/// Renders the sheet as RGB.
pub fn render(clips: &[ExplainedClip]) -> Result<ImageU8, ExplainError> {
    let t = clips
        .first()
        .map(|c| c.frames.len())
        .ok_or_else(|| ExplainError::BadInput("no clips to explain".into()))?;
    for (k, c) in clips.iter().enumerate() {
        let cells = c.grid * c.grid;
        if c.frames.len() != t
            || c.spatial.len() != t
            || c.grid == 0
            || c.temporal.len() != t * cells
            || c.frames.iter().any(|f| f.height == 0 || f.width == 0)
        {
            return Err(ExplainError::BadInput(format!(
                "clip {k}: {} frames, {} spatial scores, {} temporal values for a {}² grid \
                 (expected {t} frames)",
                c.frames.len(),
                c.spatial.len(),
                c.temporal.len(),
                c.grid
            )));
        }
    }
    let (h, w) = sheet_size(clips.len(), t);
    let mut canvas = ImageU8::new(h, w, 3);
    canvas.data.fill(255);
    for (k, c) in clips.iter().enumerate() {
        let y0 = GAP + k * (HEADER + TILE + GAP);
        let frames = match (c.frame_indices.first(), c.frame_indices.last()) {
            (Some(a), Some(b)) => format!("frames {a}-{b}"),
            _ => String::new(),
        };
        text(
            &mut canvas,
            &format!(
                "clip {k}  {frames}  P(fake) = {:.3}  (logit {:.3})",
                sigmoid(c.cls),
                c.cls
            ),
            GAP + 2,
            y0 + HEADER - 6,
            [0, 0, 0],
        )?;
        let cells = c.grid * c.grid;
        for f in 0..t {
            let heat: Vec<f32> = c.temporal[f * cells..(f + 1) * cells]
                .iter()
                .map(|&v| sigmoid(v).clamp(1e-4, 1.0 - 1e-4))
                .collect();
            let x0 = GAP + f * (TILE + GAP);
            let ty = y0 + HEADER;
            paste(&mut canvas, &tile(&c.frames[f], &heat, c.grid), ty, x0);
            fill(&mut canvas, ty, x0, 20, 92, [0, 0, 0]);
            text(
                &mut canvas,
                &format!("s = {:.3}", sigmoid(c.spatial[f])),
                x0 + 4,
                ty + 15,
                [255, 255, 255],
            )?;
        }
    }
    Ok(canvas)
}

/// Renders the sheet and writes it as PNG (temp file + rename).
pub fn write_png(clips: &[ExplainedClip], path: &Path) -> Result<(usize, usize), ExplainError> {
    let rgb = render(clips)?;
    // imencode expects BGR.
    let mut bgr = rgb;
    for px in bgr.data.chunks_exact_mut(3) {
        px.swap(0, 2);
    }
    let mut buf: Vector<u8> = Vector::new();
    if !imgcodecs::imencode(".png", &bgr.as_mat()?, &mut buf, &Vector::new())? {
        return Err(ExplainError::OpenCv("imencode(.png) failed".into()));
    }
    let io = |e: std::io::Error| ExplainError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| ExplainError::BadInput(format!("{} has no file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, buf.as_slice()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok((bgr.height, bgr.width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(grid: usize) -> ExplainedClip {
        ExplainedClip {
            frames: vec![ImageU8::new(32, 32, 3); 4],
            frame_indices: vec![0, 1, 2, 3],
            cls: 0.0,
            spatial: vec![0.0; 4],
            // One hot cell in frame 0's top-left corner.
            temporal: (0..4 * grid * grid)
                .map(|i| if i == 0 { 20.0 } else { -20.0 })
                .collect(),
            grid,
        }
    }

    #[test]
    fn sheet_has_the_documented_size_and_the_heat_where_the_map_is_hot() {
        let img = render(&[clip(2), clip(2)]).unwrap();
        assert_eq!((img.height, img.width), sheet_size(2, 4));
        let px = |y: usize, x: usize| {
            let d = (y * img.width + x) * 3;
            [img.data[d], img.data[d + 1], img.data[d + 2]]
        };
        let ty = GAP + HEADER;
        // Frame 0: hot top-left (jet red dominates), cold bottom-right (blue dominates); black
        // frames, so the overlay is the heat colour times ALPHA.
        let hot = px(ty + 40, GAP + 30);
        let cold = px(ty + TILE - 10, GAP + TILE - 10);
        assert!(hot[0] > 40 && hot[2] < 10, "hot {hot:?}");
        assert!(cold[2] > 40 && cold[0] < 10, "cold {cold:?}");
    }

    #[test]
    fn mismatched_outputs_are_rejected() {
        let mut c = clip(2);
        c.temporal.pop();
        assert!(matches!(render(&[c]), Err(ExplainError::BadInput(_))));
        assert!(render(&[]).is_err());
    }
}
