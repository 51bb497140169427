//! Aggregating the metrics of a data set.

use super::case::CaseMetrics;

/// Metrics over a data set, two ways.
///
/// - `mean_*`: the mean of the per-case values, NaN cases left out. Every case weighs the same,
///   whatever its number of instances.
/// - `pooled_*`: the counts summed over all cases first, then the ratios. Every instance weighs
///   the same; a case with many lesions dominates.
///
/// # Example
/// ```
/// use blob_loss::metrics::{evaluate_instances, MetricsConfig, Summary};
/// use ndarray::array;
///
/// let config = MetricsConfig::default();
/// let a = evaluate_instances(array![[1u32, 0, 2]].view(), array![[1u32, 0, 2]].view(), &config).unwrap();
/// let b = evaluate_instances(array![[0u32, 0, 0]].view(), array![[1u32, 0, 0]].view(), &config).unwrap();
/// let s = Summary::new(&[a, b]);
/// assert_eq!(s.mean_recall, 0.5); // (1 + 0) / 2
/// assert_eq!(s.pooled_recall, 2.0 / 3.0); // 2 of 3 instances
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of cases.
    pub cases: usize,
    /// Mean per-case precision.
    pub mean_precision: f64,
    /// Mean per-case recall (sensitivity).
    pub mean_recall: f64,
    /// Mean per-case F1.
    pub mean_f1: f64,
    /// Mean per-case SQ (IoU).
    pub mean_sq: f64,
    /// Mean per-case PQ.
    pub mean_pq: f64,
    /// Mean per-case Dice of the binarised masks.
    pub mean_dice: f64,
    /// Mean per-case lesion-wise Dice ([`CaseMetrics::lesion_wise_dice`]).
    pub mean_lesion_wise_dice: f64,
    /// Summed true positives.
    pub true_positives: usize,
    /// Summed false positives.
    pub false_positives: usize,
    /// Summed false negatives.
    pub false_negatives: usize,
    /// Precision of the summed counts.
    pub pooled_precision: f64,
    /// Recall of the summed counts.
    pub pooled_recall: f64,
    /// F1 of the summed counts.
    pub pooled_f1: f64,
}

impl Summary {
    /// Aggregates per-case metrics.
    pub fn new(cases: &[CaseMetrics]) -> Self {
        let mean = |f: fn(&CaseMetrics) -> f64| {
            let values: Vec<f64> = cases.iter().map(f).filter(|v| !v.is_nan()).collect();
            if values.is_empty() { f64::NAN } else { values.iter().sum::<f64>() / values.len() as f64 }
        };
        let tp: usize = cases.iter().map(|c| c.true_positives).sum();
        let fp: usize = cases.iter().map(|c| c.false_positives).sum();
        let fn_: usize = cases.iter().map(|c| c.false_negatives).sum();
        let ratio = |n: f64, d: f64| if d == 0.0 { f64::NAN } else { n / d };
        let tpf = tp as f64;
        Self {
            cases: cases.len(),
            mean_precision: mean(|c| c.precision),
            mean_recall: mean(|c| c.recall),
            mean_f1: mean(|c| c.f1),
            mean_sq: mean(|c| c.sq_iou),
            mean_pq: mean(|c| c.pq),
            mean_dice: mean(|c| c.dice),
            mean_lesion_wise_dice: mean(|c| c.lesion_wise_dice),
            true_positives: tp,
            false_positives: fp,
            false_negatives: fn_,
            pooled_precision: ratio(tpf, tpf + fp as f64),
            pooled_recall: ratio(tpf, tpf + fn_ as f64),
            pooled_f1: ratio(tpf, tpf + (fp + fn_) as f64 / 2.0),
        }
    }
}
