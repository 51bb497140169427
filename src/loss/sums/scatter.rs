//! The sums from burn's generic tensor operations: the reference engine, and the one backends
//! without the fused op take. Its gradient is burn's autodiff of these operations.

use burn::tensor::activation::sigmoid;
use burn::tensor::{DType, FloatDType, IndexingUpdateOp, Int, Tensor};

use super::device::host_backed;
use super::spec::{InstanceSumsSpec, MAX_F32_CHUNK_BINS, MAX_LOGIT_CROSS_ENTROPY, PROBABILITY_FLOOR, SumInput};

/// Voxels per accumulation chunk on backends that accumulate in `f32` (GPU): short enough that
/// the `f32` sum of one chunk stays exact to about `1e-7` relative.
const GPU_CHUNK: usize = 1 << 14;

/// The most voxels one scatter row takes on a GPU. burn 0.22.1's cube scatter on devices without
/// float atomic adds (one unit per output row; wgpu on lavapipe) adds only the first 65,535
/// values of a row (measured: 2^21 ones gave 65,535), so every chunk is one row of its own,
/// below that. Where the bins are so many that this exceeds [`MAX_F32_CHUNK_BINS`], correctness
/// wins over the buffer size.
const GPU_SCATTER_ROW: usize = 1 << 15;

/// [`instance_sums`](super::instance_sums) with `scatter(Add)` into bins: `f64` bins on flex;
/// elsewhere `f32` bins per chunk of voxels (each chunk a row of the scatter, zero-padded to
/// whole chunks), summed afterwards, so that large sums do not drift.
/// Per-voxel statistics are computed in `f32` (GPU shaders have no `f64` `exp`), or in `f64` for
/// `f64` values on flex.
pub(crate) fn scatter_sums(values: Tensor<2>, ids: Tensor<2, Int>, spec: InstanceSumsSpec) -> Tensor<3> {
    let [rows, voxels] = values.dims();
    if spec.maps > 1 {
        // Map after map, each over the same values.
        let one = InstanceSumsSpec { maps: 1, ..spec };
        let sums = (0..spec.maps)
            .map(|m| scatter_sums(values.clone(), ids.clone().slice([m * rows..(m + 1) * rows, 0..voxels]), one))
            .collect();
        return Tensor::cat(sums, 0);
    }
    let bins = spec.bins;
    let device = values.device();
    let on_flex = host_backed(&device);
    let compute = if on_flex && values.dtype() == DType::F64 { FloatDType::F64 } else { FloatDType::F32 };
    let (accumulate, chunk) = if on_flex {
        (FloatDType::F64, voxels.max(1))
    } else {
        let chunks_fitting = (MAX_F32_CHUNK_BINS / (rows * bins).max(1)).max(1);
        (FloatDType::F32, GPU_CHUNK.max(voxels.div_ceil(chunks_fitting)).min(GPU_SCATTER_ROW))
    };
    let chunks = voxels.div_ceil(chunk).max(1);
    // `[rows, voxels]` as `[rows * chunks, chunk]`, the tail padded with zeros (bin 0, value 0:
    // the padding adds nothing, the voxel count included).
    let padding = chunks * chunk - voxels;
    let chunked = |t: Tensor<2>| -> Tensor<2> {
        if chunks == 1 {
            return t;
        }
        let t =
            if padding > 0 { Tensor::cat(vec![t.clone(), t.zeros_like().slice([0..rows, 0..padding])], 1) } else { t };
        t.reshape([rows * chunks, chunk])
    };
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
        let ids = if padding > 0 {
            Tensor::cat(vec![ids.clone(), ids.zeros_like().slice([0..rows, 0..padding])], 1)
        } else {
            ids
        };
        ids.reshape([rows * chunks, chunk])
    };
    let scatter = |values: Tensor<2>| -> Tensor<2> {
        let dtype: DType = accumulate.into();
        let per_chunk = Tensor::<2>::zeros([rows * chunks, bins], (&device, dtype)).scatter(
            1,
            slots.clone(),
            chunked(values.cast(accumulate)),
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
