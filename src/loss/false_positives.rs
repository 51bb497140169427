//! The false-positive term, from the prediction's components to its score: the connected
//! components of the thresholded outputs that hold no ground-truth voxel
//! ([`false_positive_components`]), their sums (over the voxels the [bin map](super::bins) found
//! them on), and the term `sum(p sg(p)) / sg(sum p)` of each, averaged per `(element, channel)`.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Int, Tensor};

use super::activation::Activation;
use super::bins::{FalsePositiveVoxels, bin_ids, negative_component};
use super::reduce::region_means;
use super::sums::{Engine, InstanceSumsSpec, Statistic, SumInput, sums_unchecked};
use super::targets::check_shapes;
use crate::Error;
use crate::components::Connectivity;
use crate::components::tensor::{Grid, components_apart, label_unchecked};

/// The connected components of the thresholded prediction that touch no ground-truth instance,
/// numbered `1..=n` in every `(element, channel)` slice (0 elsewhere); no gradient flows through
/// them.
///
/// - `outputs`: `[B, C, spatial..]` (D = 3, 4 or 5), turned into probabilities by `activation`;
///   a voxel is predicted where its probability is above `threshold`.
/// - `instances`: the ground truth, same shape (0 is background; voxels of negative id, ignored
///   by [`BlobLossConfig::ignore_negative_ids`](super::BlobLossConfig::ignore_negative_ids), are
///   never part of a component).
///
/// Components are taken with full connectivity (8 neighbours in 2D, 26 in 3D, as BiCC); a
/// component with any voxel of any instance of its channel is no false positive. The components
/// are found where the tensors live (the host code on flex, the kernels of
/// [`label_tensor`](crate::components::label_tensor) on wgpu and cuda): nothing is read back.
/// No gradient flows through them; call it once per step.
///
/// # Errors
/// [`Error::UnsupportedRank`], [`Error::ShapeMismatch`], [`Error::InvalidArgument`] for a
/// threshold outside `(0, 1)` or a shape with a zero-sized axis.
///
/// # Example
/// ```
/// use blob_loss::loss::{false_positive_components, Activation};
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::from_floats([[[[5.0, 5.0, -5.0, 5.0, -5.0, 5.0]]]], &device);
/// let instances = Tensor::<4, Int>::from_ints([[[[1, 0, 0, 0, 0, 0]]]], &device);
/// let fp = false_positive_components(logits, instances, Activation::Sigmoid, 0.5)?;
/// // The first component holds instance 1; the two others are false positives.
/// assert_eq!(fp.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), [0, 0, 0, 1, 0, 2]);
/// # Ok::<(), blob_loss::Error>(())
/// ```
pub fn false_positive_components<const D: usize>(
    outputs: Tensor<D>,
    instances: Tensor<D, Int>,
    activation: Activation,
    threshold: f64,
) -> Result<Tensor<D, Int>, Error> {
    let dims = outputs.dims();
    check_shapes(dims, &[("instances vs outputs", Some(&instances))])?;
    if !(threshold > 0.0 && threshold < 1.0) {
        return Err(Error::InvalidArgument(format!("the prediction threshold must be in (0, 1), got {threshold}")));
    }
    let outputs = outputs.detach();
    let predicted: Tensor<D, Bool> = match activation {
        // sigmoid(x) > t  <=>  x > ln(t / (1 - t)), without computing the sigmoid.
        Activation::Sigmoid => outputs.greater_elem((threshold / (1.0 - threshold)).ln()),
        Activation::Softmax => softmax(outputs, 1).greater_elem(threshold),
        Activation::None => outputs.greater_elem(threshold),
    };
    // Every map as a volume (one or two spatial axes: depth and height 1, where 26-connectivity
    // is 8-connectivity in a plane and adjacency on a line).
    let mut volume = [dims[0], dims[1], 1, 1, 1];
    volume[7 - D..].copy_from_slice(&dims[2..]);
    let grid = Grid::of(&volume, "outputs")?;
    let mask = predicted.int().mask_fill(instances.clone().lower_elem(0), 0).reshape(volume);
    let components = label_unchecked(mask, Connectivity::TwentySix, grid);
    Ok(components_apart(components, instances.reshape(volume), grid).reshape(dims))
}

/// The false-positive term of every `(element, channel)`, `[B, C]`, and its number of components,
/// `[B, C]`; `None` when no row has a component.
///
/// `values` are the outputs as the main sums take them (`[rows, voxels]`, with `input`); every
/// component `j` gets `sum(p sg(p)) / sg(sum p)` over its voxels (`sg`: no gradient), whose
/// gradient pushes each voxel down by `p / sum(p)`, the same pull for a 5-voxel and a 5,000-voxel
/// false positive.
///
/// # Errors
/// For a map of its own: [`Error::InvalidArgument`] for a negative component id,
/// [`Error::TooManyInstances`].
pub(crate) fn false_positive_rows(
    voxels: FalsePositiveVoxels,
    values: Tensor<2>,
    input: SumInput,
    engine: Engine,
    max_bins: usize,
    [batch, channels]: [usize; 2],
) -> Result<Option<(Tensor<2>, Tensor<2>)>, Error> {
    let Some([p, p2, size]) = component_sums(voxels, values, input, engine, max_bins)? else {
        return Ok(None);
    };
    // d/dp of p^2 / (2 sg(sum p)) is p / sum p; its detached copy doubles the value to
    // sum(p^2) / sum(p).
    let half = p2 / (p.detach().clamp_min(f64::from(f32::MIN_POSITIVE)) * 2.0);
    let per_component = half.clone() + half.detach();
    Ok(Some(region_means(per_component, size, batch, channels)))
}

/// The sums of `p`, `p^2` and the voxel count of every component, `[rows, components]` each;
/// `None` without components.
fn component_sums(
    voxels: FalsePositiveVoxels,
    values: Tensor<2>,
    input: SumInput,
    engine: Engine,
    max_bins: usize,
) -> Result<Option<[Tensor<2>; 3]>, Error> {
    let [rows, _] = values.dims();
    // The sums' rows, their first component bin, the components per row.
    let (values, ids, spec, first, components) = match voxels {
        FalsePositiveVoxels::None => return Ok(None),
        // One pass over the listed voxels alone.
        #[cfg(feature = "flex")]
        FalsePositiveVoxels::Listed { components, voxels, bins } => {
            let n = voxels.dims()[0];
            let picked = values.reshape([-1]).select(0, voxels).reshape([1, n]);
            (picked, bins, InstanceSumsSpec::new(input, rows * components), 0, components)
        }
        // One pass over every voxel; bin 0 (most of the volume) is skipped.
        FalsePositiveVoxels::Map(map) => {
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
