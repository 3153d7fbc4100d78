//! Training targets of a clip pair: the temporal-branch target (official `hm`, spec §3.2) and the
//! spatial-branch target (official `temp_loc`, spec §3.3).

/// How frame-to-frame differences of the uint8 boundary maps are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetMode {
    /// Official behaviour: `np.diff` on uint8 wraps modulo 256 (a decrease by 10 becomes 246).
    Compat,
    /// |V_t − V_{t−1}| in a signed type.
    Clean,
}

/// Temporal targets of a (real, fake) pair, each T×cells, plus the statistics used.
#[derive(Clone, Debug, PartialEq)]
pub struct TemporalTarget {
    pub fake: Vec<f64>,
    pub real: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

/// `_encode_temporal_target` (`m_std_normalized`): D̃ = [0; D_1..D_{T−1}], z-scored with the
/// mean and population std of D_1..D_{T−1}; all zeros when σ = 0. The real clip of the pair is
/// encoded with the fake's (μ, σ), which makes it the constant −μ/σ.
/// `maps[t]` is V_t (one value per cell); all maps must have the same length.
pub fn temporal_target(maps: &[Vec<u8>], mode: TargetMode) -> TemporalTarget {
    let t = maps.len();
    // Maps of unequal length are truncated to the shortest (never an out-of-bounds panic).
    let n = maps.iter().map(Vec::len).min().unwrap_or(0);
    let mut d = vec![0.0f64; t * n];
    for k in 1..t {
        for i in 0..n {
            let (a, b) = (maps[k][i], maps[k - 1][i]);
            d[k * n + i] = match mode {
                TargetMode::Compat => a.wrapping_sub(b) as f64,
                TargetMode::Clean => (a as i16 - b as i16).abs() as f64,
            };
        }
    }
    let diffs = &d[n.min(d.len())..];
    let count = diffs.len().max(1) as f64;
    let mean = diffs.iter().sum::<f64>() / count;
    let std = (diffs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count).sqrt();
    let (fake, real) = if std != 0.0 {
        (
            d.iter().map(|v| (v - mean) / std).collect(),
            vec![(0.0 - mean) / std; t * n],
        )
    } else {
        (vec![0.0; t * n], vec![0.0; t * n])
    };
    TemporalTarget {
        fake,
        real,
        mean,
        std,
    }
}

/// Spatial-branch target of a fake clip (real clips are all zeros): 1 per frame without mask-out;
/// with mask-out, frame 0 gets the (clipped) intensity φ₀ and later frames the remaining maximum
/// vulnerability / 255 (computed by [`super::maskout`]).
pub fn spatial_target(frames: usize, mask_out_intensity: Option<&[f64]>) -> Vec<f64> {
    match mask_out_intensity {
        Some(v) => v.to_vec(),
        None => vec![1.0; frames],
    }
}
