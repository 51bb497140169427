//! The fused CPU path: bin sums and the per-voxel gradient in host passes (rayon), handed back
//! to burn through a surrogate tensor whose value is the loss and whose gradient is the exact one.
//!
//! The loss formulas are not written twice: the bin sums become small leaf tensors, the same
//! [`BlobLoss`](super::BlobLoss) code scores them, and burn's autodiff gives the gradient with
//! respect to every bin. The chain rule from bins to voxels is then one host pass.
//!
//! Two passes over the voxels, one buffer: the first writes every voxel's probability into the
//! buffer while it sums the bins, the second overwrites each probability with the voxel's
//! gradient, and the buffer becomes the gradient tensor.

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use super::activation::Activation;
use super::fast_math::sigmoid;

/// Voxels per parallel task, at least: a task spans more voxels when there are more bins, so that
/// the per-task sums never take more memory than the input.
const CHUNK: usize = 1 << 15;

/// Voxels per block: a block of background voxels (the common case) is summed in independent
/// lanes, without a bin lookup per voxel, and its gradient computed with one bin's values.
const BLOCK: usize = 8;

/// An instance id read from the host copy of an instance map: `i32` (flex's default Int type)
/// or `i64`. Ids are checked non-negative before any pass indexes a bin with them.
pub(crate) trait InstanceId: Copy + Ord + Send + Sync {
    /// The id as a bin index.
    fn bin(self) -> usize;
    /// The id, widened.
    fn get(self) -> i64;
}

impl InstanceId for i32 {
    #[inline]
    fn bin(self) -> usize {
        self as usize
    }
    fn get(self) -> i64 {
        i64::from(self)
    }
}

impl InstanceId for i64 {
    #[inline]
    fn bin(self) -> usize {
        self as usize
    }
    fn get(self) -> i64 {
        self
    }
}

/// The smallest and the largest id (0 and 0 when there are none).
pub(crate) fn id_range<I: InstanceId>(ids: &[I]) -> (i64, i64) {
    // Per chunk, `min` and `max` on the native type: loops the compiler vectorises.
    let (min, max) = ids
        .par_chunks(CHUNK)
        .map(|c| (c.iter().copied().min(), c.iter().copied().max()))
        .reduce(|| (None, None), |(a, b), (c, d)| (a.into_iter().chain(c).min(), b.into_iter().chain(d).max()));
    (min.map_or(0, I::get), max.map_or(0, I::get))
}

/// Whether a block of ids is all background, without a branch per id.
#[inline(always)]
fn all_background<I: InstanceId>(ids: &[I; BLOCK]) -> bool {
    ids.iter().fold(0, |any, id| any | id.bin()) == 0
}

/// Which statistics besides the probability sums and the counts a call needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Needs {
    /// Sums of squared probabilities (squared Dice denominators).
    pub p2: bool,
    /// Sums of per-voxel cross-entropy (BCE).
    pub bce: bool,
}

impl Needs {
    /// Statistics per bin: probability, count, then the optional ones in this order.
    fn stats(self) -> usize {
        2 + usize::from(self.p2) + usize::from(self.bce)
    }
}

/// Per-bin sums of one call, `[rows, bins]` in row-major order.
pub(crate) struct HostSums {
    pub p: Vec<f64>,
    pub p2: Option<Vec<f64>>,
    pub bce: Option<Vec<f64>>,
    pub count: Vec<f64>,
}

/// `-ln p` where `target` and `-ln(1 - p)` elsewhere, from the input `x`: a logit (stable
/// softplus form) or a probability.
#[inline]
fn cross_entropy(activation: Activation, x: f32, target: bool) -> f64 {
    let x = f64::from(x);
    match activation {
        Activation::Sigmoid => {
            let z = if target { -x } else { x };
            z.max(0.0) + (-z.abs()).exp().ln_1p()
        }
        _ => -(if target { x } else { 1.0 - x }).ln().max(-100.0),
    }
}

/// Voxels per task for `bins` bins.
fn task_len(bins: usize) -> usize {
    CHUNK.max(bins)
}

/// Writes every voxel's probability into `p` (`f32`, like every backend's activation) and
/// scatter-adds the statistics of every voxel into its bin (`f64`). `x`, `ids` and `p` are
/// `[rows, voxels]` in row-major order.
pub(crate) fn sums<I: InstanceId>(
    activation: Activation,
    needs: Needs,
    x: &[f32],
    ids: &[I],
    p: &mut [f32],
    rows: usize,
    bins: usize,
) -> HostSums {
    let voxels = (x.len() / rows.max(1)).max(1);
    let stats = needs.stats();
    let len = task_len(bins);
    let parts: Vec<(usize, Vec<f64>)> = p
        .par_chunks_mut(voxels)
        .zip(x.par_chunks(voxels).zip(ids.par_chunks(voxels)))
        .enumerate()
        .flat_map(|(row, (p, (x, ids)))| {
            p.par_chunks_mut(len)
                .zip(x.par_chunks(len).zip(ids.par_chunks(len)))
                .map(move |(p, (x, ids))| (row, sum_task(activation, needs, x, ids, p, bins)))
        })
        .collect();
    let mut all = vec![0f64; rows * bins * stats];
    for (row, part) in parts {
        all[row * bins * stats..(row + 1) * bins * stats].iter_mut().zip(part).for_each(|(a, b)| *a += b);
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
    let p2 = take(needs.p2);
    let bce = take(needs.bce);
    HostSums { p: stat(0), count: stat(1), p2, bce }
}

/// One task of [`sums`]: `[stat][bin]` sums of a stretch of one row. Blocks of background
/// voxels are summed in lanes, without a bin lookup per voxel.
fn sum_task<I: InstanceId>(
    activation: Activation,
    needs: Needs,
    x: &[f32],
    ids: &[I],
    p: &mut [f32],
    bins: usize,
) -> Vec<f64> {
    let mut acc = vec![0f64; bins * needs.stats()];
    let (id_blocks, id_tail) = ids.as_chunks::<BLOCK>();
    if needs.bce {
        // Cross-entropy from the inputs.
        let at = (needs.stats() - 1) * bins;
        let (blocks, tail) = x.as_chunks::<BLOCK>();
        let mut lanes = [0f64; BLOCK];
        let mut add = |x: &[f32], ids: &[I]| {
            for (&x, &id) in x.iter().zip(ids) {
                acc[at + id.bin()] += cross_entropy(activation, x, id.bin() > 0);
            }
        };
        for (x, ids) in blocks.iter().zip(id_blocks) {
            if all_background(ids) {
                for (lane, &x) in lanes.iter_mut().zip(x) {
                    *lane += cross_entropy(activation, x, false);
                }
            } else {
                add(x, ids);
            }
        }
        add(tail, id_tail);
        acc[at] += lanes.iter().sum::<f64>();
    }
    // The probabilities, in a loop without bins that the compiler vectorises.
    match activation {
        Activation::Sigmoid => p.iter_mut().zip(x).for_each(|(p, &x)| *p = sigmoid(x)),
        _ => p.copy_from_slice(x),
    }
    let (blocks, tail) = p.as_chunks::<BLOCK>();
    let mut lanes = [[0f64; BLOCK]; 2]; // p and p^2
    let mut background_voxels = 0usize;
    let mut add = |p: &[f32], ids: &[I]| {
        for (&p, &id) in p.iter().zip(ids) {
            let (b, p) = (id.bin(), f64::from(p));
            acc[b] += p;
            acc[bins + b] += 1.0;
            if needs.p2 {
                acc[2 * bins + b] += p * p;
            }
        }
    };
    for (p, ids) in blocks.iter().zip(id_blocks) {
        if all_background(ids) {
            background_voxels += BLOCK;
            for (lane, &p) in lanes[0].iter_mut().zip(p) {
                *lane += f64::from(p);
            }
            if needs.p2 {
                for (lane, &p) in lanes[1].iter_mut().zip(p) {
                    *lane += f64::from(p) * f64::from(p);
                }
            }
        } else {
            add(p, ids);
        }
    }
    add(tail, id_tail);
    acc[0] += lanes[0].iter().sum::<f64>();
    acc[bins] += background_voxels as f64;
    if needs.p2 {
        acc[2 * bins] += lanes[1].iter().sum::<f64>();
    }
    acc
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

/// The gradients of one bin.
#[derive(Clone, Copy)]
struct BinGradient {
    p: f64,
    p2: f64,
    bce: f64,
}

/// The gradient of a voxel of probability `p = sigmoid(x)` in a bin with gradients `g`:
/// `dp/dx = p (1 - p)`, `d(cross-entropy)/dx = p - t`. In `f32`, like the probability, so that a
/// block of background voxels runs on SIMD lanes.
#[inline(always)]
fn sigmoid_voxel(p: f32, target: bool, g: BinGradient) -> f32 {
    let t = f32::from(u8::from(target));
    (g.p as f32 + g.p2 as f32 * 2.0 * p) * p * (1.0 - p) + g.bce as f32 * (p - t)
}

/// The gradient of a voxel whose input is its probability `p`, in a bin with gradients `g`.
#[inline(always)]
fn probability_voxel(needs: Needs, p: f32, target: bool, g: BinGradient) -> f32 {
    let p = f64::from(p);
    let mut dx = g.p + g.p2 * 2.0 * p;
    if needs.bce {
        // -ln q is clamped at 100: no gradient where the clamp holds.
        let q = if target { p } else { 1.0 - p };
        if q.ln() > -100.0 {
            dx += g.bce * if target { -1.0 / p } else { 1.0 / (1.0 - p) };
        }
    }
    dx as f32
}

/// Overwrites every voxel's probability in `p` (as [`sums`] wrote it) with the gradient of a
/// scalar with respect to the voxel's input, from the scalar's gradients with respect to the bins
/// each voxel was added to.
pub(crate) fn voxel_gradient_in_place<I: InstanceId>(
    activation: Activation,
    needs: Needs,
    ids: &[I],
    p: &mut [f32],
    bins: usize,
    grads: &BinGradients,
) {
    match activation {
        Activation::Sigmoid => gradient_pass(ids, p, bins, grads, sigmoid_voxel),
        _ => gradient_pass(ids, p, bins, grads, |p, target, g| probability_voxel(needs, p, target, g)),
    }
}

/// [`voxel_gradient_in_place`] with the per-voxel rule `voxel(p, target, bin gradients)`.
fn gradient_pass<I: InstanceId>(
    ids: &[I],
    p: &mut [f32],
    bins: usize,
    grads: &BinGradients,
    voxel: impl Fn(f32, bool, BinGradient) -> f32 + Sync,
) {
    let rows = grads.p.len() / bins;
    let voxels = (p.len() / rows.max(1)).max(1);
    let len = task_len(bins);
    p.par_chunks_mut(voxels).zip(ids.par_chunks(voxels)).enumerate().for_each(|(row, (p, ids))| {
        let at = |b: usize| {
            let i = row * bins + b;
            BinGradient {
                p: grads.p[i],
                p2: grads.p2.as_ref().map_or(0.0, |g| g[i]),
                bce: grads.bce.as_ref().map_or(0.0, |g| g[i]),
            }
        };
        let background = at(0);
        let mixed = |p: &mut [f32], ids: &[I]| {
            for (p, &id) in p.iter_mut().zip(ids) {
                *p = voxel(*p, id.bin() > 0, at(id.bin()));
            }
        };
        p.par_chunks_mut(len).zip(ids.par_chunks(len)).for_each(|(p, ids)| {
            let (blocks, tail) = p.as_chunks_mut::<BLOCK>();
            let (id_blocks, id_tail) = ids.as_chunks::<BLOCK>();
            for (p, ids) in blocks.iter_mut().zip(id_blocks) {
                if all_background(ids) {
                    for p in p.iter_mut() {
                        *p = voxel(*p, false, background);
                    }
                } else {
                    mixed(p, ids);
                }
            }
            mixed(tail, id_tail);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// `rows` rows of `voxels` inputs and ids: long background stretches (whole blocks) and
    /// short instance runs, ids up to `max_id`.
    fn inputs(rng: &mut Rng, rows: usize, voxels: usize, max_id: u64, activation: Activation) -> (Vec<f32>, Vec<i64>) {
        let x = (0..rows * voxels)
            .map(|_| match activation {
                Activation::None => rng.unit() as f32,
                _ => (rng.unit() * 16.0 - 8.0) as f32,
            })
            .collect();
        let mut ids = vec![0i64; rows * voxels];
        let mut i = 0;
        while i < ids.len() {
            i += rng.below(40) as usize;
            let id = 1 + rng.below(max_id) as i64;
            for _ in 0..rng.below(5) {
                if i < ids.len() {
                    ids[i] = id;
                    i += 1;
                }
            }
        }
        (x, ids)
    }

    /// Every statistic of one voxel, as written in the loss's definition.
    fn expected_sums(activation: Activation, x: &[f32], ids: &[i64], rows: usize, bins: usize) -> [Vec<f64>; 4] {
        let voxels = x.len() / rows;
        let mut sums = [(); 4].map(|()| vec![0f64; rows * bins]);
        for (i, (&x, &id)) in x.iter().zip(ids).enumerate() {
            let p = match activation {
                Activation::Sigmoid => sigmoid(x),
                _ => x,
            };
            let bin = i / voxels * bins + id as usize;
            let q = f64::from(p);
            sums[0][bin] += q;
            sums[1][bin] += 1.0;
            sums[2][bin] += q * q;
            sums[3][bin] += cross_entropy(activation, x, id > 0);
        }
        sums
    }

    fn assert_close(found: &[f64], expected: &[f64], what: &str) {
        assert_eq!(found.len(), expected.len(), "{what}");
        for (i, (a, b)) in found.iter().zip(expected).enumerate() {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}[{i}]: {a} vs {b}");
        }
    }

    /// Rows longer than a task and not a multiple of a block, few and many bins (more bins
    /// than a task has voxels), `i32` and `i64` ids, every statistic, both host activations.
    #[test]
    fn sums_and_gradient_match_a_plain_loop() {
        let mut rng = Rng(7);
        for (rows, voxels, max_id) in [(3, 2 * CHUNK + 13, 9), (2, CHUNK + 5, 3 * CHUNK as u64), (1, 7, 2), (4, 1, 1)] {
            for activation in [Activation::Sigmoid, Activation::None] {
                let (x, ids) = inputs(&mut rng, rows, voxels, max_id, activation);
                let bins = *ids.iter().max().unwrap() as usize + 1;
                let expected = expected_sums(activation, &x, &ids, rows, bins);
                let ids32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
                for (p2, bce) in [(false, false), (true, true), (false, true)] {
                    let needs = Needs { p2, bce };
                    let mut p = vec![0f32; x.len()];
                    let sums = sums(activation, needs, &x, &ids, &mut p, rows, bins);
                    assert_close(&sums.p, &expected[0], "p");
                    assert_close(&sums.count, &expected[1], "count");
                    assert_eq!(sums.p2.is_some(), p2);
                    assert_eq!(sums.bce.is_some(), bce);
                    if let Some(s) = &sums.p2 {
                        assert_close(s, &expected[2], "p2");
                    }
                    if let Some(s) = &sums.bce {
                        assert_close(s, &expected[3], "bce");
                    }
                    let mut p32 = vec![0f32; x.len()];
                    let sums32 = super::sums(activation, needs, &x, &ids32, &mut p32, rows, bins);
                    assert_eq!((sums32.p, sums32.count), (sums.p, sums.count), "i32 ids");
                    assert_eq!(p32, p);

                    // The gradient: made-up bin gradients, checked voxel by voxel.
                    let grad = |salt: f64| -> Vec<f64> { (0..rows * bins).map(|i| (i as f64 * salt).sin()).collect() };
                    let grads = BinGradients { p: grad(0.7), p2: p2.then(|| grad(1.3)), bce: bce.then(|| grad(2.1)) };
                    let probabilities = p.clone();
                    voxel_gradient_in_place(activation, needs, &ids32, &mut p, bins, &grads);
                    for (i, (&g, &q)) in p.iter().zip(&probabilities).enumerate() {
                        let bin = i / voxels * bins + ids[i] as usize;
                        let at = |g: &Option<Vec<f64>>| g.as_ref().map_or(0.0, |g| g[bin]);
                        let gb = BinGradient { p: grads.p[bin], p2: at(&grads.p2), bce: at(&grads.bce) };
                        let (q, t) = (f64::from(q), f64::from(u8::from(ids[i] > 0)));
                        let (dp_dx, dce_dx) = match activation {
                            Activation::Sigmoid => (q * (1.0 - q), q - t),
                            _ if t > 0.0 => (1.0, if q.ln() > -100.0 { -1.0 / q } else { 0.0 }),
                            _ => (1.0, if (1.0 - q).ln() > -100.0 { 1.0 / (1.0 - q) } else { 0.0 }),
                        };
                        let expected = (gb.p + 2.0 * gb.p2 * q) * dp_dx + gb.bce * dce_dx;
                        assert!(
                            (f64::from(g) - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                            "gradient[{i}]: {g} vs {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn id_range_of_both_id_types() {
        assert_eq!(id_range::<i32>(&[]), (0, 0));
        let ids: Vec<i64> = (0..3 * CHUNK as i64).map(|i| (i * 7919) % 100_003 - 3).collect();
        let expected = (*ids.iter().min().unwrap(), *ids.iter().max().unwrap());
        assert_eq!(id_range(&ids), expected);
        let ids32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
        assert_eq!(id_range(&ids32), expected);
    }
}
