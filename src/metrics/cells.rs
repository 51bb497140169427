//! Connected-component metrics per Voronoi cell (CC-Metrics, Jaus et al.): each ground-truth
//! component is scored on its own cell, so a large lesion's Dice cannot hide a small one's.

use ndarray::{ArrayView, Dimension, Zip};

use super::case::MetricsConfig;
use super::overlap::same_shape;
use crate::Error;
use crate::components::{MaskElement, label, voronoi};

/// One ground-truth component scored on its Voronoi cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellScore {
    /// The component's id in the labelled ground truth.
    pub id: u32,
    /// The component's size in voxels.
    pub size: u64,
    /// The voxels of its cell (the component included).
    pub cell_voxels: u64,
    /// Predicted voxels in the cell: false positives in the cell count here too.
    pub predicted: u64,
    /// Predicted voxels of the component.
    pub intersection: u64,
    /// `2 intersection / (predicted + size)`: the CC-Dice of the cell.
    pub dice: f64,
    /// `intersection / size`: the share of the component that is predicted.
    pub recall: f64,
}

/// The CC metrics of one case: every ground-truth component's [`CellScore`] and their means.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMetrics {
    /// One score per ground-truth component, by id.
    pub cells: Vec<CellScore>,
    /// The mean CC-Dice over the cells (CC-Metrics' per-case reduction). Without ground-truth
    /// components: 1.0 when nothing is predicted, 0.0 otherwise (as CC-Metrics).
    pub dice: f64,
    /// The mean recall over the cells (NaN without ground-truth components).
    pub recall: f64,
}

impl CellMetrics {
    /// The pooled reduction over cases: the mean CC-Dice and recall over every cell of every
    /// case (CC-Metrics' "overall" mode); a case without ground-truth components adds its one
    /// [`dice`](Self::dice) value and no recall.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::{evaluate_cells, CellMetrics, MetricsConfig};
    /// use ndarray::array;
    ///
    /// let config = MetricsConfig::default();
    /// let a = evaluate_cells(array![[1u8, 0, 0, 1]].view(), array![[1u8, 0, 0, 1]].view(), &[1.0, 1.0], &config)?;
    /// let b = evaluate_cells(array![[0u8, 0, 0, 0]].view(), array![[0u8, 0, 1, 0]].view(), &[1.0, 1.0], &config)?;
    /// // Two cells of Dice 1 and one of Dice 0: per case 1.0 and 0.0, pooled 2/3.
    /// assert_eq!((a.dice, b.dice), (1.0, 0.0));
    /// assert!((CellMetrics::pooled(&[a, b]).dice - 2.0 / 3.0).abs() < 1e-12);
    /// # Ok::<(), blob_loss::Error>(())
    /// ```
    pub fn pooled(cases: &[CellMetrics]) -> PooledCells {
        let (mut dice, mut n_dice, mut recall, mut n_recall) = (0.0, 0usize, 0.0, 0usize);
        for case in cases {
            if case.cells.is_empty() {
                dice += case.dice;
                n_dice += 1;
            }
            for cell in &case.cells {
                dice += cell.dice;
                recall += cell.recall;
                n_dice += 1;
                n_recall += 1;
            }
        }
        let mean = |sum: f64, n: usize| if n == 0 { f64::NAN } else { sum / n as f64 };
        PooledCells { dice: mean(dice, n_dice), recall: mean(recall, n_recall), cells: n_recall }
    }
}

/// [`CellMetrics::pooled`]: means over every cell of a data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PooledCells {
    /// The mean CC-Dice.
    pub dice: f64,
    /// The mean per-cell recall.
    pub recall: f64,
    /// The number of cells (ground-truth components).
    pub cells: usize,
}

/// The CC metrics of a predicted mask against a ground-truth mask (binary or multi-label: any
/// non-zero voxel is foreground).
///
/// The ground truth is labelled with `config.connectivity` (default: full, 8 in 2D, 26 in 3D, as
/// CC-Metrics with cc3d); every voxel goes to the cell of its nearest component (Euclidean, with
/// the voxel `spacing`; ties to the voxel first in row-major order, see
/// [`distance_transform`](crate::components::distance_transform)); each cell scores the
/// prediction inside it against its component.
///
/// # Errors
/// [`Error::ShapeMismatch`], the labelling errors (rank, connectivity) and the spacing errors of
/// [`voronoi`].
///
/// # Example
/// ```
/// use blob_loss::metrics::{evaluate_cells, MetricsConfig};
/// use ndarray::array;
///
/// // Two lesions; the prediction finds the first and adds a false positive in its cell.
/// let gt = array![[1u8, 1, 0, 0, 0, 0, 0, 1]];
/// let pred = array![[1u8, 1, 0, 1, 0, 0, 0, 0]];
/// let m = evaluate_cells(pred.view(), gt.view(), &[1.0, 1.0], &MetricsConfig::default())?;
/// assert_eq!(m.cells[0].dice, 2.0 * 2.0 / (3.0 + 2.0));
/// assert_eq!(m.cells[1].dice, 0.0);
/// assert_eq!(m.recall, 0.5);
/// # Ok::<(), blob_loss::Error>(())
/// ```
pub fn evaluate_cells<A: MaskElement, B: MaskElement, D: Dimension>(
    pred: ArrayView<'_, A, D>,
    gt: ArrayView<'_, B, D>,
    spacing: &[f64],
    config: &MetricsConfig,
) -> Result<CellMetrics, Error> {
    same_shape(pred.shape(), gt.shape())?;
    let connectivity = config.connectivity_for(gt.ndim())?;
    let labels = label(gt.view(), connectivity)?.labels;
    let cells = voronoi(labels.view(), spacing)?;
    let count = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut scores: Vec<CellScore> = (1..=count as u32)
        .map(|id| CellScore { id, size: 0, cell_voxels: 0, predicted: 0, intersection: 0, dice: 0.0, recall: 0.0 })
        .collect();
    let zero = A::default();
    Zip::from(&pred).and(&labels).and(&cells).for_each(|&p, &l, &c| {
        if c == 0 {
            return;
        }
        let score = &mut scores[c as usize - 1];
        let predicted = p != zero;
        score.cell_voxels += 1;
        score.predicted += u64::from(predicted);
        if l != 0 {
            score.size += 1;
            score.intersection += u64::from(predicted);
        }
    });
    for score in &mut scores {
        score.dice = 2.0 * score.intersection as f64 / (score.predicted + score.size) as f64;
        score.recall = score.intersection as f64 / score.size as f64;
    }
    let mean = |f: fn(&CellScore) -> f64| scores.iter().map(f).sum::<f64>() / scores.len() as f64;
    let (dice, recall) = if scores.is_empty() {
        (if pred.iter().all(|&p| p == zero) { 1.0 } else { 0.0 }, f64::NAN)
    } else {
        (mean(|s| s.dice), mean(|s| s.recall))
    };
    Ok(CellMetrics { cells: scores, dice, recall })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, s};

    /// The CC-Metrics README case: ground-truth cubes `[20:25]^3` and `[40:45]^3`, predictions
    /// `[21:26]^3` and `[41:46, 39:44, 41:46]`: CC-Dice 0.5120 for each component.
    #[test]
    fn the_cc_metrics_readme_case() {
        let mut gt = Array3::<u8>::zeros((64, 64, 64));
        gt.slice_mut(s![20..25, 20..25, 20..25]).fill(1);
        gt.slice_mut(s![40..45, 40..45, 40..45]).fill(1);
        let mut pred = Array3::<u8>::zeros((64, 64, 64));
        pred.slice_mut(s![21..26, 21..26, 21..26]).fill(1);
        pred.slice_mut(s![41..46, 39..44, 41..46]).fill(1);
        let m = evaluate_cells(pred.view(), gt.view(), &[1.0; 3], &MetricsConfig::default()).unwrap();
        assert_eq!(m.cells.len(), 2);
        for cell in &m.cells {
            assert_eq!((cell.size, cell.predicted, cell.intersection), (125, 125, 64));
            assert_eq!(format!("{:.4}", cell.dice), "0.5120");
            assert_eq!(cell.recall, 64.0 / 125.0);
        }
        assert_eq!(format!("{:.4}", m.dice), "0.5120");
        let pooled = CellMetrics::pooled(&[m]);
        assert_eq!((format!("{:.4}", pooled.dice), pooled.cells), ("0.5120".to_string(), 2));
        // The cells cover the volume.
        let voxels: u64 = evaluate_cells(pred.view(), gt.view(), &[1.0; 3], &MetricsConfig::default())
            .unwrap()
            .cells
            .iter()
            .map(|c| c.cell_voxels)
            .sum();
        assert_eq!(voxels, 64 * 64 * 64);
    }

    /// A false positive counts in the cell it falls in only; empty cases follow CC-Metrics.
    #[test]
    fn false_positives_cost_their_own_cell_and_empty_cases() {
        let config = MetricsConfig::default();
        let gt = ndarray::array![[1u8, 0, 0, 0, 0, 0, 0, 0, 1]];
        let near_second = ndarray::array![[1u8, 0, 0, 0, 0, 0, 1, 0, 1]];
        let m = evaluate_cells(near_second.view(), gt.view(), &[1.0, 1.0], &config).unwrap();
        assert_eq!((m.cells[0].dice, m.cells[1].dice), (1.0, 2.0 / 3.0));
        let empty = ndarray::array![[0u8, 0, 0]];
        assert_eq!(evaluate_cells(empty.view(), empty.view(), &[1.0, 1.0], &config).unwrap().dice, 1.0);
        let one = ndarray::array![[0u8, 1, 0]];
        let m = evaluate_cells(one.view(), empty.view(), &[1.0, 1.0], &config).unwrap();
        assert_eq!(m.dice, 0.0);
        assert!(m.recall.is_nan() && m.cells.is_empty());
        let err = evaluate_cells(one.view(), gt.view(), &[1.0, 1.0], &config).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        // Anisotropic spacing moves the cell border.
        let gt = ndarray::array![[1u8, 0, 0, 0], [0, 0, 1, 0]];
        let voxels = |spacing: &[f64]| -> Vec<u64> {
            let m = evaluate_cells(gt.view(), gt.view(), spacing, &config).unwrap();
            m.cells.iter().map(|c| c.cell_voxels).collect()
        };
        assert_eq!(voxels(&[1.0, 1.0]), [3, 5]);
        assert_eq!(voxels(&[5.0, 1.0]), [4, 4]);
    }
}
