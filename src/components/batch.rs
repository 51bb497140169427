//! Labelling whole training batches, channel-first like burn.

use ndarray::{Array, Array2, ArrayView, ArrayViewMut, Axis, Dimension};
use rayon::prelude::*;

use super::buffer::zeroed_label_array;
use super::connectivity::Connectivity;
use super::element::MaskElement;
use super::label::{MAX_RUNS, label_standard};
use crate::Error;

/// The instance maps of a batch and the number of instances in each `(element, channel)`.
///
/// # Example
/// ```
/// use blob_loss::components::{label_batch, Connectivity};
/// use ndarray::Array4;
///
/// let mut masks = Array4::<u8>::zeros((2, 1, 4, 4));
/// masks[[0, 0, 0, 0]] = 1;
/// masks[[0, 0, 3, 3]] = 1;
/// let batch = label_batch(masks.view(), Connectivity::Eight).unwrap();
/// assert_eq!(batch.counts[[0, 0]], 2);
/// assert_eq!(batch.counts[[1, 0]], 0);
/// assert_eq!(batch.labels[[0, 0, 3, 3]], 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLabeling<D: Dimension> {
    /// Instance maps `[B, C, spatial..]`: 0 for background, `1..=counts[[b, c]]` in slice `(b, c)`.
    pub labels: Array<u32, D>,
    /// The number of instances of every `(element, channel)` slice, shape `[B, C]`.
    pub counts: Array2<usize>,
}

/// Labels every `(element, channel)` slice of a `[B, C, H, W]` or `[B, C, D, H, W]` batch of masks
/// independently, in parallel.
///
/// Each slice is labelled as [`label`](super::label) labels it (same numbering, multi-label
/// aware), so slice `(b, c)` holds the instances of channel `c` of element `b`: the layout that
/// [`BlobLoss`](crate::loss::BlobLoss) takes.
///
/// # Errors
/// [`Error::UnsupportedRank`] unless the batch is 4D or 5D, [`Error::ConnectivityRank`] when the
/// connectivity does not fit the spatial rank (2D: 4/8, 3D: 6/18/26), and the errors of
/// [`label`](super::label).
///
/// # Example
/// ```
/// use blob_loss::components::{label_batch, Connectivity};
/// use ndarray::Array5;
///
/// let masks = Array5::<bool>::from_elem((2, 3, 4, 4, 4), true);
/// let batch = label_batch(masks.view(), Connectivity::Six).unwrap();
/// assert!(batch.counts.iter().all(|&n| n == 1));
/// ```
pub fn label_batch<A: MaskElement, D: Dimension>(
    masks: ArrayView<'_, A, D>,
    connectivity: Connectivity,
) -> Result<BatchLabeling<D>, Error> {
    let mut labels = zeroed_label_array(masks.raw_dim())?;
    let counts = label_batch_impl(masks, connectivity, labels.view_mut(), true)?;
    Ok(BatchLabeling { labels, counts })
}

/// [`label_batch`] into the caller's buffer `out` (any layout, every voxel overwritten); returns
/// the `[B, C]` instance counts.
///
/// # Errors
/// As [`label_batch`], plus [`Error::ShapeMismatch`] when `out` does not have the batch's shape.
///
/// # Example
/// ```
/// use blob_loss::components::{label_batch_into, Connectivity};
/// use ndarray::{Array4, Array4 as Out};
///
/// let masks = Array4::<u8>::ones((1, 2, 3, 3));
/// let mut out = Out::<u32>::from_elem((1, 2, 3, 3), 7);
/// let counts = label_batch_into(masks.view(), Connectivity::Four, out.view_mut()).unwrap();
/// assert_eq!(counts[[0, 1]], 1);
/// assert!(out.iter().all(|&l| l == 1));
/// ```
pub fn label_batch_into<A: MaskElement, D: Dimension>(
    masks: ArrayView<'_, A, D>,
    connectivity: Connectivity,
    out: ArrayViewMut<'_, u32, D>,
) -> Result<Array2<usize>, Error> {
    if masks.shape() != out.shape() {
        return Err(Error::ShapeMismatch {
            what: "label_batch_into output buffer",
            expected: masks.shape().to_vec(),
            found: out.shape().to_vec(),
        });
    }
    label_batch_impl(masks, connectivity, out, false)
}

fn label_batch_impl<A: MaskElement, D: Dimension>(
    masks: ArrayView<'_, A, D>,
    connectivity: Connectivity,
    mut out: ArrayViewMut<'_, u32, D>,
    zeroed: bool,
) -> Result<Array2<usize>, Error> {
    let (batch, channels, voxels) = batch_shape(masks.shape(), "batch of masks [B, C, spatial..]", 2)?;
    connectivity.check_rank(masks.ndim() - 2)?;
    let mut counts = Array2::zeros((batch, channels));
    if batch * channels == 0 || voxels == 0 {
        out.fill(0);
        return Ok(counts);
    }
    let Some(out) = out.as_slice_mut() else {
        // Rare: a strided output buffer. Label into a fresh one and copy.
        let labelled = label_batch(masks, connectivity)?;
        out.assign(&labelled.labels);
        return Ok(labelled.counts);
    };
    let masks = masks.into_dyn();
    let results: Vec<usize> = out
        .par_chunks_mut(voxels)
        .enumerate()
        .map(|(i, chunk)| {
            let slice = masks.index_axis(Axis(0), i / channels).index_axis_move(Axis(0), i % channels);
            label_standard(slice, connectivity, chunk, zeroed, MAX_RUNS)
        })
        .collect::<Result<_, _>>()?;
    counts.iter_mut().zip(results).for_each(|(c, n)| *c = n);
    Ok(counts)
}

/// Turns a class-index map `[B, H, W]` or `[B, D, H, W]` into one-vs-rest instance maps
/// `[B, num_classes, spatial..]`.
///
/// Channel `c` of element `b` holds the connected components of `class == c`, numbered
/// `1..=counts[[b, c]]` in first-voxel order. **Class 0 is the background**: it is never labelled,
/// so channel 0 is all zeros and the channels line up with the logits of a network that predicts
/// `num_classes` classes including the background (softmax); channels without instances are left
/// out of the blob term. Components of different classes that touch stay separate.
///
/// # Errors
/// [`Error::ClassOutOfRange`] for a negative value or one `>= num_classes`,
/// [`Error::UnsupportedRank`] unless the map is 3D or 4D, [`Error::ConnectivityRank`] when the
/// connectivity does not fit the spatial rank, [`Error::InvalidArgument`] when `num_classes` is so
/// large that the instance maps would not fit in memory.
///
/// # Example
/// ```
/// use blob_loss::components::{instances_from_classes, Connectivity};
/// use ndarray::array;
///
/// // One element, classes 0 (background), 1 and 2.
/// let classes = array![[[1u8, 1, 0, 2], [0, 0, 0, 2], [1, 0, 0, 0]]];
/// let inst = instances_from_classes(classes.view(), 3, Connectivity::Four).unwrap();
/// assert_eq!(inst.labels.shape(), &[1, 3, 3, 4]);
/// assert_eq!(inst.counts.row(0).to_vec(), vec![0, 2, 1]);
/// assert_eq!(inst.labels[[0, 1, 2, 0]], 2);
/// assert_eq!(inst.labels[[0, 2, 1, 3]], 1);
/// ```
pub fn instances_from_classes<A: MaskElement, D: Dimension>(
    classes: ArrayView<'_, A, D>,
    num_classes: usize,
    connectivity: Connectivity,
) -> Result<BatchLabeling<D::Larger>, Error> {
    let (batch, _, voxels) = batch_shape(classes.shape(), "class map [B, spatial..]", 1)?;
    connectivity.check_rank(classes.ndim() - 1)?;
    if let Some(&bad) = classes.iter().find(|v| v.class_index().is_none_or(|c| c >= num_classes)) {
        return Err(Error::ClassOutOfRange { value: bad.as_i128(), num_classes });
    }

    let mut shape = vec![batch, num_classes];
    shape.extend_from_slice(&classes.shape()[1..]);
    let mut dim = D::Larger::zeros(shape.len());
    dim.slice_mut().copy_from_slice(&shape);
    let mut labels = zeroed_label_array(dim)?;
    let mut counts = Array2::zeros((batch, num_classes));
    if labels.is_empty() {
        return Ok(BatchLabeling { labels, counts });
    }

    let classes = classes.into_dyn();
    let out = labels.as_slice_mut().expect("a new array is in standard layout");
    let per_element: Vec<Vec<usize>> = out
        .par_chunks_mut(num_classes * voxels)
        .enumerate()
        .map(|(b, out)| split_classes(classes.index_axis(Axis(0), b), num_classes, connectivity, out))
        .collect::<Result<_, _>>()?;
    for (mut row, element) in counts.rows_mut().into_iter().zip(per_element) {
        row.iter_mut().zip(element).for_each(|(c, n)| *c = n);
    }
    Ok(BatchLabeling { labels, counts })
}

/// Writes the one-vs-rest instance maps of one element (`out` is `[C, spatial..]`, zeroed) and
/// returns the instance count of every class.
fn split_classes<A: MaskElement, D: Dimension>(
    element: ArrayView<'_, A, D>,
    num_classes: usize,
    connectivity: Connectivity,
    out: &mut [u32],
) -> Result<Vec<usize>, Error> {
    let voxels = element.len();
    // Label all classes at once (touching classes stay apart), then split by class.
    let mut global = vec![0u32; voxels];
    let n = label_standard(element.view(), connectivity, &mut global, true, MAX_RUNS)?;
    let element = element.as_standard_layout();
    let element = element.as_slice().expect("standard layout");
    let mut counts = vec![0usize; num_classes];
    let mut local = vec![0u32; n + 1];
    for (v, (&g, &class)) in global.iter().zip(element).enumerate() {
        if g == 0 {
            continue;
        }
        let c = class.class_index().expect("classes are checked before labelling");
        if local[g as usize] == 0 {
            counts[c] += 1;
            local[g as usize] = counts[c] as u32;
        }
        out[c * voxels + v] = local[g as usize];
    }
    Ok(counts)
}

/// Checks that `shape` is `lead` batch axes plus a 2D or 3D spatial shape; returns
/// `(B, C or 1, spatial voxels)`.
fn batch_shape(shape: &[usize], what: &'static str, lead: usize) -> Result<(usize, usize, usize), Error> {
    let expected =
        if lead == 2 { "4 ([B, C, H, W]) or 5 ([B, C, D, H, W])" } else { "3 ([B, H, W]) or 4 ([B, D, H, W])" };
    if !(lead + 2..=lead + 3).contains(&shape.len()) {
        return Err(Error::UnsupportedRank { what, ndim: shape.len(), expected });
    }
    let channels = if lead == 2 { shape[1] } else { 1 };
    Ok((shape[0], channels, shape[lead..].iter().product()))
}
