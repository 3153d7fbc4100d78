//! `LinearDecayLR` (spec §6): linear warm-up from `base` to `booster·base` until `start_decay`,
//! then linear decay to 0 at `n_epoch`. Stepped once per epoch.

/// The official learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearDecayLr {
    /// Base learning rate `b` (1e-7 in the configs).
    pub base: f64,
    /// Peak multiplier (500).
    pub booster: f64,
    /// Total epochs (200 for c23).
    pub n_epoch: u32,
    /// Epoch at which the decay starts (`n_epoch / 4`).
    pub start_decay: u32,
}

impl LinearDecayLr {
    /// The c23 schedule: b = 1e-7, booster 500, 200 epochs, peak at 50.
    pub fn c23() -> Self {
        Self {
            base: 1e-7,
            booster: 500.0,
            n_epoch: 200,
            start_decay: 50,
        }
    }

    /// Learning rate used during `epoch` (0-based).
    pub fn lr(&self, epoch: u32) -> f64 {
        let peak = self.booster * self.base;
        let e = epoch as f64;
        if epoch < self.start_decay {
            self.base + (peak - self.base) * e / self.start_decay as f64
        } else {
            let span = (self.n_epoch - self.start_decay) as f64;
            peak - peak * (e - self.start_decay as f64) / span
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c23_values_match_spec() {
        let s = LinearDecayLr::c23();
        let cases = [
            (0, 1e-7),
            (5, 5.09e-6),
            (25, 2.505e-5),
            (49, 4.9002e-5),
            (50, 5e-5),
            (100, 3.3333e-5),
            (199, 3.333e-7),
        ];
        for (e, want) in cases {
            let got = s.lr(e);
            assert!(
                (got - want).abs() / want < 1e-3,
                "epoch {e}: {got} vs {want}"
            );
        }
    }
}
