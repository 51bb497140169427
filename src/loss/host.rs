//! The fused CPU path: bin sums and the per-voxel gradient in host passes (rayon), handed back
//! to burn through a surrogate tensor whose value is the loss and whose gradient is the exact one.
//!
//! The loss formulas are not written twice: the bin sums become small leaf tensors, the same
//! [`BlobLoss`](super::BlobLoss) code scores them, and burn's autodiff gives the gradient with
//! respect to every bin. The chain rule from bins to voxels is then one host pass.

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use super::activation::Activation;

/// Voxels per parallel chunk of a row.
const CHUNK: usize = 1 << 15;

/// Per-bin sums of one call, `[rows, bins]` in row-major order.
pub(crate) struct HostSums {
    pub p: Vec<f64>,
    pub p2: Option<Vec<f64>>,
    pub bce: Option<Vec<f64>>,
    pub count: Vec<f64>,
}

/// `-ln p` where `target` and `-ln(1 - p)` elsewhere, from the logit or the probability.
#[inline]
fn cross_entropy(activation: Activation, x: f64, p: f64, target: bool) -> f64 {
    match activation {
        Activation::Sigmoid => {
            let z = if target { -x } else { x };
            z.max(0.0) + (-z.abs()).exp().ln_1p()
        }
        _ => -(if target { p } else { 1.0 - p }).ln().max(-100.0),
    }
}

/// The probability of a voxel, in `f32` like every backend's activation; sums are `f64`.
#[inline]
fn probability(activation: Activation, x: f32) -> f64 {
    f64::from(match activation {
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        _ => x,
    })
}

/// Scatter-adds the statistics of every voxel into its bin.
pub(crate) fn sums(
    activation: Activation,
    x: &[f32],
    ids: &[i64],
    rows: usize,
    bins: usize,
    need_p2: bool,
    need_bce: bool,
) -> HostSums {
    let voxels = x.len() / rows.max(1);
    let stats = 2 + usize::from(need_p2) + usize::from(need_bce);
    let mut all = vec![0f64; rows * bins * stats];
    for (r, out) in all.chunks_mut(bins * stats).enumerate() {
        let row = r * voxels..(r + 1) * voxels;
        let partial = x[row.clone()]
            .par_chunks(CHUNK)
            .zip(ids[row].par_chunks(CHUNK))
            .fold(
                || vec![0f64; bins * stats],
                |mut acc, (x, ids)| {
                    for (&x, &id) in x.iter().zip(ids) {
                        let p = probability(activation, x);
                        let x = f64::from(x);
                        let b = id as usize;
                        acc[b] += p;
                        acc[bins + b] += 1.0;
                        let mut s = 2;
                        if need_p2 {
                            acc[s * bins + b] += p * p;
                            s += 1;
                        }
                        if need_bce {
                            acc[s * bins + b] += cross_entropy(activation, x, p, id > 0);
                        }
                    }
                    acc
                },
            )
            .reduce(
                || vec![0f64; bins * stats],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        out.copy_from_slice(&partial);
    }
    // Regroup as one [rows, bins] array per statistic.
    let stat = |s: usize| -> Vec<f64> {
        all.chunks(bins * stats).flat_map(|row| row[s * bins..(s + 1) * bins].iter().copied()).collect()
    };
    let mut next = 2;
    let mut take = |on: bool| {
        on.then(|| {
            next += 1;
            stat(next - 1)
        })
    };
    let p2 = take(need_p2);
    let bce = take(need_bce);
    HostSums { p: stat(0), count: stat(1), p2, bce }
}

/// A `[rows, bins]` f64 leaf tensor, tracked when `track` is set.
pub(crate) fn leaf(values: &[f64], rows: usize, bins: usize, device: &Device, track: bool) -> Tensor<2> {
    let t = Tensor::<2>::from_data(TensorData::new(values.to_vec(), vec![rows, bins]), (device, DType::F64));
    if track { t.require_grad() } else { t }
}

/// The gradients of one scalar with respect to the bin sums, `[rows, bins]` each.
pub(crate) struct BinGradients {
    pub p: Vec<f64>,
    pub p2: Option<Vec<f64>>,
    pub bce: Option<Vec<f64>>,
}

/// The gradient of a scalar with respect to every input voxel, from its gradients with respect
/// to the bins each voxel was added to: one pass.
pub(crate) fn voxel_gradient(
    activation: Activation,
    x: &[f32],
    ids: &[i64],
    bins: usize,
    grads: &BinGradients,
) -> Vec<f32> {
    let rows = grads.p.len() / bins;
    let row_len = x.len() / rows.max(1);
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).zip(ids.par_chunks(CHUNK)).enumerate().for_each(
        |(c, ((out, x), ids))| {
            for (i, ((o, &x), &id)) in out.iter_mut().zip(x).zip(ids).enumerate() {
                let bin = (c * CHUNK + i) / row_len * bins + id as usize;
                let p = probability(activation, x);
                let target = id > 0;
                // dp/dx and d(cross-entropy)/dx of this voxel.
                let (dp_dx, dce_dx) = match activation {
                    // dp/dx = p (1 - p); d(ce)/dx = p - t.
                    Activation::Sigmoid => (p * (1.0 - p), p - f64::from(u8::from(target))),
                    _ => {
                        let q = if target { p } else { 1.0 - p };
                        // -ln q is clamped at 100: no gradient where the clamp holds.
                        let dce = if q.ln() > -100.0 { if target { -1.0 / p } else { 1.0 / (1.0 - p) } } else { 0.0 };
                        (1.0, dce)
                    }
                };
                let mut dp = grads.p[bin];
                if let Some(g2) = &grads.p2 {
                    dp += g2[bin] * 2.0 * p;
                }
                let mut dx = dp * dp_dx;
                if let Some(gb) = &grads.bce {
                    dx += gb[bin] * dce_dx;
                }
                *o = dx as f32;
            }
        },
    );
    out
}
