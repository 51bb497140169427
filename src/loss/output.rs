//! What the loss returns: the total and its parts, or the terms before the means.

use burn::tensor::Tensor;

/// The blob loss, its unweighted parts and the count behind the blob mean.
///
/// All three losses are differentiable: backpropagate `total`, or any weighted combination of
/// `global` and `blob` (a schedule of the weights, a warm-up).
///
/// `global` is a mean over every `(element, channel)`, `blob` a mean over the batch elements that
/// have instances, [`elements_with_instances`](Self::elements_with_instances) of them. To get
/// the gradient of a whole batch from shards of it (data-parallel training, gradient
/// accumulation), weight each shard's parts by its share of those counts and sum the shards'
/// gradients: `global_weight * global * rows_k / rows + blob_weight * blob * n_k / n`, where
/// `rows_k` and `n_k` are the shard's, `rows` and `n` the whole batch's (`tests/multi_device.rs`
/// checks it).
///
/// # Example
/// ```
/// use blob_loss::loss::BlobLossConfig;
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::zeros([2, 1, 1, 4], &device);
/// // Element 0 has two instances, element 1 none.
/// let instances = Tensor::<4, Int>::from_ints([[[[1, 0, 2, 0]]], [[[0, 0, 0, 0]]]], &device);
/// let parts = BlobLossConfig::new().init().forward_parts(logits, instances);
/// assert_eq!(parts.elements_with_instances.into_scalar::<f32>(), 1.0);
/// ```
#[derive(Debug, Clone)]
pub struct BlobLossOutput {
    /// `global_weight * global + blob_weight * blob`, shape `[1]`.
    pub total: Tensor<1>,
    /// The global term, unweighted, shape `[1]`.
    pub global: Tensor<1>,
    /// The blob term, unweighted, shape `[1]` (0, with a zero gradient, when no element has an
    /// instance).
    pub blob: Tensor<1>,
    /// The prediction term of the false-positive components, unweighted, shape `[1]` (0 when
    /// [`BlobLossConfig::false_positive_weight`](super::BlobLossConfig::false_positive_weight) is 0
    /// or no element has a false positive).
    pub false_positive: Tensor<1>,
    /// How many batch elements have at least one instance (the denominator of the blob mean),
    /// shape `[1]`, as a float without gradient.
    pub elements_with_instances: Tensor<1>,
}

/// The terms of every `(element, channel)` before the means
/// ([`BlobLoss::forward_no_reduction`](super::BlobLoss::forward_no_reduction)), unweighted (no
/// class weights), differentiable.
///
/// # Example
/// ```
/// use blob_loss::loss::BlobLossConfig;
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::zeros([2, 1, 1, 4], &device);
/// let instances = Tensor::<4, Int>::from_ints([[[[1, 0, 2, 0]]], [[[0, 0, 0, 0]]]], &device);
/// let unreduced = BlobLossConfig::new().init().forward_no_reduction(logits, instances);
/// assert_eq!(unreduced.blob.dims(), [2, 1]);
/// assert_eq!(unreduced.instances.into_data().try_to_vec::<f32>().unwrap(), [2.0, 0.0]);
/// ```
#[derive(Debug, Clone)]
pub struct UnreducedParts {
    /// The global term of every `(element, channel)`, `[B, C]` (`[1, C]` with
    /// [`BlobLossConfig::batch_global`](super::BlobLossConfig::batch_global)).
    pub global: Tensor<2>,
    /// The mean of the instance terms of every `(element, channel)`, `[B, C]`; 0 where a channel
    /// has no instance.
    pub blob: Tensor<2>,
    /// The number of instances of every `(element, channel)`, `[B, C]`, without gradient.
    pub instances: Tensor<2>,
}
