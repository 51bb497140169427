//! The partitions of the CC family ([`BiccLoss`](super::BiccLoss)): the connected components of
//! a binary mask with full connectivity (the 3x3x3 structure of the published code), their
//! Voronoi cells over the whole volume, the prediction as the published code thresholds it, and
//! the bin map one branch is summed over.
//!
//! On flex they are made on the host, in the tensors' own memory ([`Foreground::Host`],
//! [`CellIds::Host`]). On a GPU they stay on the device ([`Foreground::Device`],
//! [`CellIds::Device`]): the prediction is thresholded by tensor operations, labelled and
//! partitioned by the kernels of [`label_tensor`](crate::components::label_tensor) and
//! [`voronoi_tensor`](crate::components::voronoi_tensor), and only the number of cells (one
//! integer per branch) and the range of the given maps are read back.

use std::cell::Cell;

use burn::tensor::{Bool, DType, Device, FloatDType, Int, Tensor, TensorData};
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};
use rayon::prelude::*;

use crate::Error;
use crate::backend::{Extreme, HostFloats, HostInts, IntSlice, host_backed, id_range, row_extreme};
use crate::components::tensor::{Grid, label_unchecked, voronoi_unchecked};
use crate::components::{Connectivity, label_batch, voronoi_into};

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
    let mut shape = vec![batch, 1];
    shape.extend_from_slice(spatial);
    let mask = ArrayViewD::from_shape(IxDyn(&shape), mask).expect("one value per voxel");
    let labelled = label_batch(mask, full_connectivity(spatial.len()))?;
    let largest = labelled.counts.iter().copied().max().unwrap_or(0);
    let voxels: usize = spatial.iter().product();
    let labels = labelled.labels.as_slice().expect("a new, standard-layout array");
    let mut cells = vec![0u32; labels.len()];
    cells.par_chunks_mut(voxels).zip(labels.par_chunks(voxels)).zip(labelled.counts.as_slice().unwrap()).try_for_each(
        |((out, labels), &count)| -> Result<(), Error> {
            if count > 0 {
                let labels = ArrayViewD::from_shape(IxDyn(spatial), labels).expect("one element");
                let out = ArrayViewMutD::from_shape(IxDyn(spatial), out).expect("one element");
                voronoi_into(labels, spacing, out)?;
            }
            Ok(())
        },
    )?;
    Ok((cells, largest))
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
    // The margin where the probability is the threshold. Away from it (by far more than the f32
    // softmax's rounding, which is relative to the logits) the margin decides alone; near it,
    // the softmax is computed as PyTorch computes it.
    let cut = (threshold / (1.0 - threshold)).ln() as f32;
    let threshold = threshold as f32;
    let predicted = |l0: f32, l1: f32| {
        let d = l1 - l0;
        if (d - cut).abs() > 1e-4 * (1.0 + cut.abs() + l0.abs() + l1.abs()) {
            d > cut
        } else {
            predicted(l0, l1, threshold)
        }
    };
    let mut mask = vec![0u8; batch * voxels];
    mask.par_chunks_mut(voxels).zip(logits.par_chunks(channels * voxels)).for_each(|(out, element)| {
        if channels == 2 {
            let (l0, l1) = element.split_at(voxels);
            for ((m, &a), &b) in out.iter_mut().zip(l0).zip(l1) {
                *m = u8::from(predicted(a, b));
            }
        } else {
            for (m, &b) in out.iter_mut().zip(element) {
                *m = u8::from(predicted(0.0, b));
            }
        }
    });
    mask
}

/// An integer map read on the host (in place on flex) with its smallest and largest value.
fn read_ids<const D: usize>(map: Tensor<D, Int>) -> (HostInts, i64, i64) {
    /// The smallest and largest value, 0 and 0 for none.
    fn range<T: Copy + Send + Sync + Into<i64>>(values: &[T]) -> (i64, i64) {
        values.par_iter().map(|&v| (v.into(), v.into())).reduce(|| (0, 0), |(a, b), (c, d)| (a.min(c), b.max(d)))
    }
    count_voxel_read();
    let ids = HostInts::read(map);
    let (low, high) = match ids.slice() {
        IntSlice::I32(values) => range(values),
        IntSlice::I64(values) => range(values),
    };
    (ids, low, high)
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
            fn positive<T: Copy + Send + Sync + Into<i64>>(values: &[T]) -> Vec<u8> {
                values.par_iter().map(|&v| u8::from(v.into() > 0)).collect()
            }
            let (ids, low, _) = read_ids(mask);
            if low < 0 {
                return Err(Error::NegativeInstanceId { value: low });
            }
            return Ok(Self::Host(match ids.slice() {
                IntSlice::I32(values) => positive(values),
                IntSlice::I64(values) => positive(values),
            }));
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

    /// [`bin_map`](Self::bin_map) into `out` (`[B, voxels]`), where the ids are on the host;
    /// `false` (nothing written) where they are not.
    fn host_bin_map_into(&self, foreground: &[u8], largest: usize, out: &mut [i32]) -> bool {
        match &self.ids {
            CellIds::Host(ids) => host_bin_map(foreground, ids, largest, out),
            CellIds::Read(ids) => match ids.slice() {
                IntSlice::I32(ids) => host_bin_map(foreground, ids, largest, out),
                IntSlice::I64(ids) => host_bin_map(foreground, ids, largest, out),
            },
            CellIds::Device(_) => return false,
        }
        true
    }
}

/// The bin maps of several partitions of the same voxels, one sums pass for all of them: `[maps
/// * B, voxels]` `i32` on `device` (map `m` in rows `m * B..`), each laid out as
/// [`Cells::bin_map`] for the largest number of cells of any (returned with it, so that every
/// map has `2 * largest + 2` bins with the same targets).
///
/// # Errors
/// [`Error::InvalidArgument`] when the bins need ids above `i32::MAX`.
pub(crate) fn bin_maps(
    partitions: &[&Cells],
    foreground: &Foreground,
    shape: [usize; 2],
    device: &Device,
) -> Result<(Tensor<2, Int>, usize), Error> {
    let largest = partitions.iter().map(|cells| cells.largest).max().unwrap_or(0);
    if 2 * largest as u128 + 2 > i32::MAX as u128 {
        return Err(Error::InvalidArgument(format!("{largest} cells need more bins than i32 ids can name")));
    }
    let [rows, voxels] = shape;
    let maps = partitions.len();
    if let Foreground::Host(mask) = foreground {
        let mut bins = vec![0i32; maps * rows * voxels];
        let written = bins
            .chunks_mut((rows * voxels).max(1))
            .zip(partitions)
            .all(|(out, cells)| cells.host_bin_map_into(mask, largest, out));
        if written {
            return Ok((
                Tensor::from_data(TensorData::new(bins, [maps * rows, voxels]), (device, DType::I32)),
                largest,
            ));
        }
    }
    let maps = partitions.iter().map(|cells| cells.bin_map(foreground, largest, shape, device)).collect();
    Ok((Tensor::cat(maps, 0), largest))
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

/// The bin map of [`Cells::bin_map`] from host maps into `out`, in one pass.
fn host_bin_map<T: Copy + Send + Sync + Into<i64>>(foreground: &[u8], ids: &[T], largest: usize, out: &mut [i32]) {
    let k = largest as i64;
    out.par_iter_mut().zip(foreground).zip(ids).for_each(|((out, &fg), &cell)| {
        let cell: i64 = cell.into();
        *out = (match (fg > 0, cell) {
            (true, _) => 1 + cell,
            (false, 0) => 0,
            (false, _) => k + 1 + cell,
        }) as i32;
    });
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
        let cells = Cells::renumbered(vec![0, 1, 1, 2, 0], 5);
        let foreground = Foreground::Host(vec![1, 1, 0, 0, 0]);
        let (map, largest) = bin_maps(&[&cells], &foreground, [1, 5], &Device::flex()).unwrap();
        assert_eq!((map.into_data().try_to_vec::<i32>().unwrap(), largest), (vec![1, 2, 4, 5, 0], 2));
        // Two partitions: both laid out for the larger one's cells; the device path agrees.
        let more = Cells::renumbered(vec![1, 2, 3, 3, 3], 5);
        let (maps, largest) = bin_maps(&[&cells, &more], &foreground, [1, 5], &Device::flex()).unwrap();
        let expected = vec![1, 2, 5, 6, 0, 2, 3, 7, 7, 7];
        assert_eq!((maps.into_data().try_to_vec::<i32>().unwrap(), largest), (expected.clone(), 3));
        let on_device = |c: &Cells| Cells {
            ids: CellIds::Device(Box::new(c.ids.tensor([1, 5], &Device::flex()))),
            largest: c.largest,
        };
        let (maps, _) =
            bin_maps(&[&on_device(&cells), &on_device(&more)], &foreground, [1, 5], &Device::flex()).unwrap();
        assert_eq!(maps.into_data().try_to_vec::<i32>().unwrap(), expected);
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
        let (map, largest) = bin_maps(&[&cells], &Foreground::Host(vec![1, 0]), [1, 2], &device).unwrap();
        assert_eq!((largest, map.into_data().try_to_vec::<i32>().unwrap()), (2, vec![3, 0]));
        let sparse = Tensor::<4, Int>::from_data(TensorData::new(vec![9i64, 0], [1, 1, 1, 2]), (&device, DType::I64));
        let cells = Cells::given(sparse, "cell").unwrap();
        assert!(matches!(cells.ids, CellIds::Host(ref ids) if ids == &[1, 0]));
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
