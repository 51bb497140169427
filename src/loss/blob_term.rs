//! The blob term: every instance scored on its domain ([`Partition`]), from the bin sums, and the
//! mean over the instances of every `(element, channel)`.

use burn::tensor::Tensor;

use super::base::RegionSums;
use super::bins::BinSums;
use super::config::BlobLossConfig;
use super::partition::Partition;
use super::reduce::region_means;

/// The blob term of every `(element, channel)`: the mean over its instances of each
/// instance's loss on its domain, `[B, C]` (0 without instances), and the instance counts.
pub(crate) fn blob_rows(config: &BlobLossConfig, b: &BinSums, batch: usize, channels: usize) -> (Tensor<2>, Tensor<2>) {
    let (sum_p, sum_p2, sum_bce, count) = (&b.p, &b.p2, &b.bce, &b.count);
    let [rows, bins] = sum_p.dims();
    let end = b.foreground_end;
    if end == 1 {
        // No instance anywhere: no zero-sized tensors (see `global_rows`).
        let zeros = Tensor::<2>::zeros([batch, channels], (&sum_p.device(), sum_p.dtype()));
        return (zeros.clone(), zeros);
    }
    let instance = |t: &Tensor<2>| t.clone().slice([0..rows, 1..end]);
    // The rest of instance k's domain: the background of its cell (bins `end..`, in the
    // instances' order), or the whole background (broadcast).
    let rest = |t: &Tensor<2>| match config.partition {
        Partition::Voronoi => t.clone().slice([0..rows, end..bins]),
        Partition::Exclude | Partition::Reference => t.clone().slice([0..rows, 0..1]),
    };
    let size = instance(count);
    // Inverse-size weights inside each domain: its two components weigh alike.
    let (w_instance, w_rest) = if config.blob_size_weighting {
        let rest_size = rest(count) + size.clone().zeros_like();
        let domain = size.clone() + rest_size.clone();
        let max = config.max_size_weight;
        let weight = |part: Tensor<2>| (domain.clone() / (part.clamp_min(1.0) * 2.0)).clamp_max(max);
        (Some(weight(size.clone())), Some(weight(rest_size)))
    } else {
        (None, None)
    };
    let times = |t: Tensor<2>, w: &Option<Tensor<2>>| match w {
        Some(w) => t * w.clone(),
        None => t,
    };
    let weighted_instance = |t: &Tensor<2>| times(instance(t), &w_instance);
    let domain = |t: &Tensor<2>| weighted_instance(t) + times(rest(t), &w_rest);
    let mut sums = RegionSums {
        p: domain(sum_p),
        p2: sum_p2.as_ref().map(domain),
        tp: weighted_instance(sum_p),
        t: weighted_instance(count),
        bce: sum_bce.as_ref().map(domain),
        voxels: match config.partition {
            Partition::Voronoi => instance(count) + rest(count),
            _ => b.voxels.clone(),
        },
    };
    if config.partition == Partition::Reference {
        // The other instances' voxels, at logit 0: p = 0.5, p^2 = 0.25, cross-entropy ln 2.
        let others = size.clone().neg() + size.clone().sum_dim(1);
        sums.p = sums.p + others.clone() * 0.5;
        sums.p2 = sums.p2.map(|p2| p2 + others.clone() * 0.25);
        sums.bce = sums.bce.map(|bce| bce + others * std::f64::consts::LN_2);
    }
    let per_instance = config.blob_loss.score(&sums);
    region_means(per_instance, size, batch, channels)
}
