//! Live progress bars: one line per stage with records in/out, rate and queue depth.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::chain::StageLive;

pub struct Progress {
    _multi: MultiProgress,
    bars: Vec<(ProgressBar, Arc<StageLive>)>,
}

impl Progress {
    pub fn new(worker: usize, live: &[Arc<StageLive>]) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template("{prefix:>22} {spinner} {pos:>8} in {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = live
            .iter()
            .map(|l| {
                let b = multi.add(ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(format!("w{worker} {}", l.name));
                (b, l.clone())
            })
            .collect();
        Self {
            _multi: multi,
            bars,
        }
    }

    pub fn tick(&self) {
        for (b, l) in &self.bars {
            let n = l.records_in.load(Ordering::Relaxed);
            b.set_position(n);
            let per_s = b.per_sec();
            b.set_message(format!(
                "| {} out | {} failed | {:.1}/s | queue {}/{}",
                l.records_out.load(Ordering::Relaxed),
                l.failed.load(Ordering::Relaxed),
                per_s,
                l.queued.load(Ordering::Relaxed),
                l.capacity
            ));
        }
    }

    pub fn finish(&self) {
        self.tick();
        for (b, _) in &self.bars {
            b.finish();
        }
    }
}
