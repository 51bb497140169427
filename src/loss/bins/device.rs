//! The bin map from tensor operations on the device: the maps combined where they are, checked,
//! and compacted on the host only where raw ids would waste bins.

use burn::tensor::{Int, Tensor, TensorData};

use super::{BinMap, BinMaps, FalsePositiveVoxels, check_bins, distinct_ids, negative_cell, number, unknown_cell};
use crate::Error;
use crate::loss::sums::{InstanceSumsSpec, id_range};

/// The bin map of `maps` (see [`bin_map`](super::bin_map)); the false-positive components keep
/// their own map, their voxels of an instance or ignored left out.
pub(super) fn bin_map(maps: BinMaps, max_bins: usize, spec: InstanceSumsSpec) -> Result<BinMap, Error> {
    let BinMaps { instances, cells, false_positives, ignore_negative } = maps;
    let statistics = spec.statistics();
    let false_positives = false_positives.map(|map| map.mask_fill(instances.clone().not_equal_elem(0), 0));
    // Ignored voxels go to one more bin, after all others.
    let ignored = ignore_negative.then(|| instances.clone().lower_elem(0));
    let instances = match &ignored {
        Some(ignored) => instances.mask_fill(ignored.clone(), 0),
        None => instances,
    };
    let BinIds { ids, bins: kept, foreground_end } = match cells {
        Some(cells) => voronoi_bin_ids(instances, cells, max_bins, statistics)?,
        None => bin_ids(instances, max_bins, statistics)?,
    };
    let (ids, bins) = match ignored {
        Some(ignored) => (ids.mask_fill(ignored, kept as i64), kept + 1),
        None => (ids, kept),
    };
    let spec = InstanceSumsSpec { bins, ..spec }.with_foreground_end(foreground_end.unwrap_or(kept));
    let false_positives = false_positives.map_or(FalsePositiveVoxels::None, FalsePositiveVoxels::Map);
    Ok(BinMap { ids, kept, spec, false_positives })
}

/// An id map whose ids are in `0..bins` in every row.
#[derive(Debug)]
pub(crate) struct BinIds {
    /// `[rows, voxels]`.
    pub ids: Tensor<2, Int>,
    /// Bins per row.
    pub bins: usize,
    /// Where the target-0 cell bins start ([`voronoi_bin_ids`]); `None` for plain instance ids.
    pub foreground_end: Option<usize>,
}

/// Checks an id map `[rows, voxels]` and makes its ids bin indices.
///
/// Ids are used as they are when the largest is below the number of voxels per row and the bins
/// fit in `max_bins` (one host read of the smallest and largest id). Otherwise the ids of each row
/// are renumbered `1..=count` in increasing order, on the host (one read of the map and one
/// upload), which bounds the bins by the number of voxels: instance ids up to `i64::MAX` with few
/// distinct values cost no more than compact ones. The loss does not depend on the numbering.
///
/// # Errors
/// [`Error::NegativeInstanceId`]; [`Error::TooManyInstances`] when even compact bins
/// (`rows x (1 + instances in the fullest row)`) exceed `max_bins`.
pub(crate) fn bin_ids(ids: Tensor<2, Int>, max_bins: usize, statistics: usize) -> Result<BinIds, Error> {
    let [rows, voxels] = ids.dims();
    let (_, max) = id_range(&ids)?;
    let total = |bins: u128| rows as u128 * bins;
    if (max as u128) < voxels.max(1) as u128 && total(max as u128 + 1) <= max_bins as u128 {
        return Ok(BinIds { ids, bins: max as usize + 1, foreground_end: None });
    }
    let device = ids.device();
    let values = read(ids);
    let width = voxels.max(1);
    let distinct: Vec<Vec<i64>> = values.chunks(width).map(distinct_ids).collect();
    let bins = 1 + distinct.iter().map(Vec::len).max().unwrap_or(0);
    check_bins(rows, bins, max_bins, statistics)?;
    let mut compact = Vec::with_capacity(values.len());
    for (row, distinct) in values.chunks(width).zip(&distinct) {
        // At most `voxels` distinct ids per row: the new ids fit in i32 whenever the map fits in memory.
        compact.extend(row.iter().map(|&id| if id == 0 { 0 } else { number(distinct, id) }));
    }
    let ids = Tensor::from_data(TensorData::new(compact, vec![rows, voxels]), &device);
    Ok(BinIds { ids, bins, foreground_end: None })
}

/// An id map read to the host.
fn read(ids: Tensor<2, Int>) -> Vec<i64> {
    ids.into_data().convert::<i64>().try_to_vec().expect("converted to i64")
}

/// One id map for an instance map and its Voronoi cells (`[rows, voxels]` each): with `M`
/// instance bins, instance `k`'s voxels get bin `k` (target 1) and the background voxels of cell
/// `k` bin `M + k` (target 0, `foreground_end = M + 1`); background voxels of cell 0 stay in bin 0.
///
/// Ids are used as they are when they are below the number of voxels and `2M + 1` bins per row
/// fit in `max_bins` (one host read of each map's extremes); otherwise both maps are renumbered on
/// the host, the cells with the instances' new numbers (a cell naming no instance of its row
/// becomes 0).
///
/// # Errors
/// As [`bin_ids`], plus [`Error::InvalidArgument`] for a negative cell id or a cell id above the
/// largest instance id.
pub(crate) fn voronoi_bin_ids(
    instances: Tensor<2, Int>,
    cells: Tensor<2, Int>,
    max_bins: usize,
    statistics: usize,
) -> Result<BinIds, Error> {
    let [rows, voxels] = instances.dims();
    let (_, max) = id_range(&instances)?;
    let (_, cell_max) = id_range(&cells).map_err(|e| match e {
        Error::NegativeInstanceId { value } => negative_cell(value),
        e => e,
    })?;
    if cell_max > max {
        return Err(unknown_cell(cell_max, max));
    }
    let total = |bins: u128| rows as u128 * bins;
    if (max as u128) < voxels.max(1) as u128 && total(2 * max as u128 + 1) <= max_bins as u128 {
        let background_cell = instances.clone().equal_elem(0).bool_and(cells.clone().greater_elem(0));
        let ids = instances.mask_where(background_cell, cells.add_scalar(max));
        return Ok(BinIds { ids, bins: 2 * max as usize + 1, foreground_end: Some(max as usize + 1) });
    }
    let device = instances.device();
    let (instances, cells) = (read(instances), read(cells));
    let width = voxels.max(1);
    let distinct: Vec<Vec<i64>> = instances.chunks(width).map(distinct_ids).collect();
    let instance_bins = distinct.iter().map(Vec::len).max().unwrap_or(0);
    let bins = 2 * instance_bins + 1;
    check_bins(rows, bins, max_bins, statistics)?;
    let mut compact = Vec::with_capacity(instances.len());
    for ((row, cells), distinct) in instances.chunks(width).zip(cells.chunks(width)).zip(&distinct) {
        compact.extend(row.iter().zip(cells).map(|(&id, &cell)| match (id, cell) {
            (0, 0) => 0,
            (0, cell) => match number(distinct, cell) {
                0 => 0,
                n => instance_bins as i32 + n,
            },
            (id, _) => number(distinct, id),
        }));
    }
    let ids = Tensor::from_data(TensorData::new(compact, vec![rows, voxels]), &device);
    Ok(BinIds { ids, bins, foreground_end: Some(instance_bins + 1) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn ids(values: Vec<i64>, rows: usize) -> Tensor<2, Int> {
        let voxels = values.len() / rows;
        Tensor::from_data(TensorData::new(values, vec![rows, voxels]), (&Device::flex(), burn::tensor::DType::I64))
    }

    fn values(t: Tensor<2, Int>) -> Vec<i64> {
        t.into_data().convert::<i64>().try_to_vec().unwrap()
    }

    #[test]
    fn small_ids_are_kept() {
        let b = bin_ids(ids(vec![0, 2, 2, 1, 0, 2], 2), 1 << 20, 2).unwrap();
        assert_eq!(b.bins, 3);
        assert_eq!(values(b.ids), [0, 2, 2, 1, 0, 2]);
    }

    #[test]
    fn large_ids_are_renumbered_per_row_in_order() {
        let b = bin_ids(ids(vec![0, 1_000_000_000, 7, 7, 5_000_000_000, 0, 0, 9, 9, 0], 2), 1 << 20, 2).unwrap();
        assert_eq!(b.bins, 4);
        assert_eq!(values(b.ids), [0, 2, 1, 1, 3, 0, 0, 1, 1, 0]);
    }

    #[test]
    fn cells_take_the_bins_after_the_instances() {
        // Instances 1 and 3; the background in cells 1 and 3, and one voxel in no cell.
        let b = voronoi_bin_ids(ids(vec![1, 0, 0, 3, 0, 0], 1), ids(vec![1, 1, 3, 3, 3, 0], 1), 1 << 20, 2).unwrap();
        assert_eq!((b.bins, b.foreground_end), (7, Some(4)));
        assert_eq!(values(b.ids), [1, 4, 6, 3, 6, 0]);
        // Renumbered on the host (bins capped): the cells follow the instances' new numbers.
        let b = voronoi_bin_ids(ids(vec![1, 0, 0, 3, 0, 0], 1), ids(vec![1, 1, 3, 3, 3, 0], 1), 6, 2).unwrap();
        assert_eq!((b.bins, b.foreground_end), (5, Some(3)));
        assert_eq!(values(b.ids), [1, 3, 4, 2, 4, 0]);
        let err = voronoi_bin_ids(ids(vec![1, 0], 1), ids(vec![1, 2], 1), 100, 2).unwrap_err();
        assert!(err.to_string().contains("cell id 2 names no instance"), "{err}");
        let err = voronoi_bin_ids(ids(vec![1, 0], 1), ids(vec![1, -1], 1), 100, 2).unwrap_err();
        assert!(err.to_string().contains("negative cell id"), "{err}");
    }

    #[test]
    fn too_many_bins_is_an_error_with_the_memory() {
        // Two rows of four distinct instances: 2 x 5 bins.
        let err = bin_ids(ids(vec![1, 2, 3, 4, 5, 6, 7, 8], 2), 9, 3).unwrap_err();
        assert_eq!(err, Error::TooManyInstances { bins: 10, bytes: 240, limit: 9 });
        assert!(err.to_string().contains("240 bytes"), "{err}");
        // Dense ids that would not fit are compacted first.
        assert_eq!(bin_ids(ids(vec![0, 0, 0, 0, 0, 7, 0, 0, 0, 0], 1), 2, 2).unwrap().bins, 2);
        let err = bin_ids(ids(vec![0, -4, 1, 2], 1), 100, 2).unwrap_err();
        assert_eq!(err, Error::NegativeInstanceId { value: -4 });
    }
}
