//! `LinearDecayLR` of the official trainer (spec §6): linear warm-up from `base` to
//! `booster·base` over the first `epochs / start_decay` epochs, then linear decay to 0 at `epochs`.
//! Stepped once per epoch, so the learning rate is a function of the epoch alone.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearDecay {
    pub base: f64,
    pub booster: f64,
    pub epochs: u32,
    /// The official `start_decay` divisor: the peak is at `epochs / start_decay`.
    pub start_decay: u32,
}

impl LinearDecay {
    /// Epoch at which the peak is reached and the decay starts.
    pub fn peak_epoch(&self) -> u32 {
        (self.epochs / self.start_decay.max(1)).max(1)
    }

    /// Learning rate used during `epoch`.
    pub fn lr(&self, epoch: u32) -> f64 {
        let (b, peak) = (self.base, self.booster * self.base);
        let s = self.peak_epoch();
        if epoch < s {
            b + (peak - b) * epoch as f64 / s as f64
        } else if self.epochs > s {
            (peak - peak * (epoch - s) as f64 / (self.epochs - s) as f64).max(0.0)
        } else {
            peak
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values spec §6 lists for the c23 recipe (base 1e-7, booster 500, 200 epochs, /4).
    #[test]
    fn official_c23_values() {
        let s = LinearDecay {
            base: 1e-7,
            booster: 500.0,
            epochs: 200,
            start_decay: 4,
        };
        assert_eq!(s.peak_epoch(), 50);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-3 * b.abs().max(1e-12);
        for (e, want) in [
            (0, 1e-7),
            (5, 5.09e-6),
            (25, 2.505e-5),
            (49, 4.9e-5),
            (50, 5e-5),
            (100, 3.333e-5),
            (150, 1.667e-5),
            (199, 3.333e-7),
        ] {
            assert!(close(s.lr(e), want), "epoch {e}: {} vs {want}", s.lr(e));
        }
        assert_eq!(s.lr(200), 0.0);
    }

    /// c0: 120 epochs, peak 5e-5 at epoch 30, 0 at 120.
    #[test]
    fn official_c0_peak() {
        let s = LinearDecay {
            base: 1e-7,
            booster: 500.0,
            epochs: 120,
            start_decay: 4,
        };
        assert_eq!(s.peak_epoch(), 30);
        assert!((s.lr(30) - 5e-5).abs() < 1e-12);
        assert!(s.lr(29) < s.lr(30) && s.lr(31) < s.lr(30));
    }
}
