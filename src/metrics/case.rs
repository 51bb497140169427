//! Instance-level detection metrics of one case.

use ndarray::{ArrayView, Dimension};

use super::matching::Matching;
use super::overlap::{OverlapTable, same_shape};
use crate::Error;
use crate::components::{Connectivity, MaskElement, label};

/// What the ratios are when a case has neither ground-truth nor predicted instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyCase {
    /// NaN, as panoptica reports it (and left out of means).
    #[default]
    Nan,
    /// 1.0: nothing to find, nothing falsely found.
    One,
}

/// Options of the instance metrics.
///
/// # Example
/// ```
/// use blob_loss::metrics::{EmptyCase, Matching, MetricsConfig};
///
/// let config = MetricsConfig { matching: Matching::AnyOverlap, ..MetricsConfig::default() };
/// assert_eq!(config.empty, EmptyCase::Nan);
/// assert_eq!(config.connectivity, None); // 8 in 2D, 26 in 3D
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MetricsConfig {
    /// How instances are paired (default: greedy, IoU >= 0.5).
    pub matching: Matching,
    /// The connectivity that turns masks into instances; `None` (the default) is the full one:
    /// `Eight` in 2D, `TwentySix` in 3D.
    pub connectivity: Option<Connectivity>,
    /// The ratios of a case with no instance on either side.
    pub empty: EmptyCase,
}

impl MetricsConfig {
    /// The connectivity that turns `ndim`-dimensional masks into instances: the configured one,
    /// or the full one (`Eight` in 2D, `TwentySix` in 3D).
    ///
    /// # Errors
    /// [`Error::UnsupportedRank`] for a default connectivity outside 2D and 3D.
    ///
    /// ```
    /// use blob_loss::components::Connectivity;
    /// use blob_loss::metrics::MetricsConfig;
    /// assert_eq!(MetricsConfig::default().connectivity_for(3).unwrap(), Connectivity::TwentySix);
    /// ```
    pub fn connectivity_for(&self, ndim: usize) -> Result<Connectivity, Error> {
        self.connectivity.map_or_else(|| Connectivity::full(ndim), Ok)
    }
}

/// One ground-truth instance and how it was found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GtInstance {
    /// Its id in the ground-truth instance map.
    pub id: u32,
    /// Its size in voxels.
    pub size: u64,
    /// The id of the prediction instance it was matched with.
    pub matched: Option<u32>,
    /// Its Dice with that prediction instance (0 when unmatched).
    pub dice: f64,
}

/// The detection metrics of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseMetrics {
    /// Matched ground-truth instances.
    pub true_positives: usize,
    /// Prediction instances not matched.
    pub false_positives: usize,
    /// Ground-truth instances not matched.
    pub false_negatives: usize,
    /// Instances in the prediction.
    pub num_pred: usize,
    /// Instances in the ground truth.
    pub num_gt: usize,
    /// `tp / (tp + fp)`.
    pub precision: f64,
    /// `tp / (tp + fn)`: the sensitivity.
    pub recall: f64,
    /// `tp / (tp + (fp + fn) / 2)`: panoptica's recognition quality RQ.
    pub f1: f64,
    /// Mean IoU over the matched pairs (0 when none match).
    pub sq_iou: f64,
    /// Mean Dice over the matched pairs (0 when none match).
    pub sq_dice: f64,
    /// Panoptic quality, `sq_iou * f1`.
    pub pq: f64,
    /// Dice of the binarised masks.
    pub dice: f64,
    /// BraTS-style lesion-wise Dice: every ground-truth instance's Dice with the union of the
    /// prediction instances that touch it, summed, plus 0 for every prediction instance that
    /// touches none, divided by the number of both (`num_gt + ` those false positives). Matching
    /// is by any overlap (BraTS dilates the ground truth by a few voxels first; not done here).
    /// When neither side has an instance it is the [`EmptyCase`] value.
    pub lesion_wise_dice: f64,
    /// Every ground-truth instance, by id.
    pub instances: Vec<GtInstance>,
}

impl CaseMetrics {
    /// The metrics of an overlap table under `config`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a matching threshold outside `[0, 1]`.
    pub fn from_table(table: &OverlapTable, config: &MetricsConfig) -> Result<Self, Error> {
        config.matching.validate()?;
        let pairs = config.matching.pairs(table);
        let intersection = |pi: usize, gi: usize| {
            let (p, g) = (table.pred_sizes[pi].0, table.gt_sizes[gi].0);
            table.pairs.binary_search_by_key(&(p, g), |&(a, b, _)| (a, b)).map_or(0, |k| table.pairs[k].2)
        };
        let (num_pred, num_gt) = (table.pred_sizes.len(), table.gt_sizes.len());
        let mut instances: Vec<GtInstance> =
            table.gt_sizes.iter().map(|&(id, size)| GtInstance { id, size, matched: None, dice: 0.0 }).collect();
        let (mut sum_iou, mut sum_dice) = (0.0, 0.0);
        for &(pi, gi) in &pairs {
            let (ps, gs, i) = (table.pred_sizes[pi].1, table.gt_sizes[gi].1, intersection(pi, gi));
            let dice = super::MatchScore::Dice.of(ps, gs, i);
            sum_iou += super::MatchScore::IoU.of(ps, gs, i);
            sum_dice += dice;
            instances[gi].matched = Some(table.pred_sizes[pi].0);
            instances[gi].dice = dice;
        }
        let tp = pairs.len();
        let false_positives = match config.matching {
            // Any prediction touching a ground truth is no false positive.
            Matching::AnyOverlap => {
                let mut touching: Vec<u32> = table.pairs.iter().map(|&(p, _, _)| p).collect();
                touching.dedup();
                num_pred - touching.len()
            }
            _ => num_pred - tp,
        };
        let false_negatives = num_gt - tp;
        let both_empty = num_pred == 0 && num_gt == 0;
        let empty = match config.empty {
            EmptyCase::Nan => f64::NAN,
            EmptyCase::One => 1.0,
        };
        let ratio = |num: f64, den: f64| {
            if both_empty {
                empty
            } else if den == 0.0 {
                f64::NAN
            } else {
                num / den
            }
        };
        let tpf = tp as f64;
        let precision = ratio(tpf, tpf + false_positives as f64);
        let recall = ratio(tpf, tpf + false_negatives as f64);
        let f1 = ratio(tpf, tpf + (false_positives + false_negatives) as f64 / 2.0);
        let mean = |sum: f64| {
            if both_empty {
                empty
            } else if tp == 0 {
                0.0
            } else {
                sum / tpf
            }
        };
        let (sq_iou, sq_dice) = (mean(sum_iou), mean(sum_dice));
        let pred_voxels: u64 = table.pred_sizes.iter().map(|s| s.1).sum();
        let gt_voxels: u64 = table.gt_sizes.iter().map(|s| s.1).sum();
        let dice = if pred_voxels + gt_voxels == 0 {
            empty
        } else {
            2.0 * table.intersection_voxels as f64 / (pred_voxels + gt_voxels) as f64
        };
        let lesion_wise_dice = if both_empty { empty } else { lesion_wise_dice(table) };
        Ok(Self {
            lesion_wise_dice,
            true_positives: tp,
            false_positives,
            false_negatives,
            num_pred,
            num_gt,
            precision,
            recall,
            f1,
            sq_iou,
            sq_dice,
            pq: sq_iou * f1,
            dice,
            instances,
        })
    }
}

/// [`CaseMetrics::lesion_wise_dice`] of a table with at least one instance.
fn lesion_wise_dice(table: &OverlapTable) -> f64 {
    let gt_index = |id: u32| table.gt_sizes.binary_search_by_key(&id, |&(g, _)| g).expect("a pair's ground truth");
    let pred_size = |id: u32| {
        table.pred_sizes[table.pred_sizes.binary_search_by_key(&id, |&(p, _)| p).expect("a pair's prediction")].1
    };
    // Per ground-truth instance: the intersection and the size of the touching predictions.
    let mut touching = vec![(0u64, 0u64); table.gt_sizes.len()];
    let mut touched = 0;
    let mut last_pred = None;
    for &(p, g, i) in &table.pairs {
        let entry = &mut touching[gt_index(g)];
        entry.0 += i;
        entry.1 += pred_size(p);
        if last_pred != Some(p) {
            touched += 1;
            last_pred = Some(p);
        }
    }
    let false_positives = table.pred_sizes.len() - touched;
    let sum: f64 = table
        .gt_sizes
        .iter()
        .zip(&touching)
        .map(|(&(_, size), &(intersection, predicted))| 2.0 * intersection as f64 / (size + predicted) as f64)
        .sum();
    sum / (table.gt_sizes.len() + false_positives) as f64
}

/// The metrics of a predicted instance map against a ground-truth instance map (0 is
/// background, any positive ids).
///
/// # Errors
/// [`Error::ShapeMismatch`], [`Error::InvalidArgument`] (threshold outside `[0, 1]`). Any `u32`
/// ids are accepted: large ones are renumbered first ([`OverlapTable::new`]).
///
/// # Example
/// ```
/// use blob_loss::metrics::{evaluate_instances, MetricsConfig};
/// use ndarray::array;
///
/// let gt = array![[1u32, 1, 0, 0, 2]];
/// let pred = array![[5u32, 5, 0, 0, 0]];
/// let m = evaluate_instances(pred.view(), gt.view(), &MetricsConfig::default()).unwrap();
/// assert_eq!((m.true_positives, m.false_positives, m.false_negatives), (1, 0, 1));
/// assert_eq!(m.recall, 0.5);
/// ```
pub fn evaluate_instances<D: Dimension>(
    pred: ArrayView<'_, u32, D>,
    gt: ArrayView<'_, u32, D>,
    config: &MetricsConfig,
) -> Result<CaseMetrics, Error> {
    config.matching.validate()?;
    CaseMetrics::from_table(&OverlapTable::new(pred, gt)?, config)
}

/// The metrics of two masks (binary or multi-label), each labelled into instances with
/// `config.connectivity` (default: full, 8 in 2D, 26 in 3D).
///
/// # Errors
/// As [`evaluate_instances`], plus the labelling errors (rank, connectivity).
///
/// # Example
/// ```
/// use blob_loss::metrics::{evaluate_masks, MetricsConfig};
/// use ndarray::array;
///
/// let gt = array![[1u8, 1, 0, 0, 1]];
/// let pred = array![[true, true, false, false, true]];
/// let m = evaluate_masks(pred.view(), gt.view(), &MetricsConfig::default()).unwrap();
/// assert_eq!(m.f1, 1.0);
/// ```
pub fn evaluate_masks<A: MaskElement, B: MaskElement, D: Dimension>(
    pred: ArrayView<'_, A, D>,
    gt: ArrayView<'_, B, D>,
    config: &MetricsConfig,
) -> Result<CaseMetrics, Error> {
    config.matching.validate()?;
    let connectivity = config.connectivity_for(gt.ndim())?;
    same_shape(pred.shape(), gt.shape())?;
    let (pred, gt) = rayon::join(|| label(pred, connectivity), || label(gt, connectivity));
    evaluate_instances(pred?.labels.view(), gt?.labels.view(), config)
}

/// The metrics of predicted probabilities, binarised at `probability >= threshold`, against a
/// ground-truth instance map.
///
/// # Errors
/// [`Error::InvalidArgument`] for a threshold outside `[0, 1]` or a NaN probability, and the
/// errors of [`evaluate_masks`].
///
/// # Example
/// ```
/// use blob_loss::metrics::{evaluate_probabilities, MetricsConfig};
/// use ndarray::array;
///
/// let gt = array![[1u32, 1, 0, 0, 2]];
/// let p = array![[0.9f32, 0.7, 0.2, 0.1, 0.4]];
/// let m = evaluate_probabilities(p.view(), 0.5, gt.view(), &MetricsConfig::default()).unwrap();
/// assert_eq!(m.false_negatives, 1);
/// assert!(evaluate_probabilities(p.view(), 1.5, gt.view(), &MetricsConfig::default()).is_err());
/// ```
pub fn evaluate_probabilities<D: Dimension>(
    probabilities: ArrayView<'_, f32, D>,
    threshold: f32,
    gt: ArrayView<'_, u32, D>,
    config: &MetricsConfig,
) -> Result<CaseMetrics, Error> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Error::InvalidArgument(format!("probability threshold {threshold} is outside [0, 1]")));
    }
    if probabilities.iter().any(|p| p.is_nan()) {
        return Err(Error::InvalidArgument("the probabilities contain NaN".into()));
    }
    let mask = probabilities.mapv(|p| p >= threshold);
    let connectivity = config.connectivity_for(gt.ndim())?;
    same_shape(mask.shape(), gt.shape())?;
    let pred = label(mask.view(), connectivity)?;
    evaluate_instances(pred.labels.view(), gt, config)
}
