//! Connected-component labelling of 2D and 3D masks.

use ndarray::{Array, ArrayView, ArrayViewMut, Dimension};
use rayon::prelude::*;

use super::band::Band;
use super::buffer::{self, zeroed_label_array};
use super::connectivity::Connectivity;
use super::element::MaskElement;
use super::join::join_by_sweep;
use super::runs::Geometry;
use super::union_find;
use crate::Error;

/// The most foreground runs a mask may have: run indices and labels are `u32`.
pub(crate) const MAX_RUNS: usize = u32::MAX as usize - 1;

/// Masks smaller than this are labelled on one thread.
const PARALLEL_MIN_VOXELS: usize = 1 << 18;

/// The components of a mask: a label per voxel and their number.
///
/// Background voxels hold 0; the components hold `1..=count`, numbered by their first voxel in
/// row-major (C) order of the logical indices, as `scipy.ndimage.label` and cc3d number them.
///
/// # Example
/// ```
/// use blob_loss::components::{label, Connectivity};
/// use ndarray::array;
///
/// let mask = array![[1u8, 0, 1], [0, 0, 1]];
/// let labeling = label(mask.view(), Connectivity::Four).unwrap();
/// assert_eq!(labeling.count, 2);
/// assert_eq!(labeling.labels, array![[1, 0, 2], [0, 0, 2]]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labeling<D: Dimension> {
    /// The label of every voxel, in standard (C) layout: 0 for background, `1..=count` otherwise.
    pub labels: Array<u32, D>,
    /// The number of components.
    pub count: usize,
}

/// Labels the connected components of a 2D or 3D mask.
///
/// Voxels holding `A::default()` (`0` or `false`) are background. A voxel connects to the
/// neighbours that `connectivity` names *and hold the same value*: in a multi-label mask, touching
/// regions of different classes are different components.
///
/// Components are numbered `1..=count` by their first voxel in row-major order of the logical
/// indices (last axis fastest), whatever the memory layout of `mask`: a Fortran-ordered or
/// transposed view gives the labels that its C-ordered copy gives. This is the numbering of
/// `scipy.ndimage.label` and cc3d, so results compare label for label.
///
/// Large masks are split into slabs labelled in parallel on rayon's thread pool; run it inside
/// `ThreadPool::install` to choose the number of threads.
///
/// The output is allocated on every call. A fresh allocation is cleared and mapped by the kernel
/// page by page as it is written; with 4 KiB pages that costs about as much as labelling a sparse
/// 256³ mask (64 MiB of labels, which glibc maps anew on every call). So on Linux an output of
/// 4 MiB or more is advised to use transparent huge pages, as numpy does for its arrays: 2 MiB per
/// fault. [`label_into`] writes into a buffer that the caller reuses, and faults not at all.
///
/// # Errors
/// [`Error::UnsupportedRank`] unless the mask is 2D or 3D, [`Error::ConnectivityRank`] when the
/// connectivity is for the other dimensionality, [`Error::TooManyComponents`] when the labels
/// would not fit in `u32`. Empty and all-background masks give `count == 0`.
///
/// # Example
/// ```
/// use blob_loss::components::{label, Connectivity};
/// use ndarray::Array3;
///
/// let mut mask = Array3::<bool>::from_elem((3, 3, 3), false);
/// mask[[0, 0, 0]] = true;
/// mask[[1, 1, 1]] = true; // touches (0, 0, 0) only through a corner
/// assert_eq!(label(mask.view(), Connectivity::Six).unwrap().count, 2);
/// assert_eq!(label(mask.view(), Connectivity::TwentySix).unwrap().count, 1);
/// ```
pub fn label<A: MaskElement, D: Dimension>(
    mask: ArrayView<'_, A, D>,
    connectivity: Connectivity,
) -> Result<Labeling<D>, Error> {
    connectivity.check_rank(mask.ndim())?;
    // A zeroed allocation maps untouched pages lazily, so the background costs no writes.
    let mut labels = zeroed_label_array(mask.raw_dim())?;
    let out = labels.as_slice_mut().expect("a new array is in standard layout");
    let count = label_standard(mask, connectivity, out, true, MAX_RUNS)?;
    Ok(Labeling { labels, count })
}

/// Labels the connected components of `mask` into the caller's buffer `out` and returns their
/// number.
///
/// The same labelling as [`label`], written into `out` (every voxel is overwritten, whatever it
/// held) so that a data pipeline can reuse one buffer for every patch: allocation and page
/// faults cost as much as the labelling itself on sparse masks. `out` may have any memory layout;
/// a standard-layout buffer is written directly.
///
/// # Errors
/// As [`label`], plus [`Error::ShapeMismatch`] when `out` does not have the mask's shape.
///
/// # Example
/// ```
/// use blob_loss::components::{label_into, Connectivity};
/// use ndarray::{array, Array2};
///
/// let mut out = Array2::<u32>::from_elem((2, 3), 99);
/// let count = label_into(array![[1u8, 0, 2], [1, 0, 2]].view(), Connectivity::Eight, out.view_mut()).unwrap();
/// assert_eq!(count, 2);
/// assert_eq!(out, array![[1, 0, 2], [1, 0, 2]]);
/// ```
pub fn label_into<A: MaskElement, D: Dimension>(
    mask: ArrayView<'_, A, D>,
    connectivity: Connectivity,
    mut out: ArrayViewMut<'_, u32, D>,
) -> Result<usize, Error> {
    connectivity.check_rank(mask.ndim())?;
    if mask.shape() != out.shape() {
        return Err(Error::ShapeMismatch {
            what: "label_into output buffer",
            expected: mask.shape().to_vec(),
            found: out.shape().to_vec(),
        });
    }
    match out.as_slice_mut() {
        Some(slice) => label_standard(mask, connectivity, slice, false, MAX_RUNS),
        None => {
            let Labeling { labels, count } = label(mask, connectivity)?;
            out.assign(&labels);
            Ok(count)
        }
    }
}

/// Labels `mask` into the C-ordered `out`; `zeroed` says whether `out` is known to hold zeros.
pub(crate) fn label_standard<A: MaskElement, D: Dimension>(
    mask: ArrayView<'_, A, D>,
    connectivity: Connectivity,
    out: &mut [u32],
    zeroed: bool,
    max_runs: usize,
) -> Result<usize, Error> {
    let shape = mask.shape();
    let geom = match *shape {
        [ny, nx] => Geometry { nz: 1, ny, nx },
        [nz, ny, nx] => Geometry { nz, ny, nx },
        _ => return Err(Error::UnsupportedRank { what: "mask", ndim: shape.len(), expected: "2 or 3" }),
    };
    if geom.nx >= u32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "rows of {} voxels are longer than the u32 run index allows",
            geom.nx
        )));
    }
    if out.is_empty() {
        return Ok(0);
    }
    // Logical row-major order is what the numbering follows: other layouts are copied once.
    let mask = mask.as_standard_layout();
    let data = mask.as_slice().expect("standard layout");
    label_slice(data, geom, connectivity, out, zeroed, max_runs)
}

/// Labels the C-ordered `data` of shape `geom` into `out`.
fn label_slice<A: MaskElement>(
    data: &[A],
    geom: Geometry,
    connectivity: Connectivity,
    out: &mut [u32],
    zeroed: bool,
    max_runs: usize,
) -> Result<usize, Error> {
    let too_many = Error::TooManyComponents { limit: max_runs };
    let band_rows = band_rows(geom, data.len());
    let mut bands: Vec<Band<A>> = (0..geom.rows())
        .step_by(band_rows)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| Band::scan(data, geom, start..(start + band_rows).min(geom.rows()), connectivity, max_runs))
        .collect::<Option<_>>()
        .ok_or_else(|| too_many.clone())?;

    let mut offsets = Vec::with_capacity(bands.len());
    let mut total = 0usize;
    for band in &bands {
        offsets.push(total as u32);
        total += band.runs.len();
    }
    if total > max_runs {
        return Err(too_many);
    }

    // One forest over all bands, then the unions across band boundaries.
    let mut parent = if bands.len() == 1 {
        std::mem::take(&mut bands[0].parent)
    } else {
        let mut parent = buffer::with_capacity(total);
        for (band, &offset) in bands.iter().zip(&offsets) {
            parent.extend(band.parent.iter().map(|&p| p + offset));
        }
        parent
    };
    let band_starts: Vec<usize> = bands.iter().map(|b| b.rows.start).collect();
    for (b, band) in bands.iter().enumerate().skip(1) {
        // Only rows within one plane and one row of the boundary reach back across it.
        let reach = band.rows.start..band.rows.end.min(band.rows.start + geom.ny + 1);
        for row in reach {
            for nb in connectivity.earlier_rows() {
                let Some(prev) = geom.neighbour_row(row, nb.dz, nb.dy) else { continue };
                if prev >= band.rows.start {
                    continue;
                }
                let pb = band_starts.partition_point(|&s| s <= prev) - 1;
                let cur = band.row(row, offsets[b]);
                let prev = bands[pb].row(prev, offsets[pb]);
                join_by_sweep(&mut parent, cur, prev, nb.diagonal);
            }
        }
    }
    let count = union_find::number_roots(&mut parent);

    // Write the labels, band by band in parallel.
    let mut chunks = Vec::with_capacity(bands.len());
    let mut rest = out;
    for band in &bands {
        let (head, tail) = rest.split_at_mut(band.rows.len() * geom.nx);
        chunks.push(head);
        rest = tail;
    }
    bands.par_iter().zip(chunks).zip(&offsets).for_each(|((band, chunk), &offset)| {
        let labels = &parent[offset as usize..offset as usize + band.runs.len()];
        band.write(labels, chunk, geom.nx, zeroed);
    });
    Ok(count as usize)
}

/// Rows per band: one band per rayon thread for large masks, whole planes where there are enough.
fn band_rows(geom: Geometry, voxels: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads <= 1 || voxels < PARALLEL_MIN_VOXELS {
        return geom.rows();
    }
    if geom.nz >= threads { geom.nz.div_ceil(threads) * geom.ny } else { geom.rows().div_ceil(threads) }
}
