//! Adam with L2 weight decay added to the gradient (PyTorch `torch.optim.Adam`, not AdamW).

use crate::backend::AdamParams;

/// One in-place Adam update of `p` with gradient `g` and moments `m`, `v`.
pub fn step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamParams) {
    let bc1 = 1.0 - (h.beta1 as f64).powi(h.step as i32);
    let bc2 = 1.0 - (h.beta2 as f64).powi(h.step as i32);
    let step_size = (h.lr as f64 / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    for i in 0..p.len() {
        let gi = g[i] + h.weight_decay * p[i];
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * gi;
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * gi * gi;
        let denom = v[i].sqrt() / bc2_sqrt + h.eps;
        p[i] -= step_size * m[i] / denom;
    }
}
