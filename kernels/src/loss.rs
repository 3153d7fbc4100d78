//! The FakeSTormer training criterion (spec §3.1), host-side: the loss inputs are tiny
//! (`B×1`, `B×T`, `B×T×h×w`), so every backend downloads them and uses these functions.

/// Loss weights of `CombinedMSELoss` in the c23/c0 configs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// hm weight (applied as `hm_lmda · 0.5`).
    pub hm_lmda: f64,
    /// cls weight.
    pub cls_lmda: f64,
    /// temp_loc weight.
    pub temp_loc_lmda: f64,
    /// Temperature dividing the cls logit inside the loss only.
    pub temperature: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            hm_lmda: 100.0,
            cls_lmda: 0.8,
            temp_loc_lmda: 0.2,
            temperature: 2.0,
        }
    }
}

/// Loss values and gradients w.r.t. the three raw network outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct LossOutput {
    /// Total loss.
    pub total: f64,
    /// hm term (masked MSE ×50).
    pub hm: f64,
    /// cls term.
    pub cls: f64,
    /// temp_loc term.
    pub temp_loc: f64,
    /// dL/d hm.
    pub d_hm: Vec<f32>,
    /// dL/d cls.
    pub d_cls: Vec<f32>,
    /// dL/d temp_loc.
    pub d_temp_loc: Vec<f32>,
}

/// Numerically stable `BCEWithLogits(z, y)` and its derivative `σ(z) − y`.
fn bce_with_logits(z: f64, y: f64) -> (f64, f64) {
    let loss = z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
    let sig = 1.0 / (1.0 + (-z).exp());
    (loss, sig - y)
}

/// Combined loss: `hm_lmda·0.5·mean((M·ŷ − M·y)²) + cls_lmda·BCE(ŷ_cls/temp, label) +
/// temp_loc_lmda·BCE(ŷ_s, y_s)`, all means over every element (masked cells count).
#[allow(clippy::too_many_arguments)]
pub fn combined_loss(
    hm: &[f32],
    hm_target: &[f32],
    mask: &[f32],
    cls: &[f32],
    labels: &[f32],
    temp_loc: &[f32],
    temp_loc_target: &[f64],
    w: LossWeights,
) -> LossOutput {
    let n = hm.len() as f64;
    let mut l_hm = 0.0;
    let mut d_hm = vec![0.0f32; hm.len()];
    for i in 0..hm.len() {
        let m = mask[i] as f64;
        let diff = (hm[i] as f64) * m - (hm_target[i] as f64) * m;
        l_hm += diff * diff;
        d_hm[i] = (w.hm_lmda * 0.5 * 2.0 * diff * m / n) as f32;
    }
    let l_hm = w.hm_lmda * 0.5 * l_hm / n;
    let nc = cls.len() as f64;
    let mut l_cls = 0.0;
    let mut d_cls = vec![0.0f32; cls.len()];
    for i in 0..cls.len() {
        let (l, g) = bce_with_logits(cls[i] as f64 / w.temperature, labels[i] as f64);
        l_cls += l;
        d_cls[i] = (w.cls_lmda * g / (w.temperature * nc)) as f32;
    }
    let l_cls = w.cls_lmda * l_cls / nc;
    let ns = temp_loc.len() as f64;
    let mut l_s = 0.0;
    let mut d_s = vec![0.0f32; temp_loc.len()];
    for i in 0..temp_loc.len() {
        let (l, g) = bce_with_logits(temp_loc[i] as f64, temp_loc_target[i]);
        l_s += l;
        d_s[i] = (w.temp_loc_lmda * g / ns) as f32;
    }
    let l_s = w.temp_loc_lmda * l_s / ns;
    LossOutput {
        total: l_hm + l_cls + l_s,
        hm: l_hm,
        cls: l_cls,
        temp_loc: l_s,
        d_hm,
        d_cls,
        d_temp_loc: d_s,
    }
}
