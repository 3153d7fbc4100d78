//! Landmark handling of the SBV pipeline (spec §4.3 steps 2–5): forehead reordering for the
//! 81-point model, temporal damping, and the horizontal-flip permutation.

use super::SynthError;

/// Landmarks of one frame, (x, y) in pixels of the 256×256 crop. 68 (dlib) or 81 (with forehead).
pub type Points = Vec<[f64; 2]>;

/// `reorder_landmark`: puts the 13 forehead points in contour order, L[68..81] ← L[REORDER].
pub const REORDER: [usize; 13] = [77, 75, 76, 68, 69, 70, 71, 80, 72, 73, 79, 74, 78];

/// Damping threshold and step of the official inline code (`fakesformer_sbi.py` L364–372).
pub const DAMP_THRESHOLD: f64 = 0.35;
pub const DAMP_STEP: f64 = 0.2;

/// Checks count and finiteness; the error names the frame.
pub fn validate(points: &[[f64; 2]], frame: usize) -> Result<(), SynthError> {
    if points.len() != 68 && points.len() != 81 {
        return Err(SynthError::Landmarks {
            frame,
            reason: format!("expected 68 or 81 landmarks, got {}", points.len()),
        });
    }
    if points
        .iter()
        .any(|p| !p[0].is_finite() || !p[1].is_finite())
    {
        return Err(SynthError::Landmarks {
            frame,
            reason: "non-finite landmark coordinate".into(),
        });
    }
    Ok(())
}

/// `reorder_landmark`; a no-op for 68 points (the official code only calls it on 81).
pub fn reorder(points: &[[f64; 2]]) -> Points {
    let mut out = points.to_vec();
    if points.len() == 81 {
        for (k, &src) in REORDER.iter().enumerate() {
            out[68 + k] = points[src];
        }
    }
    out
}

/// `sbi_hflip` permutation for 81 points: new[i] = old[HFLIP_PERM81[i]]; the first 68 entries
/// map within 0..68 and serve the 68-point case.
pub const HFLIP_PERM81: [usize; 81] = {
    let mut p = [0usize; 81];
    let mut i = 0;
    while i < 17 {
        p[i] = 16 - i;
        i += 1;
    }
    let mut i = 0;
    while i < 10 {
        p[17 + i] = 26 - i;
        i += 1;
    }
    let mut i = 0;
    while i < 4 {
        p[27 + i] = 27 + i;
        i += 1;
    }
    let mut i = 0;
    while i < 5 {
        p[31 + i] = 35 - i;
        i += 1;
    }
    let mut i = 0;
    while i < 4 {
        p[36 + i] = 45 - i;
        p[42 + i] = 39 - i;
        i += 1;
    }
    p[40] = 47;
    p[41] = 46;
    p[46] = 41;
    p[47] = 40;
    let mut i = 0;
    while i < 7 {
        p[48 + i] = 54 - i;
        i += 1;
    }
    let mut i = 0;
    while i < 5 {
        p[55 + i] = 59 - i;
        p[60 + i] = 64 - i;
        i += 1;
    }
    let mut i = 0;
    while i < 3 {
        p[65 + i] = 67 - i;
        i += 1;
    }
    let mut i = 0;
    while i < 13 {
        p[68 + i] = 80 - i;
        i += 1;
    }
    p
};

/// Mirrors landmarks of an image of width `width`: permutation plus x ← width − x (no −1, as
/// the official code). Counts other than 68/81 are mirrored with the identity permutation
/// beyond the first 81 (the pipeline validates the count before).
pub fn hflip(points: &[[f64; 2]], width: usize) -> Points {
    let n = points.len();
    (0..n)
        .map(|i| {
            let j = if n == 68 || n == 81 {
                HFLIP_PERM81[i]
            } else {
                i
            };
            let src = points[j];
            [width as f64 - src[0], src[1]]
        })
        .collect()
}

/// Temporal landmark damping state: remembers the previous (already damped) frame.
#[derive(Default, Clone, Debug)]
pub struct Damper {
    prev: Option<Points>,
}

/// What the damper did to one frame (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DampStep {
    /// ‖L_t − P‖_F / 81, `None` on the first frame.
    pub distance: Option<f64>,
    /// round(d / 0.2) when d > 0.35.
    pub divisor: Option<f64>,
}

impl Damper {
    /// Damps frame `points` (already reordered, 81 points) against the previous frame:
    /// if d = ‖L − P‖_F / 81 > 0.35, L ← P + (L − P) / round_half_even(d / 0.2).
    pub fn step(&mut self, points: Points) -> (Points, DampStep) {
        let Some(prev) = &self.prev else {
            self.prev = Some(points.clone());
            return (
                points,
                DampStep {
                    distance: None,
                    divisor: None,
                },
            );
        };
        let sq: f64 = points
            .iter()
            .zip(prev)
            .map(|(a, b)| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2))
            .sum();
        let d = sq.sqrt() / 81.0;
        let mut step = DampStep {
            distance: Some(d),
            divisor: None,
        };
        let out = if d > DAMP_THRESHOLD {
            let div = (d / DAMP_STEP).round_ties_even();
            step.divisor = Some(div);
            points
                .iter()
                .zip(prev)
                .map(|(a, b)| [b[0] + (a[0] - b[0]) / div, b[1] + (a[1] - b[1]) / div])
                .collect()
        } else {
            points
        };
        self.prev = Some(out.clone());
        (out, step)
    }
}
