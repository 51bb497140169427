//! The partitions of the CC family ([`BiccLoss`](super::BiccLoss)): the connected components of
//! a binary mask with full connectivity (the 3x3x3 structure of the published code), their
//! Voronoi cells over the whole volume, the prediction as the published code thresholds it, and
//! the bin maps both branches are summed over in one pass ([`bin_maps`]).
//!
//! On flex they are made on the host: the given maps and the logits are read in their tensors'
//! memory ([`Foreground::Host`], [`CellIds::Read`]), and the cells of a mask are made inside the
//! bin maps' own buffer ([`Partition::HostMask`]). On a GPU they stay on the device
//! ([`Foreground::Device`], [`CellIds::Device`]): the prediction is thresholded by tensor
//! operations, labelled and partitioned by the kernels of
//! [`label_tensor`](crate::components::label_tensor) and
//! [`voronoi_tensor`](crate::components::voronoi_tensor), and only the number of cells (one
//! integer per branch) and the range of the given maps are read back.

use std::cell::Cell;

use burn::backend::Bytes;
use burn::tensor::{AllocationProperty, Bool, DType, Device, FloatDType, Int, Tensor, TensorData};
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};
use rayon::prelude::*;

use crate::Error;
use crate::backend::{Extreme, HostFloats, HostInts, IntSlice, host_backed, id_range, row_extreme};
use crate::components::buffer::AlignedZeros;
use crate::components::tensor::{Grid, label_unchecked, voronoi_unchecked};
use crate::components::{Connectivity, label_batch_into, voronoi_into};

thread_local! {
    /// Voxel maps this thread has read to the host ([`read_ids`], [`read_prediction`]): the
    /// tests check that a GPU forward reads none.
    static VOXEL_READS: Cell<usize> = const { Cell::new(0) };
}

/// Counts one voxel map read to the host.
fn count_voxel_read() {
    VOXEL_READS.with(|reads| reads.set(reads.get() + 1));
}

/// The voxel maps this thread has read to the host so far.
#[cfg(test)]
pub(crate) fn voxel_reads() -> usize {
    VOXEL_READS.with(Cell::get)
}

/// Whether a voxel with the two logits `l0`, `l1` is predicted: its `f32` softmax probability of
/// class 1 is strictly above `threshold`, computed as PyTorch's softmax computes it
/// (`exp(l - max)` over the sum). Near a margin of 0 this is not `l1 > l0`: in `f32`, margins
/// below about `6e-8` still give exactly 0.5, which is not predicted.
pub(crate) fn predicted(l0: f32, l1: f32, threshold: f32) -> bool {
    let max = l0.max(l1);
    let (e0, e1) = ((l0 - max).exp(), (l1 - max).exp());
    e1 / (e0 + e1) > threshold
}

/// The connectivity of the published code's 3x3x3 structure: 8 neighbours in 2D, 26 in 3D.
fn full_connectivity(spatial: usize) -> Connectivity {
    if spatial == 2 { Connectivity::Eight } else { Connectivity::TwentySix }
}

/// The Voronoi cells of the connected components of every element of a batch of binary masks
/// (`[B, voxels]` row-major, spatial shape `spatial`): every voxel takes the label of its nearest
/// component (Euclidean, with `spacing`), 0 everywhere in an element without components; and
/// the largest number of components of an element.
pub(crate) fn cells_of_masks(
    mask: &[u8],
    batch: usize,
    spatial: &[usize],
    spacing: &[f64],
) -> Result<(Vec<u32>, usize), Error> {
    let (mut labels, mut cells) = (vec![0u32; mask.len()], vec![0u32; mask.len()]);
    let largest = cells_of_masks_into(mask, batch, spatial, spacing, &mut labels, &mut cells)?;
    Ok((cells, largest))
}

/// [`cells_of_masks`] into `out`, with `scratch` (as long, any content) for the labels.
fn cells_of_masks_into(
    mask: &[u8],
    batch: usize,
    spatial: &[usize],
    spacing: &[f64],
    scratch: &mut [u32],
    out: &mut [u32],
) -> Result<usize, Error> {
    let mut shape = vec![batch, 1];
    shape.extend_from_slice(spatial);
    let mask = ArrayViewD::from_shape(IxDyn(&shape), mask).expect("one value per voxel");
    let labels = ArrayViewMutD::from_shape(IxDyn(&shape), &mut scratch[..]).expect("one label per voxel");
    let counts = label_batch_into(mask, full_connectivity(spatial.len()), labels)?;
    let voxels: usize = spatial.iter().product();
    out.par_chunks_mut(voxels.max(1))
        .zip(scratch.par_chunks(voxels.max(1)))
        .zip(counts.as_slice().unwrap())
        .try_for_each(|((out, labels), &count)| -> Result<(), Error> {
            if count == 0 {
                out.fill(0);
                return Ok(());
            }
            let labels = ArrayViewD::from_shape(IxDyn(spatial), labels).expect("one element");
            let out = ArrayViewMutD::from_shape(IxDyn(spatial), out).expect("one element");
            voronoi_into(labels, spacing, out)
        })?;
    Ok(counts.iter().copied().max().unwrap_or(0))
}

/// The Voronoi cells of the prediction, as BiCC's prediction branch builds them: the voxels whose
/// class-1 softmax probability is strictly above `threshold` (computed in `f32` as PyTorch does),
/// their connected components with full connectivity (8 neighbours in 2D, 26 in 3D), and every
/// voxel labelled with its nearest component (Euclidean, with `spacing`, one value per spatial
/// axis); 0 everywhere in an element where nothing is predicted. `[B, 1, spatial..]`, no gradient.
///
/// - `logits`: `[B, 2, spatial..]` (the two classes' logits) or `[B, 1, spatial..]` (class 1's
///   logit against 0), 2 or 3 spatial axes. On flex they are read in place; on a GPU the cells
///   are made on the device (see [`label_tensor`](crate::components::label_tensor)).
///
/// # Errors
/// [`Error::UnsupportedRank`], [`Error::InvalidArgument`] for 3 or more channels, a zero-sized
/// axis, a threshold outside `(0, 1)` or a bad spacing.
///
/// # Example
/// ```
/// use blob_loss::loss::prediction_cells;
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// // Class 1 wins at both ends of the row.
/// let logits = Tensor::<4>::from_floats([[[[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], [[3.0, -3.0, -3.0, -3.0, -3.0, 3.0]]]], &device);
/// let cells = prediction_cells(logits, 0.5, &[1.0, 1.0])?;
/// assert_eq!(cells.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), [1, 1, 1, 2, 2, 2]);
/// # Ok::<(), blob_loss::Error>(())
/// ```
pub fn prediction_cells<const D: usize>(
    logits: Tensor<D>,
    threshold: f64,
    spacing: &[f64],
) -> Result<Tensor<D, Int>, Error> {
    let dims = logits.dims();
    check_logits(dims)?;
    if !(threshold > 0.0 && threshold < 1.0) {
        return Err(Error::InvalidArgument(format!("the prediction threshold must be in (0, 1), got {threshold}")));
    }
    let device = logits.device();
    let mut shape = dims;
    shape[1] = 1;
    let cells = Cells::of_mask(&Foreground::of_prediction(logits, threshold), shape, spacing, &device)?;
    let voxels = shape.iter().skip(2).product();
    Ok(cells.ids.tensor([dims[0], voxels], &device).reshape(shape))
}

/// Checks logits for the CC family: 2 or 3 spatial axes, 1 or 2 channels, no zero-sized axis.
pub(crate) fn check_logits<const D: usize>(dims: [usize; D]) -> Result<(), Error> {
    if !(4..=5).contains(&D) {
        return Err(Error::UnsupportedRank {
            what: "logits",
            ndim: D,
            expected: "4 or 5 ([B, C, spatial..] with 2 or 3 spatial axes)",
        });
    }
    if !(1..=2).contains(&dims[1]) {
        return Err(Error::InvalidArgument(format!(
            "the CC family takes 2 channels (the logits of background and foreground) or 1 (the foreground's \
             logit), got {}",
            dims[1]
        )));
    }
    if dims.contains(&0) {
        return Err(Error::InvalidArgument(format!("logits of shape {dims:?} have no voxels")));
    }
    Ok(())
}

/// The thresholded prediction of `[B, C, voxels..]` logits, read on the host (in place on flex;
/// logits in another float type than `f32` converted: the published code thresholds an `f32`
/// softmax), `[B, voxels]`.
pub(crate) fn read_prediction<const D: usize>(logits: Tensor<D>, threshold: f64) -> Vec<u8> {
    count_voxel_read();
    let [batch, channels] = [logits.dims()[0], logits.dims()[1]];
    prediction_mask(HostFloats::read_f32(logits).as_f32(), batch, channels, threshold)
}

/// The thresholded prediction of `[B, C, voxels..]` logits read to the host (`C` = 2: the two
/// classes' logits; `C` = 1: the logit of class 1 against a class 0 of logit 0), `[B, voxels]`.
fn prediction_mask(logits: &[f32], batch: usize, channels: usize, threshold: f64) -> Vec<u8> {
    let voxels = logits.len() / batch / channels;
    // The margin where the probability is the threshold (see `threshold_run`).
    let cut = (threshold / (1.0 - threshold)).ln() as f32;
    let threshold = threshold as f32;
    let mut mask = vec![0u8; batch * voxels];
    mask.par_chunks_mut(voxels).zip(logits.par_chunks(channels * voxels)).for_each(|(out, element)| {
        let (l0, l1) = if channels == 2 {
            let (l0, l1) = element.split_at(voxels);
            (Some(l0), l1)
        } else {
            (None, element)
        };
        out.par_chunks_mut(RUN).enumerate().with_min_len(64).for_each(|(i, out)| {
            let range = i * RUN..i * RUN + out.len();
            threshold_run(out, l0.map(|l0| &l0[range.clone()]), &l1[range], cut, threshold);
        });
    });
    mask
}

/// Voxels a host pass over a map handles together (in one loop that vectorises).
const RUN: usize = 256;

/// Voxels per parallel task of a host pass over a map.
const TASK: usize = 1 << 15;

/// A run of [`prediction_mask`]: every voxel by its margin `l1 - l0` (`l0` 0 when absent) in
/// a loop without branches that vectorises; if the run holds a voxel near the `cut` (by far
/// more than the f32 softmax's rounding, which is relative to the logits) or a NaN, those voxels
/// again, by the softmax computed as PyTorch computes it.
fn threshold_run(out: &mut [u8], l0: Option<&[f32]>, l1: &[f32], cut: f32, threshold: f32) {
    let decided = |a: f32, b: f32| (b - a - cut).abs() > 1e-4 * (1.0 + cut.abs() + a.abs() + b.abs());
    let mut near = false;
    match l0 {
        Some(l0) => {
            for ((m, &a), &b) in out.iter_mut().zip(l0).zip(l1) {
                near |= !decided(a, b);
                *m = u8::from(b - a > cut);
            }
        }
        None => {
            for (m, &b) in out.iter_mut().zip(l1) {
                near |= !decided(0.0, b);
                *m = u8::from(b - 0.0 > cut);
            }
        }
    }
    if near {
        for (i, (m, &b)) in out.iter_mut().zip(l1).enumerate() {
            let a = l0.map_or(0.0, |l0| l0[i]);
            if !decided(a, b) {
                *m = u8::from(predicted(a, b, threshold));
            }
        }
    }
}

/// An integer map read on the host (in place on flex) with its smallest and largest value.
fn read_ids<const D: usize>(map: Tensor<D, Int>) -> (HostInts, i64, i64) {
    count_voxel_read();
    let ids = HostInts::read(map);
    let (low, high) = host_range(&ids);
    (ids, low, high)
}

/// The smallest and largest of host ids, 0 and 0 for none.
fn host_range(ids: &HostInts) -> (i64, i64) {
    fn range<T: Copy + Default + Ord + Send + Sync + Into<i64>>(values: &[T]) -> (i64, i64) {
        // Runs folded in their own type in loops that vectorise, then the runs' extremes.
        let zero = T::default();
        let (low, high) = values
            .par_chunks(TASK)
            .map(|run| run.iter().fold((zero, zero), |(low, high), &v| (low.min(v), high.max(v))))
            .reduce(|| (zero, zero), |(a, b), (c, d)| (a.min(c), b.max(d)));
        (low.into(), high.into())
    }
    match ids.slice() {
        IntSlice::I32(values) => range(values),
        IntSlice::I64(values) => range(values),
    }
}

/// Host ids in `0..=u32::MAX` (checked by the caller) as `u32`.
fn host_u32(ids: &HostInts) -> Vec<u32> {
    match ids.slice() {
        IntSlice::I32(values) => values.par_iter().map(|&v| v as u32).collect(),
        IntSlice::I64(values) => values.par_iter().map(|&v| v as u32).collect(),
    }
}

/// The thresholded prediction on the device, `[B, voxels]`: the class-1 probability of the
/// `f32` softmax (`exp(l - max)` over the sum, as PyTorch computes it) strictly above
/// `threshold`. A GPU's `exp` may round differently from the host's, which matters only for
/// margins within a few `f32` ulps of the threshold's.
fn device_prediction<const D: usize>(logits: Tensor<D>, threshold: f64) -> Tensor<2, Bool> {
    let [batch, channels] = [logits.dims()[0], logits.dims()[1]];
    let voxels = logits.shape().num_elements() / batch / channels;
    let logits = logits.detach().cast(FloatDType::F32);
    let l1 = logits.clone().narrow(1, channels - 1, 1);
    let l0 = if channels == 2 { logits.narrow(1, 0, 1) } else { l1.zeros_like() };
    let max = l0.clone().max_pair(l1.clone());
    let (e0, e1) = ((l0 - max.clone()).exp(), (l1 - max).exp());
    (e1.clone() / (e0 + e1)).greater_elem(threshold).reshape([batch, voxels])
}

/// A binary mask `[B, voxels]` (the ground truth's foreground or the thresholded prediction),
/// where the loss's device keeps it.
#[derive(Debug, Clone)]
pub(crate) enum Foreground {
    /// On the host (flex), one byte per voxel.
    Host(Vec<u8>),
    /// On the device (boxed: a tensor handle is large beside a `Vec`).
    Device(Box<Tensor<2, Bool>>),
}

impl Foreground {
    /// The foreground (`> 0`) of a `[B, 1, spatial..]` instance or class map.
    ///
    /// # Errors
    /// [`Error::NegativeInstanceId`] for a negative value.
    pub(crate) fn of_mask<const D: usize>(mask: Tensor<D, Int>) -> Result<Self, Error> {
        let batch = mask.dims()[0];
        let voxels = mask.shape().num_elements() / batch.max(1);
        if host_backed(&mask.device()) {
            /// The foreground and whether any value is negative, in one pass of loops that
            /// vectorise (no widening, no branch).
            fn positive<T: Copy + Default + PartialOrd + Send + Sync>(values: &[T]) -> (Vec<u8>, bool) {
                let zero = T::default();
                let mut mask = vec![0u8; values.len()];
                let negative = mask
                    .par_chunks_mut(TASK)
                    .zip(values.par_chunks(TASK))
                    .map(|(mask, values)| {
                        let mut negative = false;
                        for (m, &v) in mask.iter_mut().zip(values) {
                            *m = u8::from(v > zero);
                            negative |= v < zero;
                        }
                        negative
                    })
                    .reduce(|| false, |a, b| a | b);
                (mask, negative)
            }
            count_voxel_read();
            let ids = HostInts::read(mask);
            let (mask, negative) = match ids.slice() {
                IntSlice::I32(values) => positive(values),
                IntSlice::I64(values) => positive(values),
            };
            if negative {
                return Err(Error::NegativeInstanceId { value: host_range(&ids).0 });
            }
            return Ok(Self::Host(mask));
        }
        let (low, _) = id_range(&mask)?;
        if low < 0 {
            return Err(Error::NegativeInstanceId { value: low });
        }
        Ok(Self::Device(Box::new(mask.reshape([batch, voxels]).greater_elem(0))))
    }

    /// The prediction of `[B, C, spatial..]` logits as the published code thresholds it.
    pub(crate) fn of_prediction<const D: usize>(logits: Tensor<D>, threshold: f64) -> Self {
        if host_backed(&logits.device()) {
            Self::Host(read_prediction(logits, threshold))
        } else {
            Self::Device(Box::new(device_prediction(logits, threshold)))
        }
    }

    /// `+1` on the foreground, `-1` elsewhere, `[B, voxels]` on `device` in `dtype`.
    pub(crate) fn signs(&self, shape: [usize; 2], device: &Device, dtype: FloatDType) -> Tensor<2> {
        match self {
            Self::Host(mask) => {
                let signs: Vec<f32> = mask.par_iter().map(|&f| if f > 0 { 1.0 } else { -1.0 }).collect();
                Tensor::<2>::from_data(TensorData::new(signs, shape.to_vec()), device).cast(dtype)
            }
            Self::Device(mask) => mask.as_ref().clone().float().cast(dtype) * 2.0 - 1.0,
        }
    }
}

/// A partition's cell ids, `[B, voxels]`, 0 for a voxel in no cell.
#[derive(Debug)]
pub(crate) enum CellIds {
    /// Made on the host (flex).
    Host(Vec<u32>),
    /// Given by the caller, read in place on the host (flex); in `0..=u32::MAX`.
    Read(HostInts),
    /// On the device (boxed: a tensor handle is large beside a `Vec`).
    Device(Box<Tensor<2, Int>>),
}

/// A partition's cells as the loss reads them: the ids and the largest id.
#[derive(Debug)]
pub(crate) struct Cells {
    pub ids: CellIds,
    pub largest: usize,
}

impl Cells {
    /// Cells given by the caller, `[B, 1, spatial..]`. Ids larger than an element's voxel count
    /// (sparse ids) are numbered `1..` per element, in their order, so that the bins follow the
    /// number of cells, not the ids' values (a cell id only groups voxels); on a GPU that takes
    /// a copy to the host, which dense ids (at most the voxel count) do not.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative id or one above `u32::MAX`.
    pub(crate) fn given<const D: usize>(map: Tensor<D, Int>, what: &str) -> Result<Self, Error> {
        let batch = map.dims()[0];
        let voxels = map.shape().num_elements() / batch.max(1);
        if !host_backed(&map.device()) {
            let (_, high) = id_range(&map).map_err(|e| match e {
                Error::NegativeInstanceId { value } => Error::InvalidArgument(format!("{what} id {value} is negative")),
                e => e,
            })?;
            if high as u128 <= voxels as u128 {
                return Ok(Self {
                    ids: CellIds::Device(Box::new(map.reshape([batch, voxels]))),
                    largest: high as usize,
                });
            }
        }
        let (ids, low, high) = read_ids(map);
        if low < 0 {
            return Err(Error::InvalidArgument(format!("{what} id {low} is negative")));
        }
        if high > i64::from(u32::MAX) {
            return Err(Error::InvalidArgument(format!("{what} id {high} is above u32::MAX")));
        }
        if high as u128 <= voxels as u128 {
            return Ok(Self { ids: CellIds::Read(ids), largest: high as usize });
        }
        Ok(Self::renumbered(host_u32(&ids), voxels))
    }

    /// Host ids, sparse ones numbered `1..` per element (see [`given`](Self::given)).
    fn renumbered(mut ids: Vec<u32>, voxels: usize) -> Self {
        let largest = ids.par_iter().copied().max().unwrap_or(0) as usize;
        if largest <= voxels {
            return Self { ids: CellIds::Host(ids), largest };
        }
        let counts: Vec<usize> = ids
            .par_chunks_mut(voxels.max(1))
            .map(|row| {
                let mut distinct: Vec<u32> = row.iter().copied().filter(|&c| c > 0).collect();
                distinct.sort_unstable();
                distinct.dedup();
                for cell in row.iter_mut().filter(|c| **c > 0) {
                    *cell = distinct.binary_search(cell).map_or(0, |i| i as u32 + 1);
                }
                distinct.len()
            })
            .collect();
        Self { ids: CellIds::Host(ids), largest: counts.into_iter().max().unwrap_or(0) }
    }

    /// The Voronoi cells of the connected components (full connectivity) of a binary mask, on
    /// the mask's side: `shape` is the `[B, 1, spatial..]` shape of the maps.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad spacing or a map of `2^31` voxels or more.
    pub(crate) fn of_mask<const D: usize>(
        mask: &Foreground,
        shape: [usize; D],
        spacing: &[f64],
        device: &Device,
    ) -> Result<Self, Error> {
        let (batch, spatial) = (shape[0], &shape[2..]);
        match mask {
            Foreground::Host(mask) => {
                let (ids, largest) = cells_of_masks(mask, batch, spatial, spacing)?;
                Ok(Self { ids: CellIds::Host(ids), largest })
            }
            Foreground::Device(mask) => {
                let grid = Grid::of(&shape, "mask")?;
                let spacing = grid.spacing(spacing)?;
                let voxels = grid.voxels();
                let labels =
                    label_unchecked(mask.as_ref().clone().int().reshape(shape), full_connectivity(spatial.len()), grid);
                // The one read of the branch: its number of cells sizes its bins.
                let largest: i64 = row_extreme(labels.clone().reshape([1, batch * voxels]), Extreme::Max).into_scalar();
                let ids = if largest > 0 {
                    voronoi_unchecked(labels, spacing, grid).reshape([batch, voxels])
                } else {
                    Tensor::zeros([batch, voxels], (device, DType::I32))
                };
                Ok(Self { ids: CellIds::Device(Box::new(ids)), largest: largest as usize })
            }
        }
    }

    /// The bin map of a branch over these cells, `[B, voxels]` `i32` on `device`, laid out for
    /// `largest` cells (at least [`largest`](Self::largest)): a foreground voxel of cell `c` in
    /// bin `1 + c` (bins `1..largest + 2` have target 1: the sums'
    /// [`foreground_end`](super::sums::InstanceSumsSpec::foreground_end) is `largest + 2`), a
    /// background voxel of cell `c > 0` in bin `largest + 1 + c`, one in no cell in bin 0.
    fn bin_map(&self, foreground: &Foreground, largest: usize, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
        let ids = self.ids.tensor(shape, device);
        let foreground = match foreground {
            Foreground::Device(mask) => mask.as_ref().clone(),
            Foreground::Host(mask) => {
                host_ids(&mask.iter().map(|&m| u32::from(m)).collect::<Vec<_>>(), shape, device).greater_elem(0)
            }
        };
        let background = (ids.clone() + (largest as i64 + 1)).mask_fill(ids.clone().equal_elem(0), 0);
        background.mask_where(foreground, ids + 1)
    }
}

/// One branch's partition of the voxels, before its bin map is made.
#[derive(Debug)]
pub(crate) enum Partition {
    /// Cells given by the caller, or made on the device.
    Cells(Cells),
    /// The Voronoi cells of the components of a host mask (flex), made by [`bin_maps`] into its
    /// own buffer: no buffer of labels or cells per call.
    HostMask(Vec<u8>),
}

impl Partition {
    /// The Voronoi cells of the connected components (full connectivity) of a binary mask (see
    /// [`Cells::of_mask`]): made now on a device, by [`bin_maps`] on the host.
    ///
    /// # Errors
    /// As [`Cells::of_mask`].
    pub(crate) fn of_mask<const D: usize>(
        mask: Foreground,
        shape: [usize; D],
        spacing: &[f64],
        device: &Device,
    ) -> Result<Self, Error> {
        match mask {
            Foreground::Host(mask) => Ok(Self::HostMask(mask)),
            device_mask => Ok(Self::Cells(Cells::of_mask(&device_mask, shape, spacing, device)?)),
        }
    }

    /// Whether its ids are (or will be) host memory.
    fn on_host(&self) -> bool {
        !matches!(self, Self::Cells(Cells { ids: CellIds::Device(_), .. }))
    }
}

/// The bin maps of several partitions of the same voxels, for one sums pass over all of them:
/// `[maps * B, voxels]` `i32` on `device` (map `m` in rows `m * B..`), each laid out as
/// [`Cells::bin_map`] for the largest number of cells of any (returned with it, so that every
/// map has `2 * largest + 2` bins with the same targets). `shape`: the maps' `[B, 1, spatial..]`.
///
/// On the host (flex) everything is written into the one buffer of the result: the cells of a
/// [`Partition::HostMask`] are made into its own rows, the labels of its components in the rows
/// of a partition whose cells are given (written last) or, without one, in one scratch buffer;
/// then every row becomes bins in place.
///
/// # Errors
/// [`Error::InvalidArgument`] when the bins need ids above `i32::MAX`, and the errors of
/// [`Cells::of_mask`].
pub(crate) fn bin_maps<const D: usize>(
    partitions: Vec<Partition>,
    foreground: &Foreground,
    shape: [usize; D],
    spacing: &[f64],
    device: &Device,
) -> Result<(Tensor<2, Int>, usize), Error> {
    let (batch, spatial) = (shape[0], &shape[2..]);
    let voxels: usize = spatial.iter().product();
    let check = |largest: usize| {
        if 2 * largest as u128 + 2 > i32::MAX as u128 {
            return Err(Error::InvalidArgument(format!("{largest} cells need more bins than i32 ids can name")));
        }
        Ok(largest)
    };
    let mask = match foreground {
        Foreground::Host(mask) if partitions.iter().all(Partition::on_host) => mask,
        _ => {
            // On a device: each partition's bin map by tensor operations.
            let cells = partitions
                .into_iter()
                .map(|p| match p {
                    Partition::Cells(cells) => Ok(cells),
                    Partition::HostMask(m) => Cells::of_mask(&Foreground::Host(m), shape, spacing, device),
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let largest = check(cells.iter().map(|c| c.largest).max().unwrap_or(0))?;
            let maps = cells.iter().map(|c| c.bin_map(foreground, largest, [batch, voxels], device)).collect();
            return Ok((Tensor::cat(maps, 0), largest));
        }
    };
    let n = batch * voxels;
    let maps = partitions.len();
    // Written once per step and read by the sums, forward and backward: its own allocation, in
    // huge pages where the kernel offers them (a few faults instead of one per 4 KiB).
    let mut buffer = AlignedZeros::new(maps * n)?;
    let values = buffer.as_mut_slice();
    // The cells of the masks first, into their own rows.
    let ready = partitions.iter().position(|p| matches!(p, Partition::Cells(_)));
    let mut scratch = Vec::new();
    let mut largest = 0;
    for (i, partition) in partitions.iter().enumerate() {
        largest = largest.max(match partition {
            Partition::Cells(cells) => cells.largest,
            Partition::HostMask(m) => {
                let (out, labels) = match ready {
                    Some(j) => two_rows_mut(values, n, i, j),
                    None => {
                        scratch.resize(n, 0);
                        (&mut values[i * n..(i + 1) * n], &mut scratch[..])
                    }
                };
                cells_of_masks_into(m, batch, spatial, spacing, labels, out)?
            }
        });
    }
    let largest = check(largest)?;
    // Then every row's bins, in place.
    let k = largest as u32;
    // Selects, not branches: the loops over voxels vectorise.
    let bin = move |fg: u8, cell: u32| {
        let background = if cell == 0 { 0 } else { k + 1 + cell };
        if fg > 0 { 1 + cell } else { background }
    };
    for (partition, out) in partitions.iter().zip(values.chunks_mut(n.max(1))) {
        match partition {
            Partition::HostMask(_) => out.par_chunks_mut(TASK).zip(mask.par_chunks(TASK)).for_each(|(out, mask)| {
                out.iter_mut().zip(mask).for_each(|(c, &fg)| *c = bin(fg, *c));
            }),
            Partition::Cells(Cells { ids: CellIds::Host(ids), .. }) => host_bins(mask, ids, out, bin),
            Partition::Cells(Cells { ids: CellIds::Read(ids), .. }) => match ids.slice() {
                IntSlice::I32(ids) => host_bins(mask, ids, out, bin),
                IntSlice::I64(ids) => host_bins(mask, ids, out, bin),
            },
            Partition::Cells(Cells { ids: CellIds::Device(_), .. }) => unreachable!("checked: on the host"),
        }
    }
    // Bins below 2^31 (checked): their `u32` bits are their `i32` bits.
    let bytes = Bytes::from_shared(bytes::Bytes::from_owner(buffer), AllocationProperty::Native);
    let data = TensorData::from_bytes(bytes, [maps * batch, voxels], DType::I32);
    Ok((Tensor::from_data(data, (device, DType::I32)), largest))
}

/// Rows `i` and `j != i` of `n` values each of `buffer`, both mutable.
fn two_rows_mut(buffer: &mut [u32], n: usize, i: usize, j: usize) -> (&mut [u32], &mut [u32]) {
    let (low, high) = buffer.split_at_mut(i.max(j) * n);
    let (first, second) = (&mut low[i.min(j) * n..(i.min(j) + 1) * n], &mut high[..n]);
    if i < j { (first, second) } else { (second, first) }
}

/// The bins of host ids into `out`: `bin(foreground, cell)` per voxel.
fn host_bins<T: Copy + Send + Sync + Into<i64>>(
    foreground: &[u8],
    ids: &[T],
    out: &mut [u32],
    bin: impl Fn(u8, u32) -> u32 + Sync,
) {
    // Ids are checked in `0..=voxels` by `Cells::given`.
    let tasks = out.par_chunks_mut(TASK).zip(foreground.par_chunks(TASK)).zip(ids.par_chunks(TASK));
    tasks.for_each(|((out, foreground), ids)| {
        for ((out, &fg), &cell) in out.iter_mut().zip(foreground).zip(ids) {
            *out = bin(fg, cell.into() as u32);
        }
    });
}

impl CellIds {
    /// The ids as an `i32` tensor `[B, voxels]` on `device`.
    fn tensor(&self, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
        match self {
            Self::Device(ids) => ids.as_ref().clone(),
            Self::Host(ids) => host_ids(ids, shape, device),
            Self::Read(ids) => host_ids(&host_u32(ids), shape, device),
        }
    }
}

/// Host ids as an `i32` tensor on `device`.
fn host_ids(ids: &[u32], shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i32> = ids.par_iter().map(|&c| c as i32).collect();
    Tensor::from_data(TensorData::new(ids, shape.to_vec()), (device, DType::I32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_the_f32_softmax() {
        // A margin of 0, or one too small to move the f32 softmax off 0.5, is not predicted.
        assert!(!predicted(0.0, 0.0, 0.5));
        assert!(!predicted(0.0, 3e-8, 0.5));
        assert!(!predicted(1.0, 1.0 + 5e-8, 0.5));
        assert!(predicted(0.0, 1e-7, 0.5));
        assert!(predicted(-0.5, 0.5, 0.5));
        assert!(!predicted(0.5, -0.5, 0.5));
        assert!(!predicted(0.0, f32::NAN, 0.5));
        assert!(predicted(0.0, 2.0, 0.8) && !predicted(0.0, 1.0, 0.8));
    }

    #[test]
    fn the_fast_threshold_decides_as_the_softmax() {
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        for threshold in [0.5f64, 0.2, 0.9, 0.999] {
            let cut = (threshold / (1.0 - threshold)).ln() as f32;
            let mut logits = Vec::new();
            for _ in 0..20_000 {
                let base = (next() - 0.5) * [1.0, 10.0, 1e4][(next() * 3.0) as usize % 3];
                // Margins near the cut, by up to a few ulps of the logits, and far from it.
                let offset = (next() - 0.5) * [1e-7, 1e-5, 1e-3, 10.0][(next() * 4.0) as usize % 4];
                logits.extend([base, base + cut + offset]);
            }
            let n = logits.len() / 2;
            let (l0, l1): (Vec<f32>, Vec<f32>) = logits.chunks(2).map(|p| (p[0], p[1])).unzip();
            let two: Vec<f32> = l0.iter().chain(&l1).copied().collect();
            let mask = prediction_mask(&two, 1, 2, threshold);
            for i in 0..n {
                assert_eq!(mask[i] == 1, predicted(l0[i], l1[i], threshold as f32), "{threshold}: {} {}", l0[i], l1[i]);
            }
            // One channel (class 0's logit 0): margins near the cut and far, and NaN, in two
            // elements whose runs of voxels end inside the volume.
            let mut one: Vec<f32> = l0.iter().zip(&l1).map(|(a, b)| b - a).collect();
            one[5] = f32::NAN;
            let mask = prediction_mask(&one, 2, 1, threshold);
            for (i, &v) in one.iter().enumerate() {
                assert_eq!(mask[i] == 1, predicted(0.0, v, threshold as f32), "{threshold}: {v}");
            }
        }
    }

    #[test]
    fn cells_use_full_connectivity_and_cover_the_volume() {
        // Two diagonal voxels are one component (8-connectivity).
        let (cells, largest) = cells_of_masks(&[1, 0, 0, 1], 1, &[2, 2], &[1.0, 1.0]).unwrap();
        assert_eq!((cells, largest), (vec![1; 4], 1));
        // Every voxel takes its nearest component, background included.
        let (cells, largest) = cells_of_masks(&[1, 0, 0, 0, 0, 1], 1, &[1, 6], &[1.0, 1.0]).unwrap();
        assert_eq!((cells, largest), (vec![1, 1, 1, 2, 2, 2], 2));
        // An element without components is in no cell.
        let (cells, largest) = cells_of_masks(&[0; 4], 1, &[2, 2], &[1.0, 1.0]).unwrap();
        assert_eq!((cells, largest), (vec![0; 4], 0));
    }

    #[test]
    fn bins_split_each_cell_by_target() {
        let flex = Device::flex();
        let ids = |maps: Tensor<2, Int>| maps.into_data().try_to_vec::<i32>().unwrap();
        let cells = || Partition::Cells(Cells::renumbered(vec![0, 1, 1, 2, 0], 5));
        let more = || Partition::Cells(Cells::renumbered(vec![1, 2, 3, 3, 3], 5));
        let foreground = Foreground::Host(vec![1, 1, 0, 0, 0]);
        let (map, largest) = bin_maps(vec![cells()], &foreground, [1, 1, 5], &[1.0], &flex).unwrap();
        assert_eq!((ids(map), largest), (vec![1, 2, 4, 5, 0], 2));
        // Two partitions: both laid out for the larger one's cells; the device path agrees.
        let (maps, largest) = bin_maps(vec![cells(), more()], &foreground, [1, 1, 5], &[1.0], &flex).unwrap();
        let expected = vec![1, 2, 5, 6, 0, 2, 3, 7, 7, 7];
        assert_eq!((ids(maps), largest), (expected.clone(), 3));
        let on_device = |p: Partition| match p {
            Partition::Cells(c) => Partition::Cells(Cells {
                ids: CellIds::Device(Box::new(c.ids.tensor([1, 5], &flex))),
                largest: c.largest,
            }),
            p => p,
        };
        let (maps, _) =
            bin_maps(vec![on_device(cells()), on_device(more())], &foreground, [1, 1, 5], &[1.0], &flex).unwrap();
        assert_eq!(ids(maps), expected);
        // Sparse ids are numbered per element.
        let sparse = Cells::renumbered(vec![0, 7_000_000, 7_000_000, 9, 4_000_000_000, 0, 5, 5], 4);
        assert!(matches!(sparse.ids, CellIds::Host(ref ids) if ids == &[0, 2, 2, 1, 2, 0, 1, 1]));
        assert_eq!(sparse.largest, 2);
        let device = Device::flex();
        let negative = Tensor::<4, Int>::from_ints([[[[0, -1]]]], &device);
        let err = Cells::given(negative.clone(), "cell").unwrap_err();
        assert!(err.to_string().contains("cell id -1 is negative"), "{err}");
        assert_eq!(Foreground::of_mask(negative).unwrap_err(), Error::NegativeInstanceId { value: -1 });
        let too_large =
            Tensor::<4, Int>::from_data(TensorData::new(vec![1i64 << 32, 0], [1, 1, 1, 2]), (&device, DType::I64));
        let err = Cells::given(too_large, "cell").unwrap_err();
        assert!(err.to_string().contains("above u32::MAX"), "{err}");
        // i64 maps are read as they are, dense ids in place, sparse ones renumbered.
        let wide = Tensor::<4, Int>::from_data(TensorData::new(vec![2i64, 0], [1, 1, 1, 2]), (&device, DType::I64));
        let cells = Cells::given(wide, "cell").unwrap();
        assert!(matches!(cells.ids, CellIds::Read(_)));
        let (map, largest) =
            bin_maps(vec![Partition::Cells(cells)], &Foreground::Host(vec![1, 0]), [1, 1, 2], &[1.0], &device).unwrap();
        assert_eq!((largest, map.into_data().try_to_vec::<i32>().unwrap()), (2, vec![3, 0]));
        let sparse = Tensor::<4, Int>::from_data(TensorData::new(vec![9i64, 0], [1, 1, 1, 2]), (&device, DType::I64));
        let cells = Cells::given(sparse, "cell").unwrap();
        assert!(matches!(cells.ids, CellIds::Host(ref ids) if ids == &[1, 0]));
    }

    /// The cells of a mask made into the bin maps' own buffer (the labels in another
    /// partition's rows, or in a scratch buffer when every partition is a mask) give the bins of
    /// the same cells made apart, in 2D and 3D, with an element without components.
    #[test]
    fn masks_partitioned_in_place_equal_cells_made_apart() {
        fn check<const D: usize>(shape: [usize; D], spacing: &[f64]) {
            let (batch, spatial) = (shape[0], &shape[2..]);
            let voxels: usize = spatial.iter().product();
            // Components in the first element only.
            let mask = |seed: usize| -> Vec<u8> {
                (0..batch * voxels).map(|i| u8::from(i < voxels && (i * 7919 + seed) % 23 < 2)).collect()
            };
            let (truth, predicted) = (mask(3), mask(11));
            let foreground = Foreground::Host(truth.clone());
            let apart = |m: &[u8]| {
                let (cells, largest) = cells_of_masks(m, batch, spatial, spacing).unwrap();
                Partition::Cells(Cells { ids: CellIds::Host(cells), largest })
            };
            let run = |partitions: Vec<Partition>| {
                let (maps, largest) = bin_maps(partitions, &foreground, shape, spacing, &Device::flex()).unwrap();
                (maps.into_data().try_to_vec::<i32>().unwrap(), largest)
            };
            let expected = run(vec![apart(&truth), apart(&predicted)]);
            assert!(expected.1 > 1, "several components");
            let mask = |m: &Vec<u8>| Partition::HostMask(m.clone());
            assert_eq!(run(vec![apart(&truth), mask(&predicted)]), expected, "{shape:?}");
            assert_eq!(run(vec![mask(&truth), apart(&predicted)]), expected, "{shape:?}");
            assert_eq!(run(vec![mask(&truth), mask(&predicted)]), expected, "{shape:?}");
        }
        check([2, 1, 9, 11], &[1.0, 2.0]);
        check([2, 1, 5, 6, 7], &[2.0, 1.0, 1.0]);
    }

    /// A BiCC forward with the cells and components made by the loss: its value, and the voxel
    /// maps it read to the host.
    fn forward_reads(device: &Device) -> (f64, usize) {
        use crate::loss::BiccLossConfig;
        let shape = [2, 2, 9, 8, 7];
        let logits: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| ((i * 7919) % 23) as f32 / 4.0 - 2.6 + if (i / 504) % 2 == 1 && (i % 13) < 4 { 3.0 } else { 0.0 })
            .collect();
        let mask: Vec<i32> = (0..2 * 9 * 8 * 7).map(|i| i32::from((i % 11) < 2 && i % 97 > 20)).collect();
        let logits = Tensor::<5>::from_data(TensorData::new(logits, shape), device);
        let mask = Tensor::<5, Int>::from_data(TensorData::new(mask, [2, 1, 9, 8, 7]), device);
        let before = voxel_reads();
        let loss = BiccLossConfig::new().with_spacing(Some(vec![2.0, 1.0, 1.0])).init().forward(logits, mask);
        let reads = voxel_reads() - before;
        (loss.into_scalar::<f64>(), reads)
    }

    #[test]
    fn host_forward_reads_its_maps_on_flex() {
        // The counter works: flex labels the maps on the host, in their memory.
        let (_, reads) = forward_reads(&Device::flex());
        assert_eq!(reads, 2);
    }

    /// On a GPU the loss reads no voxel map back: the prediction is thresholded, labelled and
    /// partitioned on the device, and gives the host path's value.
    #[cfg(feature = "wgpu")]
    #[test]
    fn device_forward_reads_no_voxel_map() {
        let (expected, _) = forward_reads(&Device::flex());
        let (value, reads) = forward_reads(&Device::wgpu(Default::default()));
        assert_eq!(reads, 0);
        assert!((value - expected).abs() < 1e-5 * expected.abs().max(1.0), "{value} vs {expected}");
    }
}
