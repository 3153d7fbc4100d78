//! Hull masks of `package_utils/deepfake_mask.py` (spec §11.1): the four hull types drawn with
//! OpenCV's `convexHull` + `fillConvexPoly` on integer landmarks.

use opencv::core::{Point, Scalar, Vector, CV_8UC1};
use opencv::imgproc;
use opencv::prelude::*;

use super::{PlaneF64, SynthError};

/// The four hull types of `random_get_hull`, in the official index order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HullType {
    /// 0: `dfl_full` — jaw+mouth, nose bridge, brows+jaw anchors.
    DflFull,
    /// 1: `extended` — components with eyebrows pushed upwards.
    Extended,
    /// 2: `components` — eight facial component hulls.
    Components,
    /// 3: `facehull` — hull of all points (68 or 81). The official call asks for `LINE_AA`, but on
    /// its float mask OpenCV falls back to 8-connected filling, so the mask is binary (fixture-checked).
    FaceHull,
}

impl HullType {
    pub fn from_index(i: usize) -> Result<Self, SynthError> {
        Ok(match i {
            0 => Self::DflFull,
            1 => Self::Extended,
            2 => Self::Components,
            3 => Self::FaceHull,
            _ => return Err(SynthError::BadInput(format!("hull type {i} not in 0..=3"))),
        })
    }
}

/// Fewer hull pixels than this is treated as a degenerate (tiny or collapsed) face.
pub const MIN_HULL_PIXELS: usize = 64;

const DFL_FULL: [&[usize]; 3] = [
    &[
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 48, 49, 50, 51, 52, 53, 54, 55,
        56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 0, 8, 16,
    ],
    &[27, 28, 29, 30, 33],
    &[17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 0, 27, 16, 33],
];

const COMPONENTS: [&[usize]; 8] = [
    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 17],
    &[8, 9, 10, 11, 12, 13, 14, 15, 16, 26],
    &[17, 18, 19, 8],
    &[24, 25, 26, 8],
    &[19, 20, 21, 22, 23, 24, 8],
    &[17, 18, 19, 20, 21, 27, 31, 32, 33, 34, 35, 8],
    &[22, 23, 24, 25, 26, 27, 31, 32, 33, 34, 35, 8],
    &[27, 28, 29, 30, 31, 32, 33, 34, 35],
];

/// Landmarks cast like `landmarks.astype(np.int32)` (truncation toward zero).
pub fn to_int_points(points: &[[f64; 2]]) -> Vec<[i32; 2]> {
    points.iter().map(|p| [p[0] as i32, p[1] as i32]).collect()
}

fn floor_div2(a: i32) -> i32 {
    a.div_euclid(2)
}

/// The `extended` eyebrow lift: brows move away from the eye line by half their distance.
fn extend_brows(l: &mut [[i32; 2]]) {
    let half = |a: [i32; 2], b: [i32; 2]| [floor_div2(a[0] + b[0]), floor_div2(a[1] + b[1])];
    let ml = half(l[36], l[0]);
    let mr = half(l[16], l[45]);
    let ql = half(l[36], ml);
    let qr = half(l[45], mr);
    let bot_l = [ql, l[36], l[37], l[38], l[39]];
    let bot_r = [l[42], l[43], l[44], l[45], qr];
    for k in 0..5 {
        for c in 0..2 {
            l[17 + k][c] += floor_div2(l[17 + k][c] - bot_l[k][c]);
            l[22 + k][c] += floor_div2(l[22 + k][c] - bot_r[k][c]);
        }
    }
}

fn fill_hull(mask: &mut Mat, pts: &[[i32; 2]], line_type: i32) -> Result<(), SynthError> {
    let v: Vector<Point> = pts.iter().map(|p| Point::new(p[0], p[1])).collect();
    let mut hull: Vector<Point> = Vector::new();
    imgproc::convex_hull(&v, &mut hull, false, true)?;
    imgproc::fill_convex_poly(mask, &hull, Scalar::all(255.0), line_type, 0)?;
    Ok(())
}

/// Draws the hull mask of `kind` for an image of `height`×`width`; values exactly {0, 1}.
pub fn hull_mask(
    points: &[[f64; 2]],
    kind: HullType,
    height: usize,
    width: usize,
) -> Result<PlaneF64, SynthError> {
    if points.len() < 68 {
        return Err(SynthError::BadInput(format!(
            "hull needs at least 68 landmarks, got {}",
            points.len()
        )));
    }
    let mut l = to_int_points(points);
    let mut mask =
        Mat::new_rows_cols_with_default(height as i32, width as i32, CV_8UC1, Scalar::all(0.0))?;
    let pick = |l: &[[i32; 2]], idx: &[usize]| idx.iter().map(|&i| l[i]).collect::<Vec<_>>();
    match kind {
        HullType::DflFull => {
            for set in DFL_FULL {
                fill_hull(&mut mask, &pick(&l, set), imgproc::LINE_8)?;
            }
        }
        HullType::Extended | HullType::Components => {
            if kind == HullType::Extended {
                extend_brows(&mut l);
            }
            for set in COMPONENTS {
                fill_hull(&mut mask, &pick(&l, set), imgproc::LINE_8)?;
            }
        }
        HullType::FaceHull => fill_hull(&mut mask, &l, imgproc::LINE_8)?,
    }
    let bytes = mask.data_bytes()?;
    let nonzero = bytes.iter().filter(|&&v| v > 0).count();
    if nonzero < MIN_HULL_PIXELS {
        return Err(SynthError::DegenerateHull(format!(
            "{kind:?} hull covers {nonzero} pixels (< {MIN_HULL_PIXELS})"
        )));
    }
    Ok(PlaneF64 {
        height,
        width,
        data: bytes.iter().map(|&v| v as f64 / 255.0).collect(),
    })
}
