//! The bin map of one loss evaluation: every voxel of every `(element, channel)` row gets the
//! bin whose sums it enters, and the sums of those bins, for every term of the loss.
//!
//! The layout of a row's bins, with `M` instance bins:
//!
//! | bins | voxels | target |
//! |---|---|---|
//! | `0` | background (in no cell, with cells) | 0 |
//! | `1..=M` | instance `k` | 1 |
//! | `M + 1..=2M` (with cells) | background of instance `k`'s Voronoi cell | 0 |
//! | `kept` (with ignored voxels) | ignored voxels: summed, not kept | - |
//!
//! `foreground_end = M + 1`; `kept = 1 + M` without cells, `1 + 2M` with them. Instance ids are
//! kept as they are when they are below the number of voxels and the bins fit in `max_bins` (`M`
//! is then the largest id); otherwise each row's ids are renumbered `1..` in increasing order,
//! and the cells follow the instances' new numbers. The loss does not depend on the numbering.
//!
//! Where the maps are host memory (flex), one host pass builds the map ([`host`]) and lists the
//! voxels of the prediction's false-positive components on the way; elsewhere tensor operations
//! build it on the device ([`device`]) and the components keep a map of their own.

mod device;
#[cfg(feature = "flex")]
mod host;

use burn::tensor::{Int, Tensor};

use super::sums::{Engine, InstanceSumsSpec, Statistic, sums_unchecked};
use crate::Error;
pub(crate) use device::bin_ids;

/// The maps the bins come from, `[rows, voxels]` each.
pub(crate) struct BinMaps {
    /// Instance ids (negative: ignored voxels with `ignore_negative`, else an error).
    pub instances: Tensor<2, Int>,
    /// The instances' Voronoi cells, for [`Partition::Voronoi`](super::Partition::Voronoi) only.
    pub cells: Option<Tensor<2, Int>>,
    /// The false-positive components, when the prediction term is on.
    pub false_positives: Option<Tensor<2, Int>>,
    /// Whether negative instance ids mark ignored voxels.
    pub ignore_negative: bool,
}

/// The bin map of an evaluation (see the [module](self) documentation for its layout) and where
/// the false-positive components' voxels are.
pub(crate) struct BinMap {
    /// `[rows, voxels]`, in `0..spec.bins`.
    pub ids: Tensor<2, Int>,
    /// The bins per row the loss keeps: background, instances and cells.
    pub kept: usize,
    /// The spec of the sums: the caller's statistics, with the bins and `foreground_end`.
    pub spec: InstanceSumsSpec,
    pub false_positives: FalsePositiveVoxels,
}

/// Where the voxels of the false-positive components are.
// One value per evaluation, moved once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum FalsePositiveVoxels {
    /// No component (or the term is off).
    None,
    /// Listed by the host pass (flex).
    #[cfg(feature = "flex")]
    Listed {
        /// Components per row, `J`.
        components: usize,
        /// `[n]`: indices into the `[rows, voxels]` outputs.
        voxels: Tensor<1, Int>,
        /// `[1, n]`: `row * J + j` for the row's component `j`.
        bins: Tensor<2, Int>,
    },
    /// A map of their own, background voxels only.
    Map(Tensor<2, Int>),
}

/// The bin map of `maps`; `spec` gives the input and the statistics to sum.
///
/// # Errors
/// [`Error::NegativeInstanceId`], [`Error::TooManyInstances`], [`Error::InvalidArgument`] for
/// negative or unknown cell ids and negative component ids.
pub(crate) fn bin_map(maps: BinMaps, max_bins: usize, spec: InstanceSumsSpec) -> Result<BinMap, Error> {
    #[cfg(feature = "flex")]
    if super::sums::device::host_backed(&maps.instances.device())
        && (maps.cells.is_some() || maps.false_positives.is_some() || maps.ignore_negative)
    {
        return host::bin_map(maps, max_bins, spec);
    }
    device::bin_map(maps, max_bins, spec)
}

/// The per-bin sums of an evaluation, `[rows, bins]` each, bins as in the [module](self)
/// documentation (the ignored voxels' bin left out).
pub(crate) struct BinSums {
    pub p: Tensor<2>,
    pub p2: Option<Tensor<2>>,
    pub bce: Option<Tensor<2>>,
    pub count: Tensor<2>,
    /// The voxels of every row, ignored ones left out, `[rows, 1]`.
    pub voxels: Tensor<2>,
    /// `M + 1`: where the instances' bins end.
    pub foreground_end: usize,
}

impl BinSums {
    /// The sums of `values` (`[rows, voxels]`, as [`sums_unchecked`] takes them) over the bins of
    /// `map`.
    pub(crate) fn of(values: Tensor<2>, map: &BinMap, engine: Engine) -> Self {
        let [rows, _] = values.dims();
        let (spec, kept) = (map.spec, map.kept);
        let sums = sums_unchecked(values, map.ids.clone(), spec, engine);
        let stat = |s: Statistic| {
            spec.index(s).map(|i| sums.clone().slice([0..rows, i..i + 1, 0..kept]).reshape([rows, kept]))
        };
        let count = stat(Statistic::Count).expect("always summed");
        Self {
            p: stat(Statistic::Probability).expect("always summed"),
            p2: stat(Statistic::Square),
            bce: stat(Statistic::CrossEntropy),
            voxels: count.clone().sum_dim(1),
            count,
            foreground_end: spec.foreground_end.unwrap_or(kept),
        }
    }
}

/// The positive ids of a row, sorted, each once.
pub(crate) fn distinct_ids(row: &[i64]) -> Vec<i64> {
    let mut distinct: Vec<i64> = row.iter().copied().filter(|&id| id > 0).collect();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
}

/// The compact number (`1..`) of `id` among a row's `distinct` ids; 0 when it is not one of them.
pub(crate) fn number(distinct: &[i64], id: i64) -> i32 {
    distinct.binary_search(&id).map_or(0, |i| i as i32 + 1)
}

/// The error for a negative cell id.
pub(crate) fn negative_cell(value: i64) -> Error {
    Error::InvalidArgument(format!("negative cell id {value}"))
}

/// The error for a cell id above the largest instance id, `largest`.
pub(crate) fn unknown_cell(cell: i64, largest: i64) -> Error {
    Error::InvalidArgument(format!(
        "cell id {cell} names no instance (the largest instance id is {largest}): cells hold the ids of the \
         instances (components::voronoi_batch of the instance map)"
    ))
}

/// The error for a negative false-positive component id.
pub(crate) fn negative_component(value: i64) -> Error {
    Error::InvalidArgument(format!("negative false-positive component id {value}"))
}

/// [`Error::TooManyInstances`] when `rows x bins` exceed `max_bins`.
pub(crate) fn check_bins(rows: usize, bins: usize, max_bins: usize, statistics: usize) -> Result<(), Error> {
    let total = rows as u128 * bins as u128;
    if total > max_bins as u128 {
        return Err(Error::TooManyInstances {
            bins: total,
            bytes: total * statistics as u128 * 8,
            limit: max_bins as u128,
        });
    }
    Ok(())
}
