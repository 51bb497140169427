//! The means of the loss: over the regions of a row, the channels, the batch elements.

use burn::tensor::{FloatDType, Tensor};

/// The mean of per-region losses `[rows, regions]` over the present regions of each row (size >
/// 0; absent bins are selected out, not multiplied by 0), `[B, C]` (0 without regions), and the
/// number of regions, `[B, C]`. `regions` must not be 0 (callers skip zero-sized tensors).
pub(crate) fn region_means(
    per_region: Tensor<2>,
    size: Tensor<2>,
    batch: usize,
    channels: usize,
) -> (Tensor<2>, Tensor<2>) {
    let absent = size.clone().lower_elem(0.5); // sizes are whole numbers
    let present = size.clamp_max(1.0); // 1 where present, 0 elsewhere
    let n_regions = present.sum_dim(1); // [rows, 1]
    let loss = per_region.mask_fill(absent, 0.0).sum_dim(1) / n_regions.clone().clamp_min(1.0);
    (loss.reshape([batch, channels]), n_regions.reshape([batch, channels]))
}

/// The mean over elements and channels of `[B, C]` (or `[1, C]`) losses, each channel weighted
/// (`[1, C]`) and divided by the number of channels that count (weight above 0).
pub(crate) fn weighted_mean(losses: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    let [rows, _] = losses.dims();
    let counted = weights.clone().greater_elem(0.0).float().cast(FloatDType::from(weights.dtype())).sum();
    ((losses * weights).sum() / (counted.clamp_min(1.0) * rows as f64)).reshape([1])
}

/// The nested mean of `[B, C]` per-channel losses with `counts` regions each: over the channels
/// that have regions (and count: weight above 0; each loss times its channel's weight), then over
/// the elements that have any; and the number of such elements, shape `[1]`.
pub(crate) fn nested_mean(losses: Tensor<2>, counts: Tensor<2>, weights: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
    let counted = weights.clone().greater_elem(0.0).float().cast(FloatDType::from(weights.dtype()));
    let channel_has = counts.clamp_max(1.0) * counted; // [B, C]
    let n_channels = channel_has.clone().sum_dim(1); // [B, 1]
    let element_loss = (losses * channel_has * weights).sum_dim(1) / n_channels.clone().clamp_min(1.0);
    let element_has = n_channels.clamp_max(1.0);
    let n_elements = element_has.clone().sum();
    let mean = (element_loss * element_has).sum() / n_elements.clone().clamp_min(1.0);
    (mean.reshape([1]), n_elements.reshape([1]))
}
