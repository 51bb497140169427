//! The global term: the base loss of every `(element, channel)` over all its voxels, from the
//! bin sums (the foreground is the instances' bins), with optional inverse-size weights.

use burn::tensor::Tensor;

use super::base::RegionSums;
use super::bins::BinSums;
use super::config::BlobLossConfig;

/// The global base loss of every `(element, channel)`, `[B, C]` (`[1, C]` with batch Dice).
pub(crate) fn global_rows(config: &BlobLossConfig, b: &BinSums, batch: usize, channels: usize) -> Tensor<2> {
    let [rows, bins] = b.p.dims();
    let end = b.foreground_end;
    // Inverse-size weights per bin: every instance, and the background (bin 0 and any cell
    // bins) as one component.
    // No operation touches a zero-sized tensor (a batch without instances has no instance
    // bins): on wgpu under fusion such operations corrupted other tensors.
    let has_instances = end > 1;
    let weights = config.global_size_weighting.then(|| {
        let instances = has_instances.then(|| b.count.clone().slice([0..rows, 1..end]));
        let voxels = b.voxels.clone();
        let (components, background) = match &instances {
            Some(instances) => (
                instances.clone().clamp_max(1.0).sum_dim(1) + 1.0, // [rows, 1]
                voxels.clone() - instances.clone().sum_dim(1),
            ),
            None => (voxels.ones_like(), voxels.clone()),
        };
        let weight = |size: Tensor<2>| {
            (voxels.clone() / (components.clone() * size.clamp_min(1.0))).clamp_max(config.max_size_weight)
        };
        let background = weight(background);
        let mut columns = vec![background.clone()];
        columns.extend(instances.map(weight));
        if end < bins {
            columns.push(background.expand([rows, bins - end]));
        }
        Tensor::cat(columns, 1)
    });
    let weighted = |t: &Tensor<2>| match &weights {
        Some(w) => t.clone() * w.clone(),
        None => t.clone(),
    };
    let (sum_p, count) = (weighted(&b.p), weighted(&b.count));
    // Per (element, channel) as [B, C], or summed over the batch as [1, C].
    let batch_sum = config.batch_global;
    let region = |t: Tensor<2>| {
        let t = t.reshape([batch, channels]);
        if batch_sum { t.sum_dim(0) } else { t }
    };
    let foreground = |t: &Tensor<2>| {
        let sums = if has_instances {
            t.clone().slice([0..rows, 1..end]).sum_dim(1)
        } else {
            t.zeros_like().slice([0..rows, 0..1])
        };
        region(sums)
    };
    let sums = RegionSums {
        p: region(sum_p.clone().sum_dim(1)),
        p2: b.p2.as_ref().map(|t| region(weighted(t).sum_dim(1))),
        tp: foreground(&sum_p),
        t: foreground(&count),
        bce: b.bce.as_ref().map(|t| region(weighted(t).sum_dim(1))),
        voxels: region(b.voxels.clone()),
    };
    config.global_loss.score(&sums)
}
