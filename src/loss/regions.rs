//! The regions of one loss evaluation: one bin map for the instances, their Voronoi cells and the
//! ignored voxels, the spec of its sums, and the prediction's false-positive components.
//!
//! On flex, where a tensor's data are host memory, one host pass builds the map
//! ([`host_regions`](super::host_regions)) and lists the false-positive voxels: their sums come
//! from those few voxels alone. Elsewhere tensor operations combine the maps on the device
//! ([`ids`](super::ids)) and the components are summed in a pass of their own over every voxel.

use burn::tensor::{Int, Tensor};

use super::ids::{BinIds, bin_ids, negative_component, voronoi_bin_ids};
use super::sums::{Engine, InstanceSumsSpec, Statistic, SumInput, sums_unchecked};
use crate::Error;

/// The maps the regions come from, `[rows, voxels]` each.
pub(crate) struct RegionMaps {
    /// Instance ids (negative: ignored voxels with `ignore_negative`, else an error).
    pub instances: Tensor<2, Int>,
    /// The instances' Voronoi cells, for [`Partition::Voronoi`](super::Partition::Voronoi) only.
    pub cells: Option<Tensor<2, Int>>,
    /// The false-positive components, when the prediction term is on.
    pub false_positives: Option<Tensor<2, Int>>,
    pub ignore_negative: bool,
}

/// The bin map of an evaluation: in every row bin 0 is the background, bins
/// `1..foreground_end` the instances, bins `foreground_end..kept` the background of each
/// instance's cell; bins from `kept` on (ignored voxels) are summed but not kept.
pub(crate) struct Regions {
    /// `[rows, voxels]`, in `0..spec.bins`.
    pub ids: Tensor<2, Int>,
    pub kept: usize,
    pub false_positives: FalsePositiveBins,
}

/// Where the sums of the false-positive components come from.
// One value per evaluation, moved once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum FalsePositiveBins {
    /// No component (or the term is off).
    None,
    /// Their voxels, listed (flex).
    #[cfg(feature = "flex")]
    Voxels(FalsePositiveVoxels),
    /// A map of their own, background voxels only, summed in a pass of its own.
    Map(Tensor<2, Int>),
}

/// The voxels of the false-positive components and their bins.
#[cfg(feature = "flex")]
pub(crate) struct FalsePositiveVoxels {
    /// Components per row, `J`.
    components: usize,
    /// `[n]`: indices into the `[rows, voxels]` outputs.
    voxels: Tensor<1, Int>,
    /// `[1, n]`: `row * J + j` for the row's component `j`.
    bins: Tensor<2, Int>,
}

impl FalsePositiveBins {
    /// The sums of `p`, `p^2` and the voxel count of every component, `[rows, components]` each,
    /// from the outputs `values` (`[rows, voxels]`, as the main sums take them); `None` without
    /// components.
    ///
    /// # Errors
    /// For a map of its own: [`Error::InvalidArgument`] for a negative component id,
    /// [`Error::TooManyInstances`].
    pub(crate) fn sums(
        self,
        values: Tensor<2>,
        input: SumInput,
        engine: Engine,
        max_bins: usize,
    ) -> Result<Option<[Tensor<2>; 3]>, Error> {
        let [rows, _] = values.dims();
        // The sums' rows, their first component bin, the components per row of the loss.
        let (values, ids, spec, first, components) = match self {
            Self::None => return Ok(None),
            // One pass over the listed voxels alone.
            #[cfg(feature = "flex")]
            Self::Voxels(FalsePositiveVoxels { components, voxels, bins }) => {
                let n = voxels.dims()[0];
                let picked = values.reshape([-1]).select(0, voxels).reshape([1, n]);
                (picked, bins, InstanceSumsSpec::new(input, rows * components), 0, components)
            }
            // One pass over every voxel; bin 0 (most of the volume) is skipped.
            Self::Map(map) => {
                let ids = bin_ids(map, max_bins, 3).map_err(|e| match e {
                    Error::NegativeInstanceId { value } => negative_component(value),
                    e => e,
                })?;
                if ids.bins == 1 {
                    return Ok(None);
                }
                let spec = InstanceSumsSpec::new(input, ids.bins).with_foreground_end(1).with_skip_background(true);
                (values, ids.ids, spec, 1, ids.bins - 1)
            }
        };
        // Every component has target 0 (no cross-entropy is summed).
        let spec = spec.with_squares(true);
        let sums = sums_unchecked(values, ids, spec, engine);
        let [sum_rows, _, bins] = sums.dims();
        Ok(Some([Statistic::Probability, Statistic::Square, Statistic::Count].map(|s| {
            let i = spec.index(s).expect("summed");
            sums.clone().slice([0..sum_rows, i..i + 1, first..bins]).reshape([rows, components])
        })))
    }
}

/// The regions of `maps` and the spec of their sums: `spec` (its input and statistics) with the
/// bins and the targets' end.
///
/// # Errors
/// [`Error::NegativeInstanceId`], [`Error::TooManyInstances`], [`Error::InvalidArgument`] for
/// negative or unknown cell ids and negative component ids.
pub(crate) fn regions(
    maps: RegionMaps,
    max_bins: usize,
    spec: InstanceSumsSpec,
) -> Result<(Regions, InstanceSumsSpec), Error> {
    #[cfg(feature = "flex")]
    if super::sums::is_flex(&maps.instances.device())
        && (maps.cells.is_some() || maps.false_positives.is_some() || maps.ignore_negative)
    {
        return host::regions(maps, max_bins, spec);
    }
    on_device(maps, max_bins, spec)
}

/// The regions from tensor operations on the device.
fn on_device(maps: RegionMaps, max_bins: usize, spec: InstanceSumsSpec) -> Result<(Regions, InstanceSumsSpec), Error> {
    let RegionMaps { instances, cells, false_positives, ignore_negative } = maps;
    let statistics = spec.statistics();
    // The components' voxels of an instance or ignored are left out of them.
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
    let false_positives = false_positives.map_or(FalsePositiveBins::None, FalsePositiveBins::Map);
    Ok((Regions { ids, kept, false_positives }, spec))
}

/// The regions from one host pass (flex).
#[cfg(feature = "flex")]
mod host {
    use burn::backend::flex::FlexTensor;
    use burn::backend::{BackendTensor, DispatchTensorKind};
    use burn::tensor::{DType, Int, Tensor, TensorData};

    use super::{FalsePositiveBins, FalsePositiveVoxels, RegionMaps, Regions};
    use crate::Error;
    use crate::loss::host_regions::{HostMaps, HostRegions, host_regions};
    use crate::loss::sums::InstanceSumsSpec;

    pub(super) fn regions(
        maps: RegionMaps,
        max_bins: usize,
        spec: InstanceSumsSpec,
    ) -> Result<(Regions, InstanceSumsSpec), Error> {
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
            FalsePositiveBins::Voxels(FalsePositiveVoxels {
                components,
                voxels: Tensor::from_data(TensorData::new(false_positive_voxels, vec![n]), (&device, DType::I64)),
                bins: Tensor::from_data(TensorData::new(false_positive_bins, vec![1, n]), (&device, DType::I32)),
            })
        } else {
            FalsePositiveBins::None
        };
        let spec = InstanceSumsSpec { bins, ..spec }.with_foreground_end(foreground_end);
        let ids = Tensor::from_data(TensorData::new(ids, vec![rows, voxels]), (&device, DType::I32));
        Ok((Regions { ids, kept, false_positives }, spec))
    }

    /// An id map on the host: flex's own `i32` data, or a copy.
    enum HostInts {
        Flex(FlexTensor),
        Data(TensorData),
    }

    impl HostInts {
        fn read(map: Tensor<2, Int>) -> Self {
            match flex_primitive(map.clone()) {
                Some(flex) if flex.as_slice::<i32>().is_some() => Self::Flex(flex),
                _ => Self::Data(map.into_data()),
            }
        }

        fn as_i32(&self) -> Option<&[i32]> {
            match self {
                Self::Flex(flex) => flex.as_slice(),
                Self::Data(data) => data.as_slice().ok(),
            }
        }

        fn to_i64(&self) -> Vec<i64> {
            match self {
                Self::Flex(flex) => flex.as_slice::<i32>().expect("i32").iter().map(|&id| id.into()).collect(),
                Self::Data(data) => data.iter::<i64>().collect(),
            }
        }
    }

    /// The flex tensor behind an int tensor (on a flex device, with or without autodiff).
    fn flex_primitive(map: Tensor<2, Int>) -> Option<FlexTensor> {
        let kind = match map.into_dispatch().kind {
            DispatchTensorKind::Autodiff(inner) => *inner,
            kind => kind,
        };
        #[allow(unreachable_patterns)]
        match kind {
            DispatchTensorKind::Flex(BackendTensor::Int(flex)) => Some(flex),
            _ => None,
        }
    }
}
