//! What the loss compares the outputs with: the instance map, and the regions some losses need.

use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::Error;
use crate::loss::sums::device::int64_kernels;

/// The targets of [`BlobLoss`](super::BlobLoss): the ground-truth instance map, plus the Voronoi
/// cells of [`Partition::Voronoi`](super::Partition) and, optionally, the false-positive
/// components of the prediction branch.
///
/// Every map has the outputs' shape `[B, C, spatial..]`. A plain instance map converts into
/// targets (`From`), so `loss.forward(outputs, instances)` works as it is.
///
/// # Example
/// ```
/// use blob_loss::components::{label_batch, voronoi_batch, Connectivity};
/// use blob_loss::loss::{instances_to_tensor, BlobLossConfig, LossTargets, Partition};
/// use burn::tensor::{Device, Tensor};
/// use ndarray::Array4;
///
/// let device = Device::flex();
/// let mut masks = Array4::<u8>::zeros((1, 1, 8, 8));
/// masks[[0, 0, 1, 1]] = 1;
/// masks[[0, 0, 6, 6]] = 1;
/// let labels = label_batch(masks.view(), Connectivity::Eight)?.labels;
/// let cells = voronoi_batch(labels.view(), &[1.0, 1.0])?;
/// let targets = LossTargets::new(instances_to_tensor(labels.view(), &device)?)
///     .with_cells(instances_to_tensor(cells.view(), &device)?);
/// let loss = BlobLossConfig::new().with_partition(Partition::Voronoi).init();
/// let value: f32 = loss.try_forward(Tensor::<4>::zeros([1, 1, 8, 8], &device), targets)?.into_scalar();
/// assert!(value.is_finite());
/// # Ok::<(), blob_loss::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LossTargets<const D: usize> {
    /// Instance ids: 0 is background, each positive id one instance of its channel.
    pub instances: Tensor<D, Int>,
    /// The Voronoi cell of every voxel ([`voronoi_batch`](crate::components::voronoi_batch) of
    /// the instance map: the id of the nearest instance, in the instances' numbering; 0 puts a
    /// voxel in no cell). Read on background voxels only. Needed by
    /// [`Partition::Voronoi`](super::Partition::Voronoi).
    pub cells: Option<Tensor<D, Int>>,
    /// The false-positive components of the prediction
    /// ([`false_positive_components`](super::false_positive_components): positive ids, 0
    /// elsewhere), for the prediction term. Read on background voxels only: voxels of an
    /// instance, or ignored ones, are left out of the components. When absent and the term is on,
    /// the loss finds them itself from the outputs.
    pub false_positives: Option<Tensor<D, Int>>,
}

impl<const D: usize> LossTargets<D> {
    /// Targets of an instance map alone.
    pub fn new(instances: Tensor<D, Int>) -> Self {
        Self { instances, cells: None, false_positives: None }
    }

    /// With the Voronoi cells of the instances.
    pub fn with_cells(self, cells: Tensor<D, Int>) -> Self {
        Self { cells: Some(cells), ..self }
    }

    /// With the false-positive components of the prediction.
    pub fn with_false_positives(self, components: Tensor<D, Int>) -> Self {
        Self { false_positives: Some(components), ..self }
    }
}

impl<const D: usize> From<Tensor<D, Int>> for LossTargets<D> {
    fn from(instances: Tensor<D, Int>) -> Self {
        Self::new(instances)
    }
}

/// Checks outputs of shape `dims` and the maps given beside them: rank 3 to 5, every map of the
/// outputs' shape, no zero-sized axis (burn reads a 0 in a reshape target as "keep this axis").
pub(crate) fn check_shapes<const D: usize>(
    dims: [usize; D],
    maps: &[(&'static str, Option<&Tensor<D, Int>>)],
) -> Result<(), Error> {
    if !(3..=5).contains(&D) {
        return Err(Error::UnsupportedRank {
            what: "outputs",
            ndim: D,
            expected: "3, 4 or 5 ([B, C, spatial..] with 1 to 3 spatial axes)",
        });
    }
    for &(what, map) in maps {
        if let Some(map) = map.filter(|map| map.dims() != dims) {
            return Err(Error::ShapeMismatch { what, expected: dims.to_vec(), found: map.dims().to_vec() });
        }
    }
    if dims.contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "outputs of shape {dims:?} have no voxels: the loss needs at least one element, channel and voxel"
        )));
    }
    Ok(())
}

impl<const D: usize> LossTargets<D> {
    /// The maps in a dtype the device's kernels take: `i64` maps on a device without 64-bit
    /// integer kernels (wgpu without `SHADER_INT64`) are read once and uploaded as `i32`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an id outside the `i32` range on such a device.
    pub(crate) fn in_kernel_ints(self) -> Result<Self, Error> {
        let narrow = |map: Tensor<D, Int>, what: &str| -> Result<Tensor<D, Int>, Error> {
            if map.dtype() != DType::I64 || int64_kernels(&map.device()) {
                return Ok(map);
            }
            let (device, shape) = (map.device(), map.dims().to_vec());
            let values: Vec<i64> = map.into_data().convert::<i64>().try_to_vec().expect("converted to i64");
            let narrow = values.iter().map(|&id| i32::try_from(id)).collect::<Result<Vec<i32>, _>>().map_err(|_| {
                let id = values.iter().find(|&&id| i32::try_from(id).is_err()).copied().unwrap_or_default();
                Error::InvalidArgument(format!(
                    "{what} id {id} is outside the i32 range, and this device has no 64-bit integer \
                     kernels (wgpu without SHADER_INT64): renumber the ids from 1 (components::label does)"
                ))
            })?;
            Ok(Tensor::from_data(TensorData::new(narrow, shape), (&device, DType::I32)))
        };
        Ok(Self {
            instances: narrow(self.instances, "instance")?,
            cells: self.cells.map(|map| narrow(map, "cell")).transpose()?,
            false_positives: self.false_positives.map(|map| narrow(map, "false-positive component")).transpose()?,
        })
    }
}
