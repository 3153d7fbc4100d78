//! dlib's integer `rectangle`, with inclusive right/bottom edges.

use serde::{Deserialize, Serialize};

/// A face box as dlib represents it: integer `left, top, right, bottom`, where `right`
/// and `bottom` are *inclusive* (width = `right - left + 1`). The predictor maps the box
/// corners `(left, top)` and `(right, bottom)` onto the unit square, so this convention
/// matters to sub-pixel accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlibRect {
    pub left: i64,
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
}

impl DlibRect {
    /// A box from dlib's `(left, top, right, bottom)`.
    pub fn new(left: i64, top: i64, right: i64, bottom: i64) -> Self {
        Self {
            left,
            top,
            right,
            bottom,
        }
    }

    /// A box from an `(x, y, w, h)` detector box in continuous pixel coordinates
    /// (OpenCV's `Rect` convention): the pixel `(x, y)` is the first one covered and the
    /// box covers `w` pixels, so `right = left + w - 1`.
    pub fn from_xywh(x: f64, y: f64, w: f64, h: f64) -> Self {
        let w = w.round().max(1.0) as i64;
        let h = h.round().max(1.0) as i64;
        let left = x.round() as i64;
        let top = y.round() as i64;
        Self::new(left, top, left + w - 1, top + h - 1)
    }

    /// Width in pixels (`right - left + 1`).
    pub fn width(&self) -> i64 {
        self.right - self.left + 1
    }

    /// Height in pixels (`bottom - top + 1`).
    pub fn height(&self) -> i64 {
        self.bottom - self.top + 1
    }

    /// Intersection over union with another box (pixel areas, inclusive edges).
    pub fn iou(&self, other: &DlibRect) -> f64 {
        let iw = (self.right.min(other.right) - self.left.max(other.left) + 1).max(0);
        let ih = (self.bottom.min(other.bottom) - self.top.max(other.top) + 1).max(0);
        let inter = (iw * ih) as f64;
        let a = (self.width().max(0) * self.height().max(0)) as f64;
        let b = (other.width().max(0) * other.height().max(0)) as f64;
        if a + b - inter <= 0.0 {
            0.0
        } else {
            inter / (a + b - inter)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xywh_round_trip_and_iou() {
        let r = DlibRect::from_xywh(10.0, 20.0, 30.0, 40.0);
        assert_eq!(r, DlibRect::new(10, 20, 39, 59));
        assert_eq!((r.width(), r.height()), (30, 40));
        assert!((r.iou(&r) - 1.0).abs() < 1e-12);
        let shifted = DlibRect::new(25, 20, 54, 59);
        assert!((r.iou(&shifted) - 15.0 / 45.0).abs() < 1e-12);
        assert_eq!(r.iou(&DlibRect::new(100, 100, 110, 110)), 0.0);
    }
}
