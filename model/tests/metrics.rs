//! Evaluation metrics (spec §7.2): hand-worked cases, scikit-learn reference values, and
//! properties against independent brute-force definitions.

use model::metrics::{
    accuracy, auc, average_precision, best_threshold, binary_metrics, eer, roc_curve, sigmoid,
    BinaryMetrics, MetricsError, RocCurve,
};
use proptest::prelude::*;

/// Sums of a handful of fractions: a few ulps at most.
const TOL: f64 = 1e-12;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOL
}

fn assert_vec_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = (g.is_infinite() && g == w) || close(*g, *w);
        assert!(same, "{what}[{i}]: {g} vs {w} (all: {got:?})");
    }
}

/// The scikit-learn documentation example, worked by hand.
/// Sorted by score: 0.8(1) 0.4(0) 0.35(1) 0.1(0); all scores distinct, so
/// tps = [1,1,2,2], fps = [0,1,1,2]. Second differences at the inner points: fps −1, +1 → all kept.
/// ROC: fpr [0, 0, .5, .5, 1], tpr [0, .5, .5, 1, 1], thresholds [+∞, .8, .4, .35, .1].
/// AUC = 0.5·0.5 (from fpr .5→1 at tpr 1) + 0.5·0.5 (fpr 0→.5 at tpr .5) = 0.75.
/// AP: precision at each threshold 1/1, 1/2, 2/3, 2/4; recall .5, .5, 1, 1
///     → .5·1 + 0 + .5·2/3 + 0 = 5/6.
/// EER: fnr = [1, .5, .5, 0, 0]; |fpr − fnr| = [1, .5, 0, .5, 1] → point 2 → EER = .5.
/// Best threshold: distances [1, .5, .707, .5, 1] → first minimum, point 1 → .8.
#[test]
fn sklearn_doc_example_by_hand() {
    let scores = [0.1, 0.4, 0.35, 0.8];
    let labels = [0, 0, 1, 1];
    let c = roc_curve(&scores, &labels).unwrap();
    assert_vec_close(&c.fpr, &[0.0, 0.0, 0.5, 0.5, 1.0], "fpr");
    assert_vec_close(&c.tpr, &[0.0, 0.5, 0.5, 1.0, 1.0], "tpr");
    assert_vec_close(
        &c.thresholds,
        &[f64::INFINITY, 0.8, 0.4, 0.35, 0.1],
        "thresholds",
    );
    assert!(close(auc(&c), 0.75));
    assert!(close(
        average_precision(&scores, &labels).unwrap(),
        5.0 / 6.0
    ));
    assert!(close(eer(&c), 0.5));
    assert_eq!(best_threshold(&c), 0.8);
}

/// Same ranking through logits: [-2, 1, 0.5, 3] with labels [0, 0, 1, 1].
/// Calls at p ≥ 0.5 (logit ≥ 0): [0, 1, 1, 1] → correct: item 0, 2, 3 → ACC = 3/4.
/// Recall(fake) = 2/2, recall(real) = 1/2 → AR = 3/4.  mF1 = 2·(5/6)·(3/4)/(5/6 + 3/4) = 15/19.
/// Best threshold = sigmoid(3) (the top score), in probability space.
#[test]
fn binary_metrics_by_hand() {
    let logits = [-2.0, 1.0, 0.5, 3.0];
    let labels = [0, 0, 1, 1];
    let (m, c) = binary_metrics(&logits, &labels).unwrap();
    assert!(close(m.auc, 0.75), "{m:?}");
    assert!(close(m.ap, 5.0 / 6.0), "{m:?}");
    assert!(close(m.acc, 0.75), "{m:?}");
    assert!(close(m.ar, 0.75), "{m:?}");
    assert!(close(m.mf1, 15.0 / 19.0), "{m:?}");
    assert!(close(m.eer, 0.5), "{m:?}");
    assert_eq!(m.best_threshold, sigmoid(3.0));
    assert_eq!((m.count, m.positives), (4, 2));
    // The curve is over probabilities, not logits.
    assert_eq!(c.thresholds[1], sigmoid(3.0));
    assert_eq!(accuracy(&logits, &labels).unwrap(), m.acc);
}

/// All four scores tied: one threshold, tps = [2], fps = [2] → ROC (0,0)→(1,1), AUC = 0.5;
/// AP = recall 1 × precision 2/4 = 0.5; EER: |fpr − fnr| = [1, 1] → first point, fpr 0.
#[test]
fn all_tied_scores() {
    let scores = [0.5; 4];
    let labels = [0, 1, 0, 1];
    let c = roc_curve(&scores, &labels).unwrap();
    assert_vec_close(&c.fpr, &[0.0, 1.0], "fpr");
    assert_vec_close(&c.tpr, &[0.0, 1.0], "tpr");
    assert!(close(auc(&c), 0.5));
    assert!(close(average_precision(&scores, &labels).unwrap(), 0.5));
}

/// A tie across classes: 0.9(1) 0.6(1) 0.6(0) 0.2(0).
/// Groups: {0.9}: tp 1 fp 0; {0.6}: tp 2 fp 1; {0.2}: tp 2 fp 2.
/// ROC: fpr [0, 0, .5, 1], tpr [0, .5, 1, 1] → AUC = .5·(.5+1)/2 + .5·1 = .875, i.e. 3.5 of 4
/// positive/negative pairs ranked right with the tied pair counting ½.
/// AP groups the tie: .5·1 + .5·(2/3) = 5/6 (breaking the tie positive-first would give 1.0).
#[test]
fn tie_across_classes_counts_half_and_groups_ap() {
    let scores = [0.9, 0.6, 0.6, 0.2];
    let labels = [1, 1, 0, 0];
    let c = roc_curve(&scores, &labels).unwrap();
    assert_vec_close(&c.fpr, &[0.0, 0.0, 0.5, 1.0], "fpr");
    assert_vec_close(&c.tpr, &[0.0, 0.5, 1.0, 1.0], "tpr");
    assert!(close(auc(&c), 0.875));
    assert!(close(
        average_precision(&scores, &labels).unwrap(),
        5.0 / 6.0
    ));
    // Input order inside the tie must not matter.
    let swapped = roc_curve(&[0.9, 0.6, 0.6, 0.2], &[1, 0, 1, 0]).unwrap();
    assert_eq!(swapped, c);
}

/// Perfect ranking 0.9(1) 0.8(1) 0.7(0) 0.6(0): tps [1,2,2,2], fps [0,0,1,2].
/// Point at 0.7 is collinear (second differences 0 and 0) → dropped.
/// ROC: fpr [0,0,0,1], tpr [0,.5,1,1], thresholds [+∞,.9,.8,.6]; AUC 1, AP 1, EER 0 at point 2,
/// best threshold .8 (distance 0).
#[test]
fn perfect_ranking() {
    let scores = [0.9, 0.8, 0.7, 0.6];
    let labels = [1, 1, 0, 0];
    let c = roc_curve(&scores, &labels).unwrap();
    assert_vec_close(&c.fpr, &[0.0, 0.0, 0.0, 1.0], "fpr");
    assert_vec_close(&c.tpr, &[0.0, 0.5, 1.0, 1.0], "tpr");
    assert_vec_close(&c.thresholds, &[f64::INFINITY, 0.9, 0.8, 0.6], "thr");
    assert_eq!(auc(&c), 1.0);
    assert!(close(average_precision(&scores, &labels).unwrap(), 1.0));
    assert_eq!(eer(&c), 0.0);
    assert_eq!(best_threshold(&c), 0.8);
}

/// Inverted ranking 0.9(0) 0.8(0) 0.2(1) 0.1(1): tps [0,0,1,2], fps [1,2,2,2]; point 0.2 dropped.
/// ROC: fpr [0,.5,1,1], tpr [0,0,0,1]; AUC 0. AP: precisions 0, 0, 1/3, 2/4 at recalls 0,0,.5,1
/// → .5/3 + .5·.5 = 5/12. EER: |fpr − fnr| = [1,.5,0,1] → fpr 1. Best threshold: distances
/// [1, 1.118, 1.414, 1] → first point → +∞, which serialises as null and reads back as +∞.
#[test]
fn inverted_ranking() {
    let scores = [0.1, 0.2, 0.8, 0.9];
    let labels = [1, 1, 0, 0];
    let c = roc_curve(&scores, &labels).unwrap();
    assert_vec_close(&c.fpr, &[0.0, 0.5, 1.0, 1.0], "fpr");
    assert_vec_close(&c.tpr, &[0.0, 0.0, 0.0, 1.0], "tpr");
    assert_eq!(auc(&c), 0.0);
    assert!(close(
        average_precision(&scores, &labels).unwrap(),
        5.0 / 12.0
    ));
    assert_eq!(eer(&c), 1.0);
    assert_eq!(best_threshold(&c), f64::INFINITY);

    let (m, _) = binary_metrics(&[-1.0, -0.5, 1.0, 2.0], &labels).unwrap();
    assert_eq!(m.best_threshold, f64::INFINITY);
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains("\"best_threshold\":null"), "{json}");
    let back: BinaryMetrics = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn roc_curve_json_round_trip_keeps_infinite_threshold() {
    let c = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    assert!(json.contains("\"thresholds\":[null,0.8,"), "{json}");
    let back: RocCurve = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
}

/// Reference values from scikit-learn 1.9.1 (numpy sigmoid in float64, then `roc_curve`, `auc`,
/// `average_precision_score`, `recall_score(average='macro')`, EER and best threshold exactly as in
/// the official `lib/metrics.py`). 40 videos, logits on a 0.5 grid so that many scores tie across
/// classes (generated by `random.seed(7)`; the inputs are pasted here, not regenerated).
#[test]
fn matches_sklearn_on_tied_logits() {
    let labels = [
        1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0,
        1, 0, 0, 0, 1, 0, 0, 0, 0, 1,
    ];
    let logits = [
        0.5, -1.5, 0.0, 1.0, -1.5, 0.0, 1.5, -2.0, -0.5, 1.0, -3.0, 0.5, 0.5, -1.5, 0.0, -0.5,
        -1.0, 0.5, 0.5, 0.5, 1.5, 1.0, -0.5, -2.0, 0.5, -1.0, 0.5, -0.5, -1.5, -1.0, 2.5, -3.0,
        -2.0, 0.0, 2.5, 0.5, -2.5, -3.5, 0.0, 0.0,
    ];
    let (m, c) = binary_metrics(&logits, &labels).unwrap();
    let sk_fpr = [
        0.0,
        0.0,
        0.03571428571428571,
        0.10714285714285714,
        0.2857142857142857,
        0.42857142857142855,
        0.5357142857142857,
        0.6071428571428571,
        0.75,
        0.8571428571428571,
        0.8928571428571429,
        0.9642857142857143,
        1.0,
    ];
    let sk_tpr = [
        0.0,
        0.16666666666666666,
        0.25,
        0.3333333333333333,
        0.6666666666666666,
        0.8333333333333334,
        0.9166666666666666,
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    let sk_thr = [
        f64::INFINITY,
        0.9241418199787566,
        0.8175744761936437,
        0.7310585786300049,
        0.6224593312018546,
        0.5,
        0.3775406687981454,
        0.2689414213699951,
        0.18242552380635635,
        0.11920292202211755,
        0.07585818002124355,
        0.04742587317756678,
        0.02931223075135632,
    ];
    assert_vec_close(&c.fpr, &sk_fpr, "fpr");
    assert_vec_close(&c.tpr, &sk_tpr, "tpr");
    assert_vec_close(&c.thresholds, &sk_thr, "thresholds");
    assert!(close(m.auc, 0.7797619047619048), "{m:?}");
    assert!(close(m.ap, 0.5889491255870566), "{m:?}");
    assert!(close(m.ar, 0.7023809523809523), "{m:?}");
    assert!(close(m.mf1, 0.640683051981097), "{m:?}");
    assert!(close(m.acc, 0.65), "{m:?}");
    assert!(close(m.best_threshold, 0.6224593312018546), "{m:?}");
    assert!(close(m.eer, 0.2857142857142857), "{m:?}");
    assert_eq!((m.count, m.positives), (40, 12));
}

/// scikit-learn 1.9.1 `roc_curve` on raw scores where `drop_intermediate` removes a point
/// (13 distinct thresholds → 12 points after the +∞ one is added and 0.5 is dropped).
#[test]
fn matches_sklearn_drop_intermediate() {
    let s = [
        0.95, 0.9, 0.9, 0.85, 0.8, 0.7, 0.7, 0.7, 0.6, 0.5, 0.45, 0.4, 0.3, 0.3, 0.2, 0.1,
    ];
    let y = [1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0];
    let c = roc_curve(&s, &y).unwrap();
    assert_vec_close(
        &c.fpr,
        &[
            0.0, 0.0, 0.0, 0.0, 0.125, 0.375, 0.5, 0.5, 0.625, 0.875, 0.875, 1.0,
        ],
        "fpr",
    );
    assert_vec_close(
        &c.tpr,
        &[
            0.0, 0.125, 0.375, 0.5, 0.5, 0.625, 0.625, 0.875, 0.875, 0.875, 1.0, 1.0,
        ],
        "tpr",
    );
    assert_vec_close(
        &c.thresholds,
        &[
            f64::INFINITY,
            0.95,
            0.9,
            0.85,
            0.8,
            0.7,
            0.6,
            0.45,
            0.4,
            0.3,
            0.2,
            0.1,
        ],
        "thresholds",
    );
    assert!(close(auc(&c), 0.734375));
    assert!(close(
        average_precision(&s, &y).unwrap(),
        0.7993371212121212
    ));
}

#[test]
fn one_class_is_an_error_naming_count_and_label() {
    let err = binary_metrics(&[0.3, -1.0, 2.0], &[1, 1, 1]).unwrap_err();
    assert!(matches!(err, MetricsError::OneClass { label: 1, count: 3 }));
    assert_eq!(
        err.to_string(),
        "all 3 videos have label 1: AUC/AP/EER need both classes"
    );
    let err = roc_curve(&[0.3, 0.1], &[0, 0]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "all 2 videos have label 0: AUC/AP/EER need both classes"
    );
    assert!(matches!(
        average_precision(&[0.3], &[1]),
        Err(MetricsError::OneClass { label: 1, count: 1 })
    ));
    // Accuracy is defined with one class: logits ≥ 0 are called fake.
    assert!(close(
        accuracy(&[0.3, -1.0, 2.0], &[1, 1, 1]).unwrap(),
        2.0 / 3.0
    ));
}

#[test]
fn bad_input_is_an_error_naming_the_item() {
    let nan = binary_metrics(&[0.1, f64::NAN, 0.3], &[0, 1, 1]).unwrap_err();
    assert!(matches!(nan, MetricsError::NonFinite { index: 1 }), "{nan}");
    assert_eq!(nan.to_string(), "score 1 is not finite");
    assert!(matches!(
        roc_curve(&[0.1, f64::INFINITY], &[0, 1]),
        Err(MetricsError::NonFinite { index: 1 })
    ));
    assert!(matches!(
        accuracy(&[f64::NAN], &[0]),
        Err(MetricsError::NonFinite { index: 0 })
    ));
    let mismatch = binary_metrics(&[0.1, 0.2], &[0, 1, 1]).unwrap_err();
    assert!(matches!(
        mismatch,
        MetricsError::Mismatch {
            scores: 2,
            labels: 3
        }
    ));
    assert_eq!(mismatch.to_string(), "2 scores but 3 labels");
    assert!(matches!(
        accuracy(&[0.1], &[]),
        Err(MetricsError::Mismatch { .. })
    ));
    assert!(matches!(binary_metrics(&[], &[]), Err(MetricsError::Empty)));
    assert!(matches!(accuracy(&[], &[]), Err(MetricsError::Empty)));
    assert!(matches!(
        average_precision(&[0.1, 0.2], &[0, 2]),
        Err(MetricsError::Label { index: 1, label: 2 })
    ));
}

#[test]
fn auc_of_a_decreasing_or_broken_curve() {
    // sklearn.metrics.auc accepts x sorted descending (direction −1).
    let rev = RocCurve {
        fpr: vec![1.0, 0.5, 0.0],
        tpr: vec![1.0, 1.0, 0.0],
        thresholds: vec![0.0; 3],
    };
    assert!(close(auc(&rev), 0.75));
    let broken = RocCurve {
        fpr: vec![0.0, 1.0, 0.5],
        tpr: vec![0.0, 1.0, 1.0],
        thresholds: vec![0.0; 3],
    };
    assert!(auc(&broken).is_nan());
}

/// Mann–Whitney: the fraction of (positive, negative) pairs ranked right, ties counting ½.
fn pairwise_auc(s: &[f64], y: &[u8]) -> f64 {
    let pos: Vec<f64> = (0..s.len()).filter(|&i| y[i] == 1).map(|i| s[i]).collect();
    let neg: Vec<f64> = (0..s.len()).filter(|&i| y[i] == 0).map(|i| s[i]).collect();
    let mut sum = 0.0;
    for &p in &pos {
        for &n in &neg {
            sum += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    sum / (pos.len() * neg.len()) as f64
}

/// AP as the mean over positives of the precision among items scoring ≥ that positive.
fn brute_ap(s: &[f64], y: &[u8]) -> f64 {
    let positives: Vec<f64> = (0..s.len()).filter(|&i| y[i] == 1).map(|i| s[i]).collect();
    let mut total = 0.0;
    for &t in &positives {
        let above = (0..s.len()).filter(|&i| s[i] >= t);
        let (n, tp) = above.fold((0.0, 0.0), |(n, tp), i| (n + 1.0, tp + f64::from(y[i])));
        total += tp / n;
    }
    total / positives.len() as f64
}

fn two_class_cases() -> impl Strategy<Value = (Vec<f64>, Vec<u8>)> {
    // Scores on a coarse grid so that ties are common.
    prop::collection::vec((0u8..8, 0u8..2), 2..60)
        .prop_map(|v| {
            let s = v.iter().map(|&(q, _)| f64::from(q) / 4.0 - 1.0).collect();
            let y = v.iter().map(|&(_, l)| l).collect();
            (s, y)
        })
        .prop_filter("both classes", |(_, y): &(Vec<f64>, Vec<u8>)| {
            y.contains(&0) && y.contains(&1)
        })
}

proptest! {
    #[test]
    fn auc_equals_pairwise_ranking((s, y) in two_class_cases()) {
        let c = roc_curve(&s, &y).unwrap();
        let a = auc(&c);
        prop_assert!((a - pairwise_auc(&s, &y)).abs() < 1e-12, "{} vs {}", a, pairwise_auc(&s, &y));
        // Curve invariants: starts at (0,0) with +∞, ends at (1,1), monotone.
        prop_assert_eq!((c.fpr[0], c.tpr[0], c.thresholds[0]), (0.0, 0.0, f64::INFINITY));
        prop_assert_eq!((*c.fpr.last().unwrap(), *c.tpr.last().unwrap()), (1.0, 1.0));
        prop_assert!(c.fpr.windows(2).all(|w| w[1] >= w[0]));
        prop_assert!(c.tpr.windows(2).all(|w| w[1] >= w[0]));
        prop_assert!(c.thresholds.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn ap_equals_mean_precision_at_positives((s, y) in two_class_cases()) {
        let ap = average_precision(&s, &y).unwrap();
        prop_assert!((ap - brute_ap(&s, &y)).abs() < 1e-12, "{} vs {}", ap, brute_ap(&s, &y));
    }

    #[test]
    fn metrics_do_not_depend_on_input_order((s, y) in two_class_cases(), rot in 0usize..60) {
        let k = rot % s.len();
        let (mut s2, mut y2) = (s.clone(), y.clone());
        s2.rotate_left(k);
        y2.rotate_left(k);
        let (a, ca) = binary_metrics(&s, &y).unwrap();
        let (b, cb) = binary_metrics(&s2, &y2).unwrap();
        prop_assert_eq!(ca, cb);
        prop_assert!((a.ap - b.ap).abs() < 1e-12 && a.auc == b.auc && a.acc == b.acc);
    }
}
