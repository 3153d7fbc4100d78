//! Binary detection metrics of the evaluation job (spec §7.2), with the semantics of the official
//! code's scikit-learn calls (`roc_curve`, `auc`, `average_precision_score`, macro `recall_score`),
//! so that numbers are comparable with the paper's table.
//!
//! Scores are compared in `f64`. The official code applies a float32 `sigmoid` before ranking, which
//! saturates to exactly 1.0 for logits above ≈ 16.6 and can therefore create ties that `f64` keeps
//! apart; the difference only shows for extremely confident videos.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a metric could not be computed; messages name the item and the reason.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Every item has the same label: ranking metrics are undefined.
    #[error("all {count} videos have label {label}: AUC/AP/EER need both classes")]
    OneClass {
        /// The only label present.
        label: u8,
        /// Number of items.
        count: usize,
    },
    /// No items at all.
    #[error("no scores: metrics need at least one video")]
    Empty,
    /// Scores and labels differ in length.
    #[error("{scores} scores but {labels} labels")]
    Mismatch {
        /// Number of scores.
        scores: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A score is NaN or infinite (scikit-learn rejects these too).
    #[error("score {index} is not finite")]
    NonFinite {
        /// Position of the offending score.
        index: usize,
    },
    /// A label is neither 0 (real) nor 1 (fake).
    #[error("label {index} is {label}: labels must be 0 (real) or 1 (fake)")]
    Label {
        /// Position of the offending label.
        index: usize,
        /// The label found.
        label: u8,
    },
}

/// Receiver operating characteristic, as `sklearn.metrics.roc_curve(drop_intermediate=True)`
/// returns it: points ordered by decreasing threshold, starting at (0, 0) with threshold +∞.
///
/// JSON has no infinity: non-finite thresholds serialise as `null`, and `null` reads back as +∞.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False-positive rate per point (non-decreasing).
    pub fpr: Vec<f64>,
    /// True-positive rate per point (non-decreasing).
    pub tpr: Vec<f64>,
    /// Score threshold per point: an item is called positive when its score ≥ the threshold.
    #[serde(with = "inf_as_null_vec")]
    pub thresholds: Vec<f64>,
}

/// The metrics the official evaluation reports for one test set (video level).
///
/// `best_threshold` may be +∞ (the curve's first point is the closest to (0, 1), e.g. for an
/// inverted ranking); it serialises as `null` then, like [`RocCurve::thresholds`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    /// Area under the ROC curve.
    pub auc: f64,
    /// Average precision (step-wise, ties grouped).
    pub ap: f64,
    /// Macro recall at probability 0.5 (= balanced accuracy).
    pub ar: f64,
    /// 2·AP·AR/(AP+AR).
    pub mf1: f64,
    /// Accuracy at probability 0.5.
    pub acc: f64,
    /// Equal error rate: FPR at the ROC point minimising |FPR − FNR|.
    pub eer: f64,
    /// Probability threshold of the ROC point closest to (FPR 0, TPR 1).
    #[serde(with = "inf_as_null")]
    pub best_threshold: f64,
    /// Number of items scored.
    pub count: usize,
    /// Number of items with label 1 (fake).
    pub positives: usize,
}

/// Logistic function, written so that neither branch overflows.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Checks lengths, finiteness and label values; returns the number of positives.
fn validate(scores: &[f64], labels: &[u8]) -> Result<usize, MetricsError> {
    if scores.len() != labels.len() {
        return Err(MetricsError::Mismatch {
            scores: scores.len(),
            labels: labels.len(),
        });
    }
    if scores.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    if let Some(index) = labels.iter().position(|&l| l > 1) {
        return Err(MetricsError::Label {
            index,
            label: labels[index],
        });
    }
    Ok(labels.iter().filter(|&&l| l == 1).count())
}

/// [`validate`] plus the both-classes requirement of the ranking metrics.
fn validate_two_class(scores: &[f64], labels: &[u8]) -> Result<usize, MetricsError> {
    let positives = validate(scores, labels)?;
    if positives == 0 || positives == labels.len() {
        return Err(MetricsError::OneClass {
            label: labels[0],
            count: labels.len(),
        });
    }
    Ok(positives)
}

/// Cumulative counts at each distinct score, by decreasing score (sklearn `_binary_clf_curve`).
struct ClfCurve {
    fps: Vec<usize>,
    tps: Vec<usize>,
    thresholds: Vec<f64>,
}

/// Inputs must be validated (finite scores, labels 0/1).
fn binary_clf_curve(scores: &[f64], labels: &[u8]) -> ClfCurve {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Descending; equal scores (−0.0 == 0.0 included) are grouped below, so their order is moot.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = ClfCurve {
        fps: Vec::new(),
        tps: Vec::new(),
        thresholds: Vec::new(),
    };
    let mut tp = 0usize;
    for (i, &idx) in order.iter().enumerate() {
        tp += usize::from(labels[idx]);
        let last_of_group = order
            .get(i + 1)
            .is_none_or(|&next| scores[next] != scores[idx]);
        if last_of_group {
            out.tps.push(tp);
            out.fps.push(i + 1 - tp);
            out.thresholds.push(scores[idx]);
        }
    }
    out
}

/// ROC curve with scikit-learn's `roc_curve` semantics: tied scores form one point, collinear
/// intermediate points are dropped (`drop_intermediate=True`), and a first point (0, 0) with
/// threshold +∞ is prepended (scikit-learn ≥ 1.3; older versions used max score + 1).
pub fn roc_curve(scores: &[f64], labels: &[u8]) -> Result<RocCurve, MetricsError> {
    validate_two_class(scores, labels)?;
    let c = binary_clf_curve(scores, labels);
    let n = c.fps.len();
    let keep: Vec<usize> = if n > 2 {
        // A point is kept when the second difference of fps or tps there is non-zero.
        let second_diff =
            |v: &[usize], i: usize| v[i + 1] as i64 - 2 * v[i] as i64 + v[i - 1] as i64;
        std::iter::once(0)
            .chain(
                (1..n - 1).filter(|&i| second_diff(&c.fps, i) != 0 || second_diff(&c.tps, i) != 0),
            )
            .chain(std::iter::once(n - 1))
            .collect()
    } else {
        (0..n).collect()
    };
    let total_fp = c.fps[n - 1] as f64;
    let total_tp = c.tps[n - 1] as f64;
    let mut curve = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    for i in keep {
        curve.fpr.push(c.fps[i] as f64 / total_fp);
        curve.tpr.push(c.tps[i] as f64 / total_tp);
        curve.thresholds.push(c.thresholds[i]);
    }
    Ok(curve)
}

/// Area under the curve by the trapezoidal rule, like `sklearn.metrics.auc(fpr, tpr)` (which
/// accepts x sorted either way). Returns NaN when `fpr` is not monotonic or the lengths differ,
/// where scikit-learn raises; a curve from [`roc_curve`] is always valid.
pub fn auc(curve: &RocCurve) -> f64 {
    let (x, y) = (&curve.fpr, &curve.tpr);
    if x.len() != y.len() {
        return f64::NAN;
    }
    let steps = x.windows(2);
    let direction = if steps.clone().all(|w| w[1] >= w[0]) {
        1.0
    } else if steps.clone().all(|w| w[1] <= w[0]) {
        -1.0
    } else {
        return f64::NAN;
    };
    let area: f64 = x
        .windows(2)
        .zip(y.windows(2))
        .map(|(xw, yw)| (xw[1] - xw[0]) * (yw[0] + yw[1]) / 2.0)
        .sum();
    direction * area
}

/// Average precision like `sklearn.metrics.average_precision_score`: Σ (Rₖ − Rₖ₋₁)·Pₖ over the
/// distinct scores in decreasing order, so tied scores count as one threshold (no interpolation).
pub fn average_precision(scores: &[f64], labels: &[u8]) -> Result<f64, MetricsError> {
    let positives = validate_two_class(scores, labels)? as f64;
    let c = binary_clf_curve(scores, labels);
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for (&tp, &fp) in c.tps.iter().zip(&c.fps) {
        let recall = tp as f64 / positives;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Ok(ap)
}

/// First index of the minimum of `values` (numpy `argmin`; NaNs skipped like `nanargmin`).
fn argmin(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, v) in values.enumerate() {
        if v < best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Equal error rate: the FPR at the first ROC point minimising |FPR − FNR| (FNR = 1 − TPR).
pub fn eer(curve: &RocCurve) -> f64 {
    let i = argmin(
        curve
            .fpr
            .iter()
            .zip(&curve.tpr)
            .map(|(f, t)| (f - (1.0 - t)).abs()),
    );
    curve.fpr.get(i).copied().unwrap_or(f64::NAN)
}

/// Threshold of the first ROC point minimising √((1 − TPR)² + FPR²), the official `best_thr`.
pub fn best_threshold(curve: &RocCurve) -> f64 {
    let i = argmin(
        curve
            .fpr
            .iter()
            .zip(&curve.tpr)
            .map(|(f, t)| ((1.0 - t) * (1.0 - t) + f * f).sqrt()),
    );
    curve.thresholds.get(i).copied().unwrap_or(f64::NAN)
}

/// The official evaluation metrics from raw `cls` logits (video score = mean of its clip logits):
/// sigmoid, then AUC, AP, AR (macro recall at 0.5), mF1, ACC at 0.5, EER and the best threshold
/// (probability space). Also returns the ROC curve (over probabilities) for plotting.
pub fn binary_metrics(
    logits: &[f64],
    labels: &[u8],
) -> Result<(BinaryMetrics, RocCurve), MetricsError> {
    let positives = validate_two_class(logits, labels)?;
    let probs: Vec<f64> = logits.iter().map(|&x| sigmoid(x)).collect();
    let curve = roc_curve(&probs, labels)?;
    let ap = average_precision(&probs, labels)?;
    let count = labels.len();
    let negatives = count - positives;
    let (mut tp, mut tn) = (0usize, 0usize);
    for (&p, &l) in probs.iter().zip(labels) {
        match (p >= 0.5, l) {
            (true, 1) => tp += 1,
            (false, 0) => tn += 1,
            _ => {}
        }
    }
    let ar = (tp as f64 / positives as f64 + tn as f64 / negatives as f64) / 2.0;
    let mf1 = if ap + ar > 0.0 {
        2.0 * ap * ar / (ap + ar)
    } else {
        0.0
    };
    let metrics = BinaryMetrics {
        auc: auc(&curve),
        ap,
        ar,
        mf1,
        acc: (tp + tn) as f64 / count as f64,
        eer: eer(&curve),
        best_threshold: best_threshold(&curve),
        count,
        positives,
    };
    Ok((metrics, curve))
}

/// Fraction of items whose sigmoid(logit) ≥ 0.5 agrees with the label (the official
/// `bin_calculate_acc`, also the validation metric). Defined with a single class.
pub fn accuracy(logits: &[f64], labels: &[u8]) -> Result<f64, MetricsError> {
    validate(logits, labels)?;
    let correct = logits
        .iter()
        .zip(labels)
        .filter(|&(&x, &l)| u8::from(sigmoid(x) >= 0.5) == l)
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

/// Serde for one `f64` whose non-finite values are written as `null`; `null` reads back as +∞.
mod inf_as_null {
    use super::*;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        v.is_finite().then_some(*v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// [`inf_as_null`] for a vector.
mod inf_as_null_vec {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::INFINITY))
            .collect())
    }
}
