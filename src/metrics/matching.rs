//! Pairing prediction instances with ground-truth instances.

use super::hungarian;
use super::overlap::OverlapTable;
use crate::Error;

/// The overlap score of a pair of instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchScore {
    /// Intersection over union, `|P ∩ G| / |P ∪ G|`.
    IoU,
    /// Dice, `2 |P ∩ G| / (|P| + |G|)`.
    Dice,
}

impl MatchScore {
    /// The score of a pair from the instance sizes and their intersection.
    ///
    /// ```
    /// use blob_loss::metrics::MatchScore;
    /// assert_eq!(MatchScore::IoU.of(4, 4, 2), 2.0 / 6.0);
    /// assert_eq!(MatchScore::Dice.of(4, 4, 2), 0.5);
    /// ```
    pub fn of(self, pred_size: u64, gt_size: u64, intersection: u64) -> f64 {
        let (p, g, i) = (pred_size as f64, gt_size as f64, intersection as f64);
        match self {
            Self::IoU => i / (p + g - i),
            Self::Dice => 2.0 * i / (p + g),
        }
    }
}

/// How prediction instances are paired with ground-truth instances.
///
/// # Example
/// ```
/// use blob_loss::metrics::{MatchScore, Matching};
///
/// // panoptica's default: one-to-one, best pairs first, IoU >= 0.5.
/// let m = Matching::Greedy { score: MatchScore::IoU, threshold: 0.5 };
/// assert!(m.validate().is_ok());
/// assert!(Matching::Greedy { score: MatchScore::IoU, threshold: 1.5 }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Matching {
    /// A ground-truth instance is detected (true positive) when any prediction instance touches
    /// it; a prediction instance that touches no ground truth is a false positive; an undetected
    /// ground-truth instance is a false negative. Many-to-one: one prediction that covers two
    /// ground-truth instances detects both, and two predictions on one ground truth count once
    /// and are no false positives (the WMH challenge and blob-loss paper style). For SQ, each
    /// detected instance is paired with the prediction of highest IoU.
    AnyOverlap,
    /// One-to-one: pairs taken by decreasing score (ties by ground-truth id, then prediction id)
    /// and accepted when both are still free and the score is `>= threshold`.
    Greedy {
        /// The pair score.
        score: MatchScore,
        /// The smallest score that matches, in `[0, 1]`.
        threshold: f64,
    },
    /// One-to-one, the most matches with score `>= threshold`, then the largest total score
    /// (Hungarian assignment on each connected group of candidate pairs), as picai_eval does.
    Optimal {
        /// The pair score.
        score: MatchScore,
        /// The smallest score that matches, in `[0, 1]`.
        threshold: f64,
    },
}

impl Default for Matching {
    /// `Greedy { score: IoU, threshold: 0.5 }`, panoptica's default.
    fn default() -> Self {
        Self::Greedy { score: MatchScore::IoU, threshold: 0.5 }
    }
}

impl Matching {
    /// Checks that the threshold lies in `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] otherwise.
    pub fn validate(&self) -> Result<(), Error> {
        match *self {
            Self::Greedy { threshold, .. } | Self::Optimal { threshold, .. } if !(0.0..=1.0).contains(&threshold) => {
                Err(Error::InvalidArgument(format!("matching threshold {threshold} is outside [0, 1]")))
            }
            _ => Ok(()),
        }
    }

    /// The matched `(prediction index, ground-truth index)` pairs, indices into the table's size
    /// lists; for [`Matching::AnyOverlap`], every touched ground truth with its best prediction.
    pub(crate) fn pairs(&self, table: &OverlapTable) -> Vec<(usize, usize)> {
        let pred_index = |id: u32| table.pred_sizes.binary_search_by_key(&id, |&(i, _)| i).expect("listed");
        let gt_index = |id: u32| table.gt_sizes.binary_search_by_key(&id, |&(i, _)| i).expect("listed");
        let scored = |score: MatchScore| -> Vec<(usize, usize, f64)> {
            table
                .pairs
                .iter()
                .map(|&(p, g, i)| {
                    let (pi, gi) = (pred_index(p), gt_index(g));
                    (pi, gi, score.of(table.pred_sizes[pi].1, table.gt_sizes[gi].1, i))
                })
                .collect()
        };
        match *self {
            Self::AnyOverlap => {
                // Every touched ground truth, with its best prediction by IoU.
                let mut best: Vec<Option<(usize, f64)>> = vec![None; table.gt_sizes.len()];
                for (pi, gi, s) in scored(MatchScore::IoU) {
                    if best[gi].is_none_or(|(_, b)| s > b) {
                        best[gi] = Some((pi, s));
                    }
                }
                best.iter().enumerate().filter_map(|(gi, b)| b.map(|(pi, _)| (pi, gi))).collect()
            }
            Self::Greedy { score, threshold } => {
                let mut candidates: Vec<_> = scored(score).into_iter().filter(|&(_, _, s)| s >= threshold).collect();
                candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
                let (mut pred_used, mut gt_used) =
                    (vec![false; table.pred_sizes.len()], vec![false; table.gt_sizes.len()]);
                let mut out = Vec::new();
                for (pi, gi, _) in candidates {
                    if !pred_used[pi] && !gt_used[gi] {
                        pred_used[pi] = true;
                        gt_used[gi] = true;
                        out.push((pi, gi));
                    }
                }
                out
            }
            Self::Optimal { score, threshold } => {
                let candidates: Vec<_> = scored(score).into_iter().filter(|&(_, _, s)| s >= threshold).collect();
                optimal(&candidates, table.pred_sizes.len(), table.gt_sizes.len())
            }
        }
    }
}

/// Maximum-cardinality, then maximum-score matching of the candidate pairs, solved separately on
/// every connected group of candidates.
fn optimal(candidates: &[(usize, usize, f64)], n_pred: usize, n_gt: usize) -> Vec<(usize, usize)> {
    // Union-find over predictions (0..n_pred) and ground truths (n_pred..).
    let mut parent: Vec<usize> = (0..n_pred + n_gt).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for &(p, g, _) in candidates {
        let (a, b) = (find(&mut parent, p), find(&mut parent, n_pred + g));
        parent[a.max(b)] = a.min(b);
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<(usize, usize, f64)>> = Default::default();
    for &c in candidates {
        let root = find(&mut parent, c.0);
        groups.entry(root).or_default().push(c);
    }
    let mut out = Vec::new();
    for group in groups.values() {
        let mut preds: Vec<usize> = group.iter().map(|c| c.0).collect();
        let mut gts: Vec<usize> = group.iter().map(|c| c.1).collect();
        preds.sort_unstable();
        preds.dedup();
        gts.sort_unstable();
        gts.dedup();
        // Rows: the smaller side. Weight BIG + score: one more match outweighs any score.
        let transpose = preds.len() > gts.len();
        let (rows, cols) = if transpose { (&gts, &preds) } else { (&preds, &gts) };
        let (n, m) = (rows.len(), cols.len());
        let big = (n + 1) as f64;
        let mut cost = vec![0.0; n * m];
        for &(p, g, s) in group {
            let (r, c) = if transpose { (g, p) } else { (p, g) };
            let (i, j) = (rows.binary_search(&r).unwrap(), cols.binary_search(&c).unwrap());
            cost[i * m + j] = -(big + s);
        }
        for (i, j) in hungarian::assign(&cost, n, m).into_iter().enumerate() {
            if cost[i * m + j] < 0.0 {
                let (r, c) = (rows[i], cols[j]);
                out.push(if transpose { (c, r) } else { (r, c) });
            }
        }
    }
    out.sort_unstable();
    out
}
