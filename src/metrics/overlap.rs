//! The sparse overlap table of two instance maps, built in one pass.

use std::collections::HashMap;

use ndarray::{ArrayView, Dimension, Zip};
use rayon::prelude::*;

use crate::Error;

/// The largest instance id the dense size tables accept.
const MAX_ID: u32 = 1 << 26;

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
    /// # Errors
    /// [`Error::ShapeMismatch`], and [`Error::InvalidArgument`] for an id above 2^26 (relabel the
    /// map, for example with [`label`](crate::components::label)).
    pub fn new<D: Dimension>(pred: ArrayView<'_, u32, D>, gt: ArrayView<'_, u32, D>) -> Result<Self, Error> {
        same_shape(pred.shape(), gt.shape())?;
        let max = |a: &ArrayView<'_, u32, D>| a.iter().copied().max().unwrap_or(0);
        let (max_pred, max_gt) = (max(&pred), max(&gt));
        if max_pred.max(max_gt) > MAX_ID {
            return Err(Error::InvalidArgument(format!(
                "instance id {} is above {MAX_ID}: relabel the instance map",
                max_pred.max(max_gt)
            )));
        }
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
        Ok(Self { pred_sizes: sizes(pred_count), gt_sizes: sizes(gt_count), pairs, intersection_voxels })
    }
}
