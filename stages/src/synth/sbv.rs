//! Self-blended video synthesis of one clip (spec §4): every random parameter is drawn once per
//! clip and replayed on all frames; only the per-frame pixels and landmarks differ.
//!
//! Determinism: the parameters of an item depend only on (seed, epoch, item, attempt) through a
//! ChaCha8 stream keyed by a hash of those four numbers, never on thread count or call order.
//! A failed attempt (empty blend core, degenerate hull, no vulnerable cell) is retried with a fresh
//! stream (attempt + 1), so nothing leaks from a failed attempt (spec §9 item 9).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::blend::{self, BlendParams};
use super::color::{PostTransform, SourceTransform};
use super::deform::{AffineParams, MaskDeformation};
use super::hull::{self, HullType};
use super::landmarks::{self, Damper, Points};
use super::maskout;
use super::targets::{self, TargetMode, TemporalTarget};
use super::warp::{self, Affine, Rect};
use super::{ImageU8, SynthError};

/// One clip as the shard store delivers it: T frames of H×W RGB (256×256 in training) and the
/// per-frame landmarks (68 or 81 points, pixel coordinates of the crop).
#[derive(Clone, Debug)]
pub struct ClipInput {
    pub frames: Vec<ImageU8>,
    pub landmarks: Vec<Vec<[f32; 2]>>,
}

/// Identifies an item for seeding: outputs depend on nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ItemKey {
    pub seed: u64,
    pub epoch: u64,
    pub item: u64,
}

/// Synthesis settings (defaults = the c23 training configuration).
#[derive(Clone, Debug)]
pub struct SbvConfig {
    /// Network input size D (224).
    pub out_size: usize,
    /// Target grid (14 = 224 / 16).
    pub grid: usize,
    /// hflip with p = 0.5 (train split only).
    pub allow_hflip: bool,
    /// Mask-out probability per clip (0.5).
    pub mask_out_prob: f64,
    pub target_mode: TargetMode,
    /// Attempts with fresh parameters before the item is reported as failed.
    pub max_attempts: usize,
    /// Keep 224² blend masks and boundary maps for previews.
    pub keep_debug: bool,
}

impl Default for SbvConfig {
    fn default() -> Self {
        Self {
            out_size: 224,
            grid: 14,
            allow_hflip: true,
            mask_out_prob: 0.5,
            target_mode: TargetMode::Compat,
            max_attempts: 8,
            keep_debug: false,
        }
    }
}

/// Every per-clip random draw of spec §4.2.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipParams {
    pub margin: usize,
    pub hflip: bool,
    pub use_68: bool,
    pub hull: HullType,
    /// `rand_value < 0.5`: the source (foreground) copy gets the source transform; otherwise the
    /// background, which is also the real sample.
    pub transform_source: bool,
    pub source_transform: SourceTransform,
    pub affine: AffineParams,
    pub blend: BlendParams,
    /// φ₀ ~ U(0.5, 1), the frame-0 fake intensity.
    pub fake_intensity: f64,
    pub post: PostTransform,
    pub mask_out: bool,
}

impl ClipParams {
    pub fn draw<R: Rng>(rng: &mut R, height: usize, width: usize, cfg: &SbvConfig) -> Self {
        let margin = rng.gen_range(5..25);
        let hflip = cfg.allow_hflip && rng.gen::<f64>() < 0.5;
        let use_68 = rng.gen::<f64>() < 0.25;
        let hull = HullType::from_index(rng.gen_range(0..4)).expect("index in 0..4");
        let transform_source = rng.gen::<f64>() < 0.5;
        let source_transform = SourceTransform::draw(rng);
        let affine = AffineParams::draw(rng, height, width);
        let size_range = |n: usize| ((0.8 * n as f64) as usize)..((n as f64 / 0.8) as usize);
        let blend = BlendParams {
            size_h: rng.gen_range(size_range(height)),
            size_w: rng.gen_range(size_range(width)),
            kernel_1: 5 + 2 * rng.gen_range(0..11),
            kernel_2: 5 + 2 * rng.gen_range(0..11),
            sigma_2: rng.gen_range(5..46) as f64,
            blend_ratio: [0.25, 0.5, 0.75, 1.0, 1.0, 1.0][rng.gen_range(0..6)],
        };
        let fake_intensity = rng.gen_range(0.5..1.0);
        let post = PostTransform::draw(rng);
        let mask_out = rng.gen::<f64>() < cfg.mask_out_prob;
        Self {
            margin,
            hflip,
            use_68,
            hull,
            transform_source,
            source_transform,
            affine,
            blend,
            fake_intensity,
            post,
            mask_out,
        }
    }
}

/// Per-frame debug planes for previews (224², single channel).
#[derive(Clone, Debug, Default)]
pub struct DebugPlanes {
    pub blend_mask: Vec<ImageU8>,
    pub boundary: Vec<ImageU8>,
}

/// A synthesized (real, fake) pair with every target.
#[derive(Clone, Debug)]
pub struct SynthesizedPair {
    /// T frames, D×D×3 RGB uint8 (before normalisation).
    pub real: Vec<ImageU8>,
    pub fake: Vec<ImageU8>,
    /// V_t: T boundary maps on the grid (uint8, grid² cells).
    pub boundary_grid: Vec<Vec<u8>>,
    /// Temporal-branch targets (official `hm`).
    pub temporal: TemporalTarget,
    /// Spatial-branch target of the fake clip (official `temp_loc`); the real one is all zeros.
    pub spatial_fake: Vec<f64>,
    /// Mask-out keep matrix (grid², 1 keep / 0 masked); all ones without mask-out.
    pub keep: Vec<u8>,
    pub params: ClipParams,
    /// 1-based attempt that succeeded.
    pub attempt: usize,
    pub debug: Option<DebugPlanes>,
}

/// splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG of one attempt of one item.
pub fn attempt_rng(key: ItemKey, attempt: usize) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    let mut h = mix(key.seed ^ 0x5342_565F_5359_4E54); // "SBV_SYNT"
    for (i, v) in [key.epoch, key.item, attempt as u64, 0]
        .into_iter()
        .enumerate()
    {
        h = mix(h ^ v);
        seed[i * 8..(i + 1) * 8].copy_from_slice(&h.to_le_bytes());
    }
    ChaCha8Rng::from_seed(seed)
}

fn validate(input: &ClipInput) -> Result<(usize, usize), SynthError> {
    let t = input.frames.len();
    if t == 0 {
        return Err(SynthError::BadInput("clip has no frames".into()));
    }
    if input.landmarks.len() != t {
        return Err(SynthError::BadInput(format!(
            "{} frames but {} landmark sets",
            t,
            input.landmarks.len()
        )));
    }
    let (h, w) = (input.frames[0].height, input.frames[0].width);
    if h < 64 || w < 64 {
        return Err(SynthError::BadInput(format!(
            "frames of {h}x{w} are too small (need >= 64x64)"
        )));
    }
    for (i, f) in input.frames.iter().enumerate() {
        if f.height != h || f.width != w || f.channels != 3 {
            return Err(SynthError::BadInput(format!(
                "frame {i} is {}x{}x{}, expected {h}x{w}x3",
                f.height, f.width, f.channels
            )));
        }
    }
    let n = input.landmarks[0].len();
    for (i, l) in input.landmarks.iter().enumerate() {
        if l.is_empty() {
            return Err(SynthError::Landmarks {
                frame: i,
                reason: "no landmarks".into(),
            });
        }
        let pts: Points = l.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
        landmarks::validate(&pts, i)?;
        if l.len() != n {
            return Err(SynthError::Landmarks {
                frame: i,
                reason: format!("{} landmarks, frame 0 has {n}", l.len()),
            });
        }
    }
    Ok((h, w))
}

/// Synthesizes the (real, fake) pair of one item, retrying failed attempts with fresh parameters.
/// Bad input (no/invalid landmarks, wrong shapes) fails at once; the error names the reason.
pub fn synthesize(
    input: &ClipInput,
    key: ItemKey,
    cfg: &SbvConfig,
) -> Result<SynthesizedPair, SynthError> {
    validate(input)?;
    let mut last = None;
    for attempt in 1..=cfg.max_attempts.max(1) {
        match synthesize_attempt(input, key, attempt, cfg) {
            Ok(pair) => return Ok(pair),
            Err(
                e
                @ (SynthError::BadInput(_) | SynthError::Landmarks { .. } | SynthError::OpenCv(_)),
            ) => return Err(e),
            Err(e) => {
                tracing::debug!(?key, attempt, error = %e, "SBV attempt failed, retrying with fresh parameters");
                last = Some(e);
            }
        }
    }
    Err(SynthError::Exhausted {
        item: format!("seed {} epoch {} item {}", key.seed, key.epoch, key.item),
        attempts: cfg.max_attempts.max(1),
        last: Box::new(last.expect("at least one attempt ran")),
    })
}

/// Per-clip state computed once and shared by the frames.
struct ClipPlan {
    params: ClipParams,
    deformation: MaskDeformation,
    to_out: Affine,
    to_grid: Affine,
    crop: usize,
}

/// One attempt with the parameters of stream `attempt`.
pub fn synthesize_attempt(
    input: &ClipInput,
    key: ItemKey,
    attempt: usize,
    cfg: &SbvConfig,
) -> Result<SynthesizedPair, SynthError> {
    let (h, w) = validate(input)?;
    let mut rng = attempt_rng(key, attempt);
    let params = ClipParams::draw(&mut rng, h, w, cfg);
    if 2 * params.margin + 16 > h.min(w) {
        return Err(SynthError::BadInput(format!(
            "crop margin {} leaves nothing of {h}x{w}",
            params.margin
        )));
    }
    let deformation = MaskDeformation::draw(&mut rng, &params.affine, h, w);
    let crop = h.min(w) - 2 * params.margin;
    let plan = ClipPlan {
        to_out: warp::network_transform(crop, crop, cfg.out_size)?,
        to_grid: warp::network_transform(crop, crop, cfg.grid)?,
        deformation,
        crop,
        params,
    };

    let t_len = input.frames.len();
    let mut damper = Damper::default();
    let mut real = Vec::with_capacity(t_len);
    let mut fake = Vec::with_capacity(t_len);
    let mut grid_maps = Vec::with_capacity(t_len);
    let mut debug = cfg.keep_debug.then(DebugPlanes::default);
    for t in 0..t_len {
        let pts: Points = input.landmarks[t]
            .iter()
            .map(|p| [p[0] as f64, p[1] as f64])
            .collect();
        let (r, f, v) = synthesize_frame(
            &input.frames[t],
            pts,
            &mut damper,
            &plan,
            cfg,
            debug.as_mut(),
        )?;
        real.push(r);
        fake.push(f);
        grid_maps.push(v);
    }

    // Post colour/JPEG augmentation, identical on both clips and all frames.
    for img in real.iter_mut().chain(fake.iter_mut()) {
        plan.params.post.apply(img)?;
    }

    // Mask-out (frame-0 selection on the fake clip, replayed everywhere).
    let cells = cfg.grid * cfg.grid;
    let (keep, spatial_fake) = if plan.params.mask_out {
        let sel = maskout::select(&grid_maps[0], plan.params.fake_intensity, &mut rng)?;
        let mut ys = vec![sel.intensity];
        let mut labels = vec![sel.upper_bound != 1.0];
        for v in &grid_maps[1..] {
            let u = maskout::remaining_upper_bound(v, &sel.keep);
            ys.push(u / 255.0);
            labels.push(u != 1.0);
        }
        if !labels.iter().any(|&l| l) {
            return Err(SynthError::NoVulnerableFrame);
        }
        for img in real.iter_mut().chain(fake.iter_mut()) {
            maskout::apply(img, &sel.keep, cfg.grid)?;
        }
        (sel.keep, ys)
    } else {
        (vec![1u8; cells], targets::spatial_target(t_len, None))
    };

    let temporal = targets::temporal_target(&grid_maps, cfg.target_mode);
    Ok(SynthesizedPair {
        real,
        fake,
        boundary_grid: grid_maps,
        temporal,
        spatial_fake,
        keep,
        params: plan.params,
        attempt,
        debug,
    })
}

/// Steps 2–13 of spec §4.3 for one frame: returns (real D², fake D², V_t on the grid).
fn synthesize_frame(
    frame: &ImageU8,
    pts: Points,
    damper: &mut Damper,
    plan: &ClipPlan,
    cfg: &SbvConfig,
    debug: Option<&mut DebugPlanes>,
) -> Result<(ImageU8, ImageU8, Vec<u8>), SynthError> {
    let p = &plan.params;
    let (h, w) = (frame.height, frame.width);
    let mut pts = pts;
    if pts.len() == 81 {
        pts = landmarks::reorder(&pts);
        pts = damper.step(pts).0;
    }
    let img = if p.hflip {
        pts = landmarks::hflip(&pts, w);
        frame.hflip()
    } else {
        frame.clone()
    };
    if p.use_68 {
        pts.truncate(68);
    }
    let hull = hull::hull_mask(&pts, p.hull, h, w)?;

    let (source, target) = if p.transform_source {
        (p.source_transform.apply(&img)?, img)
    } else {
        let t = p.source_transform.apply(&img)?;
        (img, t)
    };
    let mask = plan.deformation.apply_mask(&hull);
    let m = blend::blend_mask(&mask, &p.blend)?;
    let source = plan.deformation.apply_image(&source, Some(&m));
    let (mg, c) = (p.margin, plan.crop);
    let view = Rect {
        y0: mg,
        x0: mg,
        height: c,
        width: c,
    };
    let (d, g) = (cfg.out_size, cfg.grid);
    // Blend and boundary only inside the crop the pipeline keeps.
    let blended = blend::blend_images_rect(&source, &target, &m, p.blend.blend_ratio, view)?;
    let boundary = blend::boundary_map_u8_rect(&m, view);
    let fake = warp::warp_affine_linear_u8(&blended, &plan.to_out, d, d);
    let real = warp::warp_affine_linear_u8_view(&target, view, &plan.to_out, d, d, None);
    let v = warp::warp_affine_linear_u8(&boundary, &plan.to_grid, g, g).data;
    if let Some(dbg) = debug {
        dbg.boundary
            .push(warp::warp_affine_linear_u8(&boundary, &plan.to_out, d, d));
        let m8 = ImageU8 {
            height: h,
            width: w,
            channels: 1,
            data: m.data.iter().map(|&v| (v * 255.0) as u8).collect(),
        };
        dbg.blend_mask.push(warp::warp_affine_linear_u8_view(
            &m8,
            view,
            &plan.to_out,
            d,
            d,
            None,
        ));
    }
    Ok((real, fake, v))
}
