//! Labelling and Voronoi cells of burn tensors, on the device the tensors live on.
//!
//! [`label_tensor`] and [`voronoi_tensor`] are [`label_batch`](super::label_batch) and
//! [`voronoi_batch`](super::voronoi_batch) for `[B, C, spatial..]` integer tensors, with the
//! same results to the voxel: the same numbering (`1..=count` by first voxel in row-major
//! order, per `(element, channel)` slice) and the same cells (ties settled as scipy settles
//! them). They are a burn backend extension ([`ComponentsBackend`]):
//! - flex (CPU): the host labeller and distance transform, on the tensors' own memory;
//! - burn's cube backend (wgpu, cuda): kernels, so that nothing leaves the device. Labelling is
//!   a union-find over voxels in the manner of Playne and Hawick (every voxel joins its
//!   earlier neighbours of the same value with atomic minima, so each component's root is its
//!   first voxel), then every voxel takes its root's rank among the roots, a prefix sum. The
//!   Voronoi cells come from separable passes, one per axis from the last to the first: a
//!   forward and backward sweep of every row, then each voxel taking the nearest of its line's
//!   candidates (ties to the candidate first in scipy's order), searched outward from itself until
//!   no farther candidate can be as near;
//! - other backends: the host code, through one copy each way.

mod autodiff;
#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "flex")]
mod flex;

use burn::backend::tensor::IntTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Int, Tensor, TensorData};

use super::{Connectivity, label_batch, voronoi_batch};
use crate::Error;
use crate::backend::{Extreme, has_extension_ops, id_range, row_extreme};

/// The voxel spacing of the Voronoi cells, one value per axis of a `[depth, height, width]`
/// grid (depth 1 and any spacing for a 2D image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridSpacing(pub [f64; 3]);

/// The backend extension behind [`label_tensor`] and [`voronoi_tensor`].
///
/// Both methods take `[slices, depth, height, width]` integer tensors (a 2D image has depth 1)
/// and return `i32` tensors of the same shape; slices are independent. Call them through
/// [`label_tensor`] and [`voronoi_tensor`], which check their inputs: the kernels index voxels
/// with `i32`.
///
/// # Example
/// ```
/// use blob_loss::components::{ComponentsBackend, Connectivity};
/// use burn::backend::Dispatch;
/// use burn::tensor::{Device, Int, Tensor};
///
/// let mask = Tensor::<4, Int>::from_ints([[[[1, 0, 1]]]], &Device::flex());
/// let labels = <Dispatch as ComponentsBackend>::label_components(mask.into_dispatch(), Connectivity::Four);
/// let labels = Tensor::<4, Int>::from_dispatch(labels);
/// assert_eq!(labels.into_data().to_vec::<i32>().unwrap(), [1, 0, 2]);
/// ```
#[backend_extension(Flex: cfg(feature = "flex"), Cube: cfg(feature = "cube"), Fusion: cfg(feature = "cube"), Autodiff)]
pub trait ComponentsBackend: Backend {
    /// The connected components of every slice of `mask` (non-zero voxels of equal value
    /// connected by `connectivity`), numbered `1..` per slice by first voxel in row-major order;
    /// 0 on the background.
    #[fusion(dtype = burn::tensor::DType::I32, shape = mask)]
    fn label_components(mask: IntTensor<Self>, connectivity: Connectivity) -> IntTensor<Self>;

    /// The Voronoi cells of every slice of the instance map `labels` (non-negative ids, 0 the
    /// background): every voxel takes the id of its nearest non-zero voxel, Euclidean with
    /// `spacing`; all 0 in a slice without one.
    #[fusion(dtype = burn::tensor::DType::I32, shape = labels)]
    fn voronoi_cells(labels: IntTensor<Self>, spacing: GridSpacing) -> IntTensor<Self>;

    /// The components of `labels` (ids `1..` per slice, as [`label_components`] numbers them)
    /// that hold no voxel where `other` is positive, renumbered `1..` per slice in their order;
    /// 0 everywhere else. For example the false positives of a prediction's components against
    /// the ground truth.
    ///
    /// [`label_components`]: ComponentsBackend::label_components
    #[fusion(dtype = burn::tensor::DType::I32, shape = labels)]
    fn components_apart(labels: IntTensor<Self>, other: IntTensor<Self>) -> IntTensor<Self>;
}

/// The instance maps of a batch of tensors, and the number of instances of each slice.
///
/// # Example
/// ```
/// use blob_loss::components::{label_tensor, Connectivity};
/// use burn::tensor::{Device, Int, Tensor};
///
/// let masks = Tensor::<4, Int>::from_ints([[[[1, 0, 1], [0, 0, 1]]]], &Device::flex());
/// let labelled = label_tensor(masks, Connectivity::Four)?;
/// assert_eq!(labelled.labels.into_data().to_vec::<i32>().unwrap(), [1, 0, 2, 0, 0, 2]);
/// assert_eq!(labelled.counts.into_data().to_vec::<i32>().unwrap(), [2]);
/// # Ok::<(), blob_loss::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TensorLabeling<const D: usize> {
    /// `[B, C, spatial..]` `i32` labels: 0 on the background, `1..=counts[b, c]` in slice `(b, c)`.
    pub labels: Tensor<D, Int>,
    /// `[B, C]`: the number of instances of every slice, on the same device (not read back).
    pub counts: Tensor<2, Int>,
}

/// Labels every `(element, channel)` slice of a `[B, C, H, W]` or `[B, C, D, H, W]` integer
/// tensor of masks on its own device, as [`label_batch`](super::label_batch) labels an array:
/// non-zero voxels of equal value connected by `connectivity` (4/8 in 2D, 6/18/26 in 3D),
/// numbered `1..` per slice by first voxel in row-major order. A `bool` mask is labelled as
/// `mask.int()`.
///
/// # Errors
/// [`Error::UnsupportedRank`] unless the tensor is 4D or 5D, [`Error::ConnectivityRank`] when the
/// connectivity does not fit its spatial rank, [`Error::InvalidArgument`] for a tensor of
/// `2^31` voxels or more.
///
/// # Example
/// ```
/// use blob_loss::components::{label_tensor, Connectivity};
/// use burn::tensor::{Device, Int, Tensor};
///
/// // Two classes that touch stay two components; a diagonal joins with 8-connectivity.
/// let masks = Tensor::<4, Int>::from_ints([[[[1, 1, 2], [0, 0, 2]]], [[[1, 0, 0], [0, 1, 0]]]], &Device::flex());
/// let labelled = label_tensor(masks, Connectivity::Eight)?;
/// assert_eq!(labelled.labels.into_data().to_vec::<i32>().unwrap(), [1, 1, 2, 0, 0, 2, 1, 0, 0, 0, 1, 0]);
/// assert_eq!(labelled.counts.into_data().to_vec::<i32>().unwrap(), [2, 1]);
/// # Ok::<(), blob_loss::Error>(())
/// ```
pub fn label_tensor<const D: usize>(
    masks: Tensor<D, Int>,
    connectivity: Connectivity,
) -> Result<TensorLabeling<D>, Error> {
    let dims = masks.dims();
    let grid = Grid::of(&dims, "mask")?;
    if connectivity.ndim() != D - 2 {
        return Err(Error::ConnectivityRank { connectivity, expected: connectivity.ndim(), ndim: D - 2 });
    }
    let labels = if grid.voxels() == 0 {
        Tensor::zeros(dims, (&masks.device(), DType::I32))
    } else {
        label_unchecked(masks, connectivity, grid)
    };
    let counts = if grid.voxels() == 0 {
        Tensor::zeros([dims[0], dims[1]], (&labels.device(), DType::I32))
    } else {
        row_extreme(labels.clone().reshape([grid.slices, grid.voxels()]), Extreme::Max).reshape([dims[0], dims[1]])
    };
    Ok(TensorLabeling { labels, counts })
}

/// The Voronoi cells of every `(element, channel)` slice of a `[B, C, spatial..]` integer
/// instance map (2 or 3 spatial axes), on its own device, as
/// [`voronoi_batch`](super::voronoi_batch) computes them: every voxel takes the id of its
/// nearest instance voxel (Euclidean, with `spacing`, one value per spatial axis), all 0 in a
/// slice without instances; ties as scipy settles them. `i32` ids.
///
/// On a GPU the squared distances are compared in `f32`: equal to the host's wherever they are
/// exact (integer offsets times spacings whose squares are exact binary numbers, such as 1, 2,
/// 0.5 or 1.5, in volumes under about a thousand voxels a side), so ties are found exactly
/// there; with other spacings a voxel equidistant from two instances to within `f32` rounding
/// may take the other one.
///
/// # Errors
/// [`Error::UnsupportedRank`] unless the map is 4D or 5D, [`Error::InvalidArgument`] for a bad
/// spacing or `2^31` voxels or more, [`Error::NegativeInstanceId`] for a negative id (one read of
/// the smallest and largest id).
///
/// # Example
/// ```
/// use blob_loss::components::voronoi_tensor;
/// use burn::tensor::{Device, Int, Tensor};
///
/// let labels = Tensor::<4, Int>::from_ints([[[[1, 0, 0, 0, 0, 2]]]], &Device::flex());
/// let cells = voronoi_tensor(labels, &[1.0, 1.0])?;
/// assert_eq!(cells.into_data().to_vec::<i32>().unwrap(), [1, 1, 1, 2, 2, 2]);
/// # Ok::<(), blob_loss::Error>(())
/// ```
pub fn voronoi_tensor<const D: usize>(labels: Tensor<D, Int>, spacing: &[f64]) -> Result<Tensor<D, Int>, Error> {
    let dims = labels.dims();
    let grid = Grid::of(&dims, "instance map")?;
    let spacing = grid.spacing(spacing)?;
    if grid.voxels() == 0 {
        return Ok(Tensor::zeros(dims, (&labels.device(), DType::I32)));
    }
    let (_, high) = id_range(&labels)?;
    if high > i64::from(i32::MAX) {
        return Err(Error::InvalidArgument(format!("instance id {high} is above i32::MAX")));
    }
    Ok(voronoi_unchecked(labels, spacing, grid))
}

/// [`label_tensor`]'s labels without the checks: `connectivity` fits the rank, the tensor has
/// voxels and fewer than `2^31`.
pub(crate) fn label_unchecked<const D: usize>(
    masks: Tensor<D, Int>,
    connectivity: Connectivity,
    grid: Grid,
) -> Tensor<D, Int> {
    on_grid(
        masks,
        grid,
        |masks| <Dispatch as ComponentsBackend>::label_components(masks, connectivity),
        |values, shape| {
            let values = ndarray::ArrayView4::from_shape(shape.map(|n| n as usize), values).expect("one per voxel");
            let labels = match connectivity.ndim() {
                2 => label_batch(values.index_axis(ndarray::Axis(1), 0).insert_axis(ndarray::Axis(1)), connectivity)
                    .map(|labelled| labelled.labels.into_raw_vec_and_offset().0),
                _ => label_batch(values.insert_axis(ndarray::Axis(1)), connectivity)
                    .map(|labelled| labelled.labels.into_raw_vec_and_offset().0),
            };
            labels.expect("checked by the caller").into_iter().map(|l| l as i32).collect()
        },
    )
}

/// [`voronoi_tensor`] without the checks: ids in `0..=i32::MAX`, the tensor has voxels and fewer
/// than `2^31`.
pub(crate) fn voronoi_unchecked<const D: usize>(
    labels: Tensor<D, Int>,
    spacing: GridSpacing,
    grid: Grid,
) -> Tensor<D, Int> {
    on_grid(
        labels,
        grid,
        |labels| <Dispatch as ComponentsBackend>::voronoi_cells(labels, spacing),
        |values, shape| {
            let values: Vec<u32> = values.iter().map(|&v| v as u32).collect();
            let view = ndarray::ArrayView5::from_shape(
                (shape[0] as usize, 1, shape[1] as usize, shape[2] as usize, shape[3] as usize),
                &values,
            )
            .expect("one per voxel");
            voronoi_batch(view, &spacing.0).expect("checked by the caller").into_iter().map(|c| c as i32).collect()
        },
    )
}

/// [`ComponentsBackend::components_apart`] of two `[B, C, spatial..]` maps with voxels (fewer
/// than `2^31`; `labels` numbered as [`label_tensor`] numbers them).
pub(crate) fn components_apart<const D: usize>(
    labels: Tensor<D, Int>,
    other: Tensor<D, Int>,
    grid: Grid,
) -> Tensor<D, Int> {
    let other = other.reshape(grid.dims());
    on_grid(
        labels,
        grid,
        |labels| <Dispatch as ComponentsBackend>::components_apart(labels, other.clone().into_dispatch()),
        |labels, shape| {
            let other: Vec<i64> = other.clone().into_data().convert::<i64>().try_to_vec().expect("converted to i64");
            let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
            apart_on_host(&labels, &other, (shape[1] * shape[2] * shape[3]) as usize)
        },
    )
}

/// [`ComponentsBackend::components_apart`] on host slices: `labels` and `other` `[slices *
/// voxels]`.
pub(crate) fn apart_on_host<T: Copy + Into<i64> + Sync>(labels: &[u32], other: &[T], voxels: usize) -> Vec<i32> {
    use rayon::prelude::*;
    let mut out = vec![0i32; labels.len()];
    out.par_chunks_mut(voxels.max(1))
        .zip(labels.par_chunks(voxels.max(1)))
        .zip(other.par_chunks(voxels.max(1)))
        .for_each(|((out, labels), other)| {
            let count = labels.iter().copied().max().unwrap_or(0) as usize;
            let mut touched = vec![false; count + 1];
            for (&label, &o) in labels.iter().zip(other) {
                if o.into() > 0 {
                    touched[label as usize] = true;
                }
            }
            // Labels that touch nothing, renumbered 1..; the others (and label 0) map to 0.
            let mut next = 0i32;
            let renumbered: Vec<i32> = touched
                .iter()
                .enumerate()
                .map(|(label, &touch)| {
                    if label == 0 || touch {
                        0
                    } else {
                        next += 1;
                        next
                    }
                })
                .collect();
            for (out, &label) in out.iter_mut().zip(labels) {
                *out = renumbered[label as usize];
            }
        });
    out
}

/// An operation on the `[slices, depth, height, width]` view of a `[B, C, spatial..]` tensor,
/// reshaped back: the backend extension (`extension`) where the tensor's device has it, the host
/// code (`host`, see [`on_host`]) elsewhere.
fn on_grid<const D: usize>(
    t: Tensor<D, Int>,
    grid: Grid,
    extension: impl FnOnce(IntTensor<Dispatch>) -> IntTensor<Dispatch>,
    host: impl FnOnce(&[i64], [i64; 4]) -> Vec<i32>,
) -> Tensor<D, Int> {
    let dims = t.dims();
    let t = t.reshape(grid.dims());
    let out = if has_extension_ops(&t.device()) {
        Tensor::from_dispatch(extension(t.into_dispatch()))
    } else {
        on_host(t, host)
    };
    out.reshape(dims)
}

/// The host code on a backend without the extension: the `[slices, depth, height, width]`
/// tensor read as `i64`, `f` applied, the `i32` result written back to the device.
fn on_host(t: Tensor<4, Int>, f: impl FnOnce(&[i64], [i64; 4]) -> Vec<i32>) -> Tensor<4, Int> {
    let device = t.device();
    let shape = t.dims();
    let values: Vec<i64> = t.into_data().convert::<i64>().try_to_vec().expect("converted to i64");
    let out = f(&values, shape.map(|n| n as i64));
    Tensor::from_data(TensorData::new(out, shape.to_vec()), (&device, DType::I32))
}

/// The layout the backend extension takes: `[slices, depth, height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    slices: usize,
    depth: usize,
    height: usize,
    width: usize,
    /// 2 or 3.
    spatial: usize,
}

impl Grid {
    /// The grid of a `[B, C, spatial..]` tensor (2 or 3 spatial axes, fewer than `2^31` voxels).
    pub(crate) fn of(dims: &[usize], what: &'static str) -> Result<Self, Error> {
        let spatial = match dims.len() {
            4 => 2,
            5 => 3,
            ndim => {
                return Err(Error::UnsupportedRank {
                    what,
                    ndim,
                    expected: "4 or 5 ([B, C, spatial..] with 2 or 3 spatial axes)",
                });
            }
        };
        let depth = if spatial == 3 { dims[2] } else { 1 };
        let grid = Self {
            slices: dims[0] * dims[1],
            depth,
            height: dims[dims.len() - 2],
            width: dims[dims.len() - 1],
            spatial,
        };
        if grid.slices.checked_mul(grid.voxels()).is_none_or(|n| n > i32::MAX as usize) {
            return Err(Error::InvalidArgument(format!(
                "a {what} of shape {dims:?} has 2^31 voxels or more: the kernels index voxels with i32"
            )));
        }
        Ok(grid)
    }

    /// Voxels per slice.
    pub(crate) fn voxels(&self) -> usize {
        self.depth * self.height * self.width
    }

    fn dims(&self) -> [usize; 4] {
        [self.slices, self.depth, self.height, self.width]
    }

    /// The spacing of the grid's three axes from one value per spatial axis.
    pub(crate) fn spacing(&self, spacing: &[f64]) -> Result<GridSpacing, Error> {
        if spacing.len() != self.spatial {
            return Err(Error::InvalidArgument(format!(
                "spacing has {} values for {} spatial axes: give one per axis",
                spacing.len(),
                self.spatial
            )));
        }
        if let Some(bad) = spacing.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::InvalidArgument(format!("voxel spacing must be positive and finite, got {bad}")));
        }
        Ok(GridSpacing(match *spacing {
            [h, w] => [1.0, h, w],
            [d, h, w] => [d, h, w],
            _ => unreachable!("checked above"),
        }))
    }
}
