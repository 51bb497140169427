//! The sums from burn's generic tensor operations: the reference engine, and the one backends
//! without the fused op take. Its gradient is burn's autodiff of these operations.

use burn::tensor::activation::sigmoid;
use burn::tensor::{DType, FloatDType, IndexingUpdateOp, Int, Tensor};

use super::is_flex;
use super::spec::{InstanceSumsSpec, MAX_LOGIT_CROSS_ENTROPY, PROBABILITY_FLOOR, SumInput};

/// The most `f32` accumulators (rows x chunks x bins) per statistic on backends that sum in `f32`.
const MAX_CHUNKED_BINS: usize = 1 << 24;

/// Voxels per accumulation chunk on backends that accumulate in `f32` (GPU): short enough that
/// the `f32` sum of one chunk stays exact to about `1e-7` relative.
const GPU_CHUNK: usize = 1 << 14;

/// [`instance_sums`](super::instance_sums) with `scatter(Add)` into bins: `f64` bins on flex;
/// elsewhere `f32` bins per chunk of voxels, summed afterwards, so that large sums do not drift.
/// Per-voxel statistics are computed in `f32` (GPU shaders have no `f64` `exp`), or in `f64` for
/// `f64` values on flex.
pub(crate) fn scatter_sums(values: Tensor<2>, ids: Tensor<2, Int>, spec: InstanceSumsSpec) -> Tensor<3> {
    let [rows, voxels] = values.dims();
    let bins = spec.bins;
    let device = values.device();
    let on_flex = is_flex(&device);
    let compute = if on_flex && values.dtype() == DType::F64 { FloatDType::F64 } else { FloatDType::F32 };
    let (accumulate, chunk) = if on_flex {
        (FloatDType::F64, voxels.max(1))
    } else {
        let chunks_fitting = (MAX_CHUNKED_BINS / (rows * bins).max(1)).max(1);
        (FloatDType::F32, GPU_CHUNK.max(voxels.div_ceil(chunks_fitting)))
    };
    let chunks = voxels.div_ceil(chunk).max(1);
    let x = values.cast(compute);
    let mut target = ids.clone().greater_elem(0);
    if let Some(end) = spec.foreground_end {
        target = target.bool_and(ids.clone().lower_elem(end as i64));
    }
    let target = target.float().cast(compute);
    let p = match spec.input {
        SumInput::Logits => sigmoid(x.clone()),
        SumInput::Probabilities => x.clone(),
    };
    let slots = if chunks == 1 {
        ids
    } else {
        let offsets =
            Tensor::<1, Int>::arange(0..voxels as i64, &device).div_scalar(chunk as i64).mul_scalar(bins as i64);
        ids + offsets.unsqueeze::<2>()
    };
    let scatter = |values: Tensor<2>| -> Tensor<2> {
        let dtype: DType = accumulate.into();
        let per_chunk = Tensor::<2>::zeros([rows, chunks * bins], (&device, dtype)).scatter(
            1,
            slots.clone(),
            values.cast(accumulate),
            IndexingUpdateOp::Add,
        );
        if chunks == 1 { per_chunk } else { per_chunk.reshape([rows, chunks, bins]).sum_dim(1).reshape([rows, bins]) }
    };
    let mut stats = vec![scatter(p.clone()), scatter(p.ones_like()).detach()];
    if spec.squares {
        stats.push(scatter(p.clone() * p.clone()));
    }
    if spec.cross_entropy {
        let ce = match spec.input {
            SumInput::Logits => {
                // softplus(z), z = x (1 - 2t), as z/2 + |z|/2 + ln(1 + e^-|z|): its gradient is
                // sigmoid(z) at z = 0 too (where relu's is 0). Clamped like the fused op; beyond the
                // clamp (|x| > 100 on the wrong side) this engine has no gradient.
                // z is clamped first: at z = ±inf, z/2 + |z|/2 would be inf - inf.
                let z = (x * (target.clone() * -2.0 + 1.0)).clamp(-1e4, 1e4);
                let abs = z.clone().abs();
                (z * 0.5 + abs.clone() * 0.5 + abs.neg().exp().log1p()).clamp_max(MAX_LOGIT_CROSS_ENTROPY)
            }
            SumInput::Probabilities => {
                // -ln q at the clamped q, with the gradient of -ln taken there (straight through the clamp).
                let q = p.clone() * target.clone() + (p.neg() + 1.0) * (target.neg() + 1.0);
                let clamped = q.clone() + (q.clone().clamp_min(PROBABILITY_FLOOR) - q).detach();
                clamped.log().neg()
            }
        };
        stats.push(scatter(ce));
    }
    let sums: Tensor<3> = Tensor::stack(stats, 1);
    if spec.skip_background {
        // Bin 0 left out: 0, and no gradient through it.
        let statistics = spec.statistics();
        let zeros = Tensor::<3>::zeros([rows, statistics, 1], (&device, sums.dtype()));
        sums.slice_assign([0..rows, 0..statistics, 0..1], zeros)
    } else {
        sums
    }
}
