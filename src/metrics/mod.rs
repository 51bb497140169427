//! Instance-level detection metrics: the figures blob loss exists to improve.
//!
//! One pass over the voxels builds the sparse [`OverlapTable`] (instance sizes and the
//! intersection of every overlapping pair); the [`Matching`] and every figure of [`CaseMetrics`]
//! (true/false positives and negatives, precision, recall, F1 = panoptica's RQ, SQ, PQ, Dice, per
//! ground-truth instance results, BraTS-style lesion-wise Dice) come from it. [`Summary`]
//! aggregates a data set. [`evaluate_cells`] scores every ground-truth component on its Voronoi
//! cell (CC-Metrics' CC-Dice and per-cell recall), the figures the CC loss
//! ([`Partition::Voronoi`](crate::loss::Partition::Voronoi)) optimises.
//!
//! Empty cases: a ratio whose denominator is 0 is NaN; when neither side has an instance, the
//! ratios, SQ and Dice are NaN by default (as panoptica reports them) or 1.0 with
//! [`EmptyCase::One`]. SQ is 0 when instances exist but none match.
//!
//! `scripts/panoptica_compare.py` checks these figures against panoptica (NaiveThresholdMatching
//! with IoU 0.5 and DSC 0.1 = [`Matching::Greedy`], MaxBipartiteMatching with IoU 0.5 =
//! [`Matching::Optimal`]) on random 2D and 3D cases: tp, fp, fn, precision, recall, F1 (RQ), SQ
//! and PQ agree on all of them. (panoptica's MaxBipartiteMatching maximises the total score; with
//! IoU >= 0.5 every instance has at most one candidate and the two criteria coincide.)
//!
//! # Example
//! ```
//! use blob_loss::metrics::{evaluate_masks, Matching, MatchScore, MetricsConfig};
//! use ndarray::Array2;
//!
//! // One big lesion found, one tiny lesion missed.
//! let mut gt = Array2::<u8>::zeros((20, 20));
//! gt.slice_mut(ndarray::s![2..12, 2..12]).fill(1);
//! gt[[17, 17]] = 1;
//! let mut pred = Array2::<u8>::zeros((20, 20));
//! pred.slice_mut(ndarray::s![2..12, 2..12]).fill(1);
//! let config = MetricsConfig { matching: Matching::Greedy { score: MatchScore::IoU, threshold: 0.5 }, ..Default::default() };
//! let m = evaluate_masks(pred.view(), gt.view(), &config)?;
//! assert_eq!((m.true_positives, m.false_negatives), (1, 1));
//! assert!(m.dice > 0.99); // volumetric Dice hides the miss
//! assert_eq!(m.recall, 0.5); // instance recall does not
//! # Ok::<(), blob_loss::Error>(())
//! ```

mod case;
mod cells;
mod hungarian;
#[cfg(feature = "learner")]
mod learner;
mod matching;
mod overlap;
mod summary;

pub use case::{
    CaseMetrics, EmptyCase, GtInstance, MetricsConfig, evaluate_instances, evaluate_masks, evaluate_probabilities,
};
pub use cells::{CellMetrics, CellScore, PooledCells, evaluate_cells};
#[cfg(feature = "learner")]
pub use learner::{CcDiceMetric, InstanceFigure, InstanceMetric, InstanceMetricInput};
pub use matching::{MatchScore, Matching};
pub use overlap::OverlapTable;
pub use summary::Summary;
