//! Sharpness-Aware Minimisation helpers (spec §6): the perturbation `e = ρ·g/(‖g‖₂ + 1e-12)`
//! uses one global L2 norm over every parameter that has a gradient.

/// SAM ρ of the official configs.
pub const SAM_RHO: f64 = 0.05;

/// Scale factor `ρ/(‖g‖ + 1e-12)` applied to every gradient to form the perturbation, given
/// Σ g² over all parameters with a gradient.
pub fn perturbation_scale(rho: f64, grad_sum_squares: f64) -> f64 {
    rho / (grad_sum_squares.sqrt() + 1e-12)
}
