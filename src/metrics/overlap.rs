//! The sparse overlap table of two instance maps, built in one pass.

use std::collections::HashMap;

use ndarray::{ArrayView, ArrayView1, Dimension, Zip};
use rayon::prelude::*;

use crate::Error;

/// Ids up to this many voxels' worth are counted in dense size tables directly (8 bytes per id
/// and parallel task); maps with larger ids are renumbered to their distinct ids first.
const DENSE_IDS_MIN: usize = 1 << 16;

/// Voxels per parallel chunk of the counting pass.
const CHUNK: usize = 1 << 18;

/// Sizes and pair intersections of a part of the voxels.
struct Counts {
    pred: Vec<u64>,
    gt: Vec<u64>,
    pairs: HashMap<(u32, u32), u64>,
    /// The pair of the last foreground-in-both voxel and how many in a row: runs of one pair are
    /// common, so they are counted before touching the map.
    run: ((u32, u32), u64),
}

impl Counts {
    fn new(max_pred: u32, max_gt: u32) -> Self {
        Self {
            pred: vec![0; max_pred as usize + 1],
            gt: vec![0; max_gt as usize + 1],
            pairs: HashMap::new(),
            run: ((0, 0), 0),
        }
    }

    #[inline]
    fn add(&mut self, p: u32, g: u32) {
        if p != 0 {
            self.pred[p as usize] += 1;
        }
        if g != 0 {
            self.gt[g as usize] += 1;
            if p != 0 {
                if self.run.0 == (p, g) {
                    self.run.1 += 1;
                } else {
                    self.flush();
                    self.run = ((p, g), 1);
                }
            }
        }
    }

    fn flush(&mut self) {
        if self.run.1 > 0 {
            *self.pairs.entry(self.run.0).or_default() += self.run.1;
            self.run.1 = 0;
        }
    }

    fn merge(mut self, mut other: Self) -> Self {
        self.flush();
        other.flush();
        self.pred.iter_mut().zip(&other.pred).for_each(|(a, b)| *a += b);
        self.gt.iter_mut().zip(&other.gt).for_each(|(a, b)| *a += b);
        for (k, n) in other.pairs {
            *self.pairs.entry(k).or_default() += n;
        }
        self
    }

    #[allow(clippy::type_complexity)]
    fn finish(mut self) -> (Vec<u64>, Vec<u64>, HashMap<(u32, u32), u64>) {
        self.flush();
        (self.pred, self.gt, self.pairs)
    }
}

/// Checks that the prediction has the ground truth's shape.
pub(crate) fn same_shape(pred: &[usize], gt: &[usize]) -> Result<(), Error> {
    if pred == gt {
        return Ok(());
    }
    Err(Error::ShapeMismatch { what: "prediction vs ground truth", expected: gt.to_vec(), found: pred.to_vec() })
}

/// Instance sizes of a prediction and a ground truth and the intersections of every overlapping
/// pair: everything the instance metrics need, from one pass over the voxels.
///
/// # Example
/// ```
/// use blob_loss::metrics::OverlapTable;
/// use ndarray::array;
///
/// let pred = array![[1u32, 1, 0], [0, 2, 2]];
/// let gt = array![[1u32, 0, 0], [0, 0, 1]];
/// let table = OverlapTable::new(pred.view(), gt.view()).unwrap();
/// assert_eq!(table.pred_sizes, vec![(1, 2), (2, 2)]);
/// assert_eq!(table.gt_sizes, vec![(1, 2)]);
/// assert_eq!(table.pairs, vec![(1, 1, 1), (2, 1, 1)]);
/// assert_eq!(table.intersection_voxels, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OverlapTable {
    /// `(id, voxels)` of every prediction instance, by id.
    pub pred_sizes: Vec<(u32, u64)>,
    /// `(id, voxels)` of every ground-truth instance, by id.
    pub gt_sizes: Vec<(u32, u64)>,
    /// `(prediction id, ground-truth id, intersecting voxels)` of every overlapping pair, sorted.
    pub pairs: Vec<(u32, u32, u64)>,
    /// Voxels that are foreground in both (the intersection of the binarised masks).
    pub intersection_voxels: u64,
}

impl OverlapTable {
    /// Builds the table of two instance maps of the same shape (0 is background).
    ///
    /// Any `u32` ids are accepted. Ids up to the larger of 65,536 and a sixteenth of the voxel
    /// count are counted in dense tables; beyond, both maps are renumbered to their distinct ids
    /// first (one sort of each map's non-zero ids), so that no table grows with the ids' values.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`].
    pub fn new<D: Dimension>(pred: ArrayView<'_, u32, D>, gt: ArrayView<'_, u32, D>) -> Result<Self, Error> {
        same_shape(pred.shape(), gt.shape())?;
        let max = |a: &ArrayView<'_, u32, D>| a.iter().copied().max().unwrap_or(0);
        let (max_pred, max_gt) = (max(&pred), max(&gt));
        if max_pred.max(max_gt) as usize <= DENSE_IDS_MIN.max(pred.len() / 16) {
            return Ok(Self::dense(pred, gt, max_pred, max_gt));
        }
        let (pred_ids, pred_compact) = compact(&pred);
        let (gt_ids, gt_compact) = compact(&gt);
        let (pred_view, gt_view) = (ArrayView1::from(&pred_compact), ArrayView1::from(&gt_compact));
        let table = Self::dense(pred_view, gt_view, pred_ids.len() as u32, gt_ids.len() as u32);
        Ok(table.renamed(&pred_ids, &gt_ids))
    }

    /// The table of two maps whose ids are at most `max_pred` and `max_gt`, with dense size
    /// tables.
    fn dense<D: Dimension>(pred: ArrayView<'_, u32, D>, gt: ArrayView<'_, u32, D>, max_pred: u32, max_gt: u32) -> Self {
        let counts = match (pred.as_slice(), gt.as_slice()) {
            // Standard layout: chunks in parallel, merged.
            (Some(p), Some(g)) => p
                .par_chunks(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .fold(
                    || Counts::new(max_pred, max_gt),
                    |mut c, (p, g)| {
                        p.iter().zip(g).for_each(|(&p, &g)| c.add(p, g));
                        c
                    },
                )
                .reduce(|| Counts::new(max_pred, max_gt), Counts::merge),
            _ => {
                let mut c = Counts::new(max_pred, max_gt);
                Zip::from(&pred).and(&gt).for_each(|&p, &g| c.add(p, g));
                c
            }
        }
        .finish();
        let (pred_count, gt_count, pairs) = counts;
        let sizes = |count: Vec<u64>| -> Vec<(u32, u64)> {
            count.into_iter().enumerate().skip(1).filter(|&(_, n)| n > 0).map(|(id, n)| (id as u32, n)).collect()
        };
        let mut pairs: Vec<(u32, u32, u64)> = pairs.into_iter().map(|((p, g), n)| (p, g, n)).collect();
        pairs.sort_unstable();
        let intersection_voxels = pairs.iter().map(|&(_, _, n)| n).sum();
        Self { pred_sizes: sizes(pred_count), gt_sizes: sizes(gt_count), pairs, intersection_voxels }
    }

    /// The table with compact ids `k` replaced by `pred_ids[k - 1]` and `gt_ids[k - 1]`; both are
    /// increasing, so the order of the entries is kept.
    fn renamed(mut self, pred_ids: &[u32], gt_ids: &[u32]) -> Self {
        self.pred_sizes.iter_mut().for_each(|(id, _)| *id = pred_ids[*id as usize - 1]);
        self.gt_sizes.iter_mut().for_each(|(id, _)| *id = gt_ids[*id as usize - 1]);
        self.pairs.iter_mut().for_each(|(p, g, _)| (*p, *g) = (pred_ids[*p as usize - 1], gt_ids[*g as usize - 1]));
        self
    }
}

/// The distinct non-zero ids of `map`, increasing, and the map renumbered to `1..=count` in that
/// order (0 stays 0), in logical row-major order.
fn compact<D: Dimension>(map: &ArrayView<'_, u32, D>) -> (Vec<u32>, Vec<u32>) {
    let values: Vec<u32> = map.iter().copied().collect();
    let mut ids: Vec<u32> = values.iter().copied().filter(|&v| v != 0).collect();
    ids.par_sort_unstable();
    ids.dedup();
    let compacted = values
        .par_iter()
        .map(|&v| if v == 0 { 0 } else { ids.binary_search(&v).expect("every id was collected") as u32 + 1 })
        .collect();
    (ids, compacted)
}
