//! The categorical cross-entropy of softmax outputs against the classes of instance maps.

use burn::tensor::activation::log_softmax;
use burn::tensor::{FloatDType, Int, Tensor};

use super::sums::device::exponentiable;
use crate::backend::row_sum;

/// The categorical cross-entropy of softmax outputs against the classes of the instance maps (see
/// [`BlobLossConfig::categorical_cross_entropy`](super::BlobLossConfig::categorical_cross_entropy)),
/// averaged over the voxels that are not ignored (negative ids), shape `[1]`.
pub(crate) fn categorical_cross_entropy<const D: usize>(outputs: Tensor<D>, instances: Tensor<D, Int>) -> Tensor<1> {
    let dims = outputs.dims();
    let [batch, channels] = [dims[0], dims[1]];
    let voxels: usize = dims[2..].iter().product();
    let outputs = exponentiable(outputs);
    let dtype = FloatDType::from(outputs.dtype());
    let log_p = log_softmax(outputs.reshape([batch, channels, voxels]), 1);
    let ids = instances.reshape([batch, channels, voxels]);
    let positive = ids.clone().greater_elem(0).float().cast(dtype);
    // Channel 0 also holds the voxels no channel claims.
    let unclaimed = positive.clone().sum_dim(1).clamp_max(1.0).neg() + 1.0;
    let first = unclaimed + positive.clone().slice([0..batch, 0..1, 0..voxels]);
    let targets = if channels > 1 {
        Tensor::cat(vec![first, positive.slice([0..batch, 1..channels, 0..voxels])], 1)
    } else {
        first
    };
    let kept = ids.greater_equal_elem(0).float().cast(dtype).min_dim(1); // [batch, 1, voxels]
    let per_voxel = (log_p * targets).sum_dim(1).neg() * kept.clone();
    // Sums over every voxel of the batch, in stages (see `row_sum`).
    let total = |t: Tensor<3>| row_sum(t.reshape([1, batch * voxels]));
    (total(per_voxel) / total(kept).clamp_min(1.0)).reshape([1])
}
