//! The bin map built in one host pass over the maps, where they are host memory (flex).
//!
//! Every voxel gets its bin as the [module](super) documentation lays them out; the same pass
//! lists the voxels of the prediction's false-positive components (background voxels only), with
//! each one's component: the loss sums them apart, over those few voxels. Components are numbered
//! `0..` in each row in order of first appearance.

use std::collections::HashMap;

use burn::tensor::{DType, Tensor, TensorData};
use foldhash::fast::FixedState;
use rayon::prelude::*;

use super::{
    BinMap, BinMaps, FalsePositiveVoxels, check_bins, distinct_ids, negative_cell, negative_component, number,
    unknown_cell,
};
use crate::Error;
use crate::backend::HostInts;
use crate::loss::sums::InstanceSumsSpec;
use crate::loss::sums::host::{HostId, TASK_VOXELS, vectorised};

/// The bin map of `maps` (see [`bin_map`](super::bin_map)), from one host pass.
pub(super) fn bin_map(maps: BinMaps, max_bins: usize, spec: InstanceSumsSpec) -> Result<BinMap, Error> {
    let [rows, voxels] = maps.instances.dims();
    let device = maps.instances.device();
    let statistics = spec.statistics();
    let instances = HostInts::read(maps.instances);
    let cells = maps.cells.map(HostInts::read);
    let false_positives = maps.false_positives.map(HostInts::read);
    let all_i32 = [Some(&instances), cells.as_ref(), false_positives.as_ref()]
        .into_iter()
        .flatten()
        .all(|map| map.as_i32().is_some());
    let regions = if all_i32 {
        host_regions(
            &HostMaps {
                instances: instances.as_i32().expect("checked"),
                cells: cells.as_ref().and_then(HostInts::as_i32),
                false_positives: false_positives.as_ref().and_then(HostInts::as_i32),
                ignore_negative: maps.ignore_negative,
            },
            rows,
            voxels,
            max_bins,
            statistics,
        )
    } else {
        let (instances, cells, false_positives) =
            (instances.to_i64(), cells.map(|c| c.to_i64()), false_positives.map(|c| c.to_i64()));
        host_regions(
            &HostMaps {
                instances: &instances,
                cells: cells.as_deref(),
                false_positives: false_positives.as_deref(),
                ignore_negative: maps.ignore_negative,
            },
            rows,
            voxels,
            max_bins,
            statistics,
        )
    }?;
    let HostRegions { ids, bins, kept, foreground_end, components, false_positive_voxels, false_positive_bins } =
        regions;
    let n = false_positive_voxels.len();
    let false_positives = if n > 0 {
        FalsePositiveVoxels::Listed {
            components,
            voxels: Tensor::from_data(TensorData::new(false_positive_voxels, vec![n]), (&device, DType::I64)),
            bins: Tensor::from_data(TensorData::new(false_positive_bins, vec![1, n]), (&device, DType::I32)),
        }
    } else {
        FalsePositiveVoxels::None
    };
    let spec = InstanceSumsSpec { bins, ..spec }.with_foreground_end(foreground_end);
    let ids = Tensor::from_data(TensorData::new(ids, vec![rows, voxels]), (&device, DType::I32));
    Ok(BinMap { ids, kept, spec, false_positives })
}

/// The maps of one evaluation, `[rows, voxels]` each, row-major.
struct HostMaps<'a, I> {
    instances: &'a [I],
    /// Read on background voxels only.
    cells: Option<&'a [I]>,
    /// Read on background voxels only: a component's voxels of an instance (or ignored) are left
    /// out of it.
    false_positives: Option<&'a [I]>,
    /// Whether negative instance ids mark ignored voxels (else they are an error).
    ignore_negative: bool,
}

/// The bin map and the layout of its bins (see the [module](super) documentation), and the
/// false-positive voxels.
#[derive(Debug, PartialEq)]
struct HostRegions {
    /// `[rows, voxels]`, in `0..bins`.
    ids: Vec<i32>,
    /// Bins per row.
    bins: usize,
    /// The bins per row the loss keeps: background, instances and cells.
    kept: usize,
    /// `M + 1`: where the instances' bins end.
    foreground_end: usize,
    /// False-positive components per row, `J` (the most any row has).
    components: usize,
    /// The false-positive voxels, as indices into the `[rows, voxels]` map, row by row.
    false_positive_voxels: Vec<i64>,
    /// The bin of each: `row * J + j` for the row's component `j`.
    false_positive_bins: Vec<i32>,
}

/// The bins of `maps` (`rows` rows of `voxels` voxels).
///
/// # Errors
/// [`Error::NegativeInstanceId`] (without `ignore_negative`); [`Error::InvalidArgument`] for a
/// negative cell or component id, or a cell id above the largest instance id;
/// [`Error::TooManyInstances`] when the bins exceed `max_bins` (or `i32` indices).
fn host_regions<I: HostId>(
    maps: &HostMaps<'_, I>,
    rows: usize,
    voxels: usize,
    max_bins: usize,
    statistics: usize,
) -> Result<HostRegions, Error> {
    let voxels = voxels.max(1);
    let tasks = tasks(rows, voxels);
    // Tasks per row (every row is cut alike).
    let chunk = TASK_VOXELS.min(voxels);
    let per_row = voxels.div_ceil(chunk);
    let scans: Vec<Scan> = tasks
        .par_iter()
        .map(|&(_, range)| {
            vectorised(
                #[inline(always)]
                || Scan::of(maps, range),
            )
        })
        .collect();
    let total = scans.iter().fold(Scan::default(), |a, b| a.merge(b));
    if total.instance_min < 0 && !maps.ignore_negative {
        return Err(Error::NegativeInstanceId { value: total.instance_min });
    }
    if total.component_min < 0 {
        return Err(negative_component(total.component_min));
    }
    let instance_max = total.instance_max.max(0);
    let cell_bins = usize::from(maps.cells.is_some());
    let ignored = usize::from(maps.ignore_negative);
    let bins_of = |m: u128| 1 + m * (1 + cell_bins as u128) + ignored as u128;
    let fits = |bins: u128| bins * rows as u128 <= max_bins as u128 && bins <= i32::MAX as u128;
    // Instance ids as they are, or each row's renumbered.
    let numbering = if (instance_max as u128) < voxels as u128 && fits(bins_of(instance_max as u128)) {
        Numbering::Direct
    } else {
        let distinct: Vec<Vec<i64>> = maps.instances.par_chunks(voxels).map(row_distinct).collect();
        Numbering::Compact(distinct)
    };
    let m = match &numbering {
        Numbering::Direct => instance_max as usize,
        Numbering::Compact(distinct) => distinct.iter().map(Vec::len).max().unwrap_or(0),
    };
    let kept = 1 + m * (1 + cell_bins);
    let bins = kept + ignored;
    check_bins(rows, bins, max_bins, statistics)?;
    if bins > i32::MAX as usize {
        return Err(Error::TooManyInstances {
            bins: bins as u128,
            bytes: bins as u128 * statistics as u128 * 8,
            limit: i32::MAX as u128,
        });
    }
    let (false_positive_voxels, false_positive_bins, components) = false_positive_bins(&tasks, &scans, rows, per_row);
    check_bins(rows, components, max_bins, 3)?;
    let mut ids = vec![0i32; rows * voxels];
    let plan = Plan { numbering: &numbering, m, ignored_bin: kept as i32 };
    // The same tasks as the scan's, in its order.
    let (cell_min, cell_max) = ids
        .par_chunks_mut(voxels)
        .enumerate()
        .flat_map(|(row, out)| out.par_chunks_mut(chunk).enumerate().map(move |(i, out)| (row * per_row + i, out)))
        .map(|(task, out)| {
            let (row, range) = tasks[task];
            vectorised(
                #[inline(always)]
                || plan.write(maps, row, range, out),
            )
        })
        .reduce(|| (0, 0), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    // The cells, read by the second pass.
    if cell_min < 0 {
        return Err(negative_cell(cell_min));
    }
    if cell_max > instance_max {
        return Err(unknown_cell(cell_max, instance_max));
    }
    Ok(HostRegions { ids, bins, kept, foreground_end: m + 1, components, false_positive_voxels, false_positive_bins })
}

/// The false-positive voxels of the scans' runs, as indices into the `[rows, voxels]` map, their
/// bins (`row * J + j`, each row's components numbered `0..` in order of first appearance) and
/// `J`, the most components any row has.
fn false_positive_bins(
    tasks: &[(usize, (usize, usize))],
    scans: &[Scan],
    rows: usize,
    per_row: usize,
) -> (Vec<i64>, Vec<i32>, usize) {
    // foldhash's fixed seed: component ids are the caller's, not an attacker's.
    let mut numbers: Vec<HashMap<i64, i32, FixedState>> = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut number = HashMap::default();
        let mut last = None;
        for run in scans[row * per_row..(row + 1) * per_row].iter().flat_map(|scan| &scan.false_positives) {
            if last != Some(run.component) {
                let next = number.len() as i32;
                number.entry(run.component).or_insert(next);
                last = Some(run.component);
            }
        }
        numbers.push(number);
    }
    let components = numbers.iter().map(HashMap::len).max().unwrap_or(0);
    let (mut voxels, mut bins) = (Vec::new(), Vec::new());
    for (&(row, (start, _)), scan) in tasks.iter().zip(scans) {
        let mut last = (0, 0);
        for run in &scan.false_positives {
            if last.0 != run.component {
                last = (run.component, row as i32 * components as i32 + numbers[row][&run.component]);
            }
            voxels.extend((start + run.start..start + run.end).map(|v| v as i64));
            bins.extend(std::iter::repeat_n(last.1, run.end - run.start));
        }
    }
    (voxels, bins, components)
}

/// The tasks of a pass: `(row, voxel range)`, a row cut into stretches of [`TASK_VOXELS`] voxels.
fn tasks(rows: usize, voxels: usize) -> Vec<(usize, (usize, usize))> {
    let chunk = TASK_VOXELS.min(voxels);
    (0..rows)
        .flat_map(|row| {
            (0..voxels)
                .step_by(chunk)
                .map(move |start| (row, (row * voxels + start, row * voxels + (start + chunk).min(voxels))))
        })
        .collect()
}

/// The positive ids of a row, sorted, each once.
fn row_distinct<I: HostId>(row: &[I]) -> Vec<i64> {
    let row: Vec<i64> = row.iter().map(|&id| id.into()).collect();
    distinct_ids(&row)
}

enum Numbering {
    Direct,
    /// Each row's distinct instance ids, sorted.
    Compact(Vec<Vec<i64>>),
}

/// The extremes of the ids of a stretch (0 included), and its false-positive voxels.
#[derive(Default)]
struct Scan {
    instance_min: i64,
    instance_max: i64,
    component_min: i64,
    /// The background voxels of a component, in runs.
    false_positives: Vec<Run>,
}

/// A run of voxels of a stretch in one false-positive component.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Offsets in the stretch.
    start: usize,
    end: usize,
    component: i64,
}

/// Voxels per block of the search for false-positive voxels: a block without any is passed over
/// after one vectorised test.
const BLOCK: usize = 64;

/// The smallest and largest id of a stretch, 0 included (one vectorised loop).
#[inline(always)]
fn extremes<I: HostId>(ids: &[I]) -> (i64, i64) {
    let (min, max) = ids.iter().fold((I::default(), I::default()), |(min, max), &id| (min.min(id), max.max(id)));
    (min.into(), max.into())
}

impl Scan {
    #[inline(always)]
    fn of<I: HostId>(maps: &HostMaps<'_, I>, (start, end): (usize, usize)) -> Self {
        let instances = &maps.instances[start..end];
        let (instance_min, instance_max) = extremes(instances);
        let mut scan = Self { instance_min, instance_max, ..Self::default() };
        if let Some(components) = maps.false_positives {
            let zero = I::default();
            let blocks = instances.chunks(BLOCK).zip(components[start..end].chunks(BLOCK));
            for (block, (ids, components)) in blocks.enumerate() {
                // One vectorised test first: most blocks hold no component.
                let (min, max) = extremes(components);
                scan.component_min = scan.component_min.min(min);
                if max == 0 {
                    continue;
                }
                for (v, (&id, &component)) in ids.iter().zip(components).enumerate() {
                    if component > zero && id == zero {
                        let (v, component) = (block * BLOCK + v, component.into());
                        match scan.false_positives.last_mut() {
                            Some(run) if run.end == v && run.component == component => run.end += 1,
                            _ => scan.false_positives.push(Run { start: v, end: v + 1, component }),
                        }
                    }
                }
            }
        }
        scan
    }

    fn merge(self, other: &Self) -> Self {
        Self {
            instance_min: self.instance_min.min(other.instance_min),
            instance_max: self.instance_max.max(other.instance_max),
            component_min: self.component_min.min(other.component_min),
            false_positives: Vec::new(),
        }
    }
}

/// How the second pass writes bins.
struct Plan<'a> {
    numbering: &'a Numbering,
    m: usize,
    ignored_bin: i32,
}

impl Plan<'_> {
    /// The bins of the voxels `range` of `row` into `out`; returns the extremes of the
    /// stretch's cells.
    #[inline(always)]
    fn write<I: HostId>(
        &self,
        maps: &HostMaps<'_, I>,
        row: usize,
        (start, end): (usize, usize),
        out: &mut [i32],
    ) -> (i64, i64) {
        let instances = &maps.instances[start..end];
        let cells = maps.cells.map(|cells| &cells[start..end]);
        let (zero, m, ignored) = (I::default(), I::from_i64(self.m as i64), I::from_i64(self.ignored_bin.into()));
        // Instances, cells and ignored voxels; the ids as they are in selects without branches
        // (one vectorised loop), renumbered ones through a search.
        match (self.numbering, cells) {
            (Numbering::Direct, Some(cells)) => {
                for ((out, &id), &cell) in out.iter_mut().zip(instances).zip(cells) {
                    let background = if cell > zero { m + cell } else { zero };
                    let bin = if id > zero {
                        id
                    } else if id < zero {
                        ignored
                    } else {
                        background
                    };
                    *out = bin.into() as i32;
                }
                extremes(cells)
            }
            (Numbering::Direct, None) => {
                for (out, &id) in out.iter_mut().zip(instances) {
                    *out = (if id < zero { ignored } else { id }).into() as i32;
                }
                (0, 0)
            }
            (Numbering::Compact(distinct), cells) => {
                let distinct = &distinct[row];
                let cell = |cell: i64| match number(distinct, cell) {
                    0 => 0,
                    n => self.m as i32 + n,
                };
                for (v, (out, &id)) in out.iter_mut().zip(instances).enumerate() {
                    *out = match id.into() {
                        0 => cells.map_or(0, |cells| cell(cells[v].into())),
                        id if id < 0 => self.ignored_bin,
                        id => number(distinct, id),
                    };
                }
                cells.map_or((0, 0), extremes)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(instances: &[i32], cells: Option<&[i32]>, components: Option<&[i32]>, rows: usize) -> HostRegions {
        let maps = HostMaps { instances, cells, false_positives: components, ignore_negative: true };
        host_regions(&maps, rows, instances.len() / rows, 1 << 20, 3).unwrap()
    }

    #[test]
    fn instances_cells_and_ignored_voxels_take_their_bins() {
        // Instances 1 and 2 (M = 2), their cells, one voxel ignored, one in no cell.
        let r = regions(&[1, 0, 0, 2, 0, -1, 0], Some(&[1, 1, 2, 2, 2, 2, 0]), None, 1);
        assert_eq!((r.bins, r.kept, r.foreground_end, r.components), (6, 5, 3, 0));
        assert_eq!(r.ids, [1, 3, 4, 2, 4, 5, 0]);
        // Without cells: the background is bin 0.
        let r = regions(&[1, 0, 0, 2, 0, -1, 0], None, None, 1);
        assert_eq!((r.bins, r.kept, r.foreground_end), (4, 3, 3));
        assert_eq!(r.ids, [1, 0, 0, 2, 0, 3, 0]);
    }

    #[test]
    fn false_positive_voxels_are_listed_with_their_components() {
        // Two rows. Row 0: component 7 straddles cells 1 and 2, component 3 lies in cell 2; a
        // component voxel on an instance or ignored stays there.
        let instances = [1, 0, 0, 0, 2, 0, -1, /**/ 0, 0, 1, 0, 0, 0, 0];
        let cells = [1, 1, 1, 2, 2, 2, 2, /**/ 1, 1, 1, 1, 1, 1, 0];
        let components = [7, 7, 7, 7, 0, 3, 3, /**/ 0, 5, 0, 0, 0, 5, 5];
        let r = regions(&instances, Some(&cells), Some(&components), 2);
        // M = 2; kept bins 0..5, the ignored bin 5; the components keep their cells' bins.
        assert_eq!((r.kept, r.bins, r.components), (5, 6, 2));
        assert_eq!(&r.ids[..7], [1, 3, 3, 4, 2, 4, 5]);
        assert_eq!(&r.ids[7..], [3, 3, 1, 3, 3, 3, 0]);
        // Row 0: component 7 is j = 0, component 3 j = 1; row 1: component 5 is j = 0, bin 2.
        assert_eq!(r.false_positive_voxels, [1, 2, 3, 5, 8, 12, 13]);
        assert_eq!(r.false_positive_bins, [0, 0, 0, 1, 2, 2, 2]);
    }

    #[test]
    fn large_ids_are_renumbered_with_their_cells() {
        let instances = [5_000_000, 0, 0, 9, 0];
        let cells = [5_000_000, 5_000_000, 9, 9, 9];
        let components = [0, 4, 0, 0, 0];
        let maps = HostMaps {
            instances: &instances[..],
            cells: Some(&cells[..]),
            false_positives: Some(&components[..]),
            ignore_negative: false,
        };
        let r = host_regions(&maps, 1, 5, 1 << 20, 3).unwrap();
        assert_eq!((r.kept, r.foreground_end, r.components), (5, 3, 1));
        assert_eq!(r.ids, [2, 4, 3, 1, 3]);
        assert_eq!((r.false_positive_voxels, r.false_positive_bins), (vec![1], vec![0]));
    }

    #[test]
    fn bad_ids_are_clear_errors() {
        let check = |instances: &[i64], cells: &[i64], components: &[i64], expected: &str| {
            let maps =
                HostMaps { instances, cells: Some(cells), false_positives: Some(components), ignore_negative: false };
            let err = host_regions(&maps, 1, instances.len(), 1 << 20, 3).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        };
        check(&[1, -3], &[1, 1], &[0, 0], "-3");
        check(&[1, 0], &[1, -1], &[0, 0], "negative cell id -1");
        check(&[1, 0], &[1, 2], &[0, 0], "cell id 2 names no instance");
        check(&[1, 0], &[1, 1], &[0, -2], "negative false-positive component id -2");
        let maps =
            HostMaps { instances: &[1i32, 2, 3, 4][..], cells: None, false_positives: None, ignore_negative: false };
        let err = host_regions(&maps, 2, 2, 5, 2).unwrap_err();
        assert!(matches!(err, Error::TooManyInstances { .. }), "{err}");
    }
}
