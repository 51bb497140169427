//! The op on flex (CPU): the sums and the gradient in fused host passes with rayon.
//!
//! The forward pass reads every voxel once (its probability computed on the fly, never stored)
//! and adds its statistics into `f64` bins; blocks of 8 voxels of one bin (the background, the
//! inside of an instance or of a Voronoi cell: the common case) are summed in lanes without a bin
//! lookup per voxel; a block across bins adds each run of voxels of one bin once. Two bin maps
//! (BiCC's branches) go together: a run is a run of voxels in the same bins of both, and the
//! probabilities of several blocks are computed at once ([`joint_sums`]). The backward
//! pass reads every voxel once more, a span of 256 voxels at a time: an all-background span in
//! one branch-free loop, any other with its voxels' bin gradients gathered first (those of the
//! statistics summed only; a block of one bin by one load) and then one loop over the span.
//! Inputs in `f32` use a vectorisable sigmoid and cross-entropy ([`fast_math`]); `f64` inputs
//! are computed in `f64` (finite differences); `f16` and `bf16` go through `f32`.
//!
//! Whether the inputs are logits or probabilities is a const parameter of the loops, and each
//! task runs through [`vectorised`], so the loops vectorise on AVX2 where the CPU has it (SSE2
//! otherwise) with the same results.

mod fast_math;

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{FloatTensorOps, IntTensorOps};
use burn::backend::{Bytes, Flex};
use burn::tensor::{DType, FloatDType, IntDType, Shape};
use std::ops::Range;

use rayon::prelude::*;

use super::InstanceSumsBackend;
use super::host::{HostId, TASK_VOXELS, vectorised};
use super::spec::{
    InstanceSumsSpec, PROBABILITY_FLOOR, Statistic, SumInput, cross_entropy, logit_cross_entropy_with_tail,
    softplus_tail,
};

/// Voxels per block: a block of background voxels is summed in independent lanes, without a bin
/// lookup per voxel.
const BLOCK: usize = 8;

/// Blocks whose probabilities the two-map pass computes together ([`joint_sums`]).
const GROUP: usize = 16;

/// Voxels per span of the gradient pass: long enough for the loops over a span to vectorise.
const SPAN: usize = 256;

impl InstanceSumsBackend for Flex {
    fn instance_sums(x: FlexTensor, ids: FlexTensor, spec: InstanceSumsSpec) -> FlexTensor {
        let [rows, _] = dims(&x);
        let sums = with_inputs(x, ids, |x, ids| match x {
            Values::F32(x) => ids.sums(spec, x, rows),
            Values::F64(x) => ids.sums(spec, x, rows),
        });
        let shape = Shape::new([spec.maps * rows, spec.statistics(), spec.bins]);
        FlexTensor::new(Bytes::from_elems(sums), Layout::contiguous(shape), DType::F64)
    }

    fn instance_sums_backward(grad: FlexTensor, x: FlexTensor, ids: FlexTensor, spec: InstanceSumsSpec) -> FlexTensor {
        let [rows, voxels] = dims(&x);
        let dtype = x.dtype();
        let grad = contiguous(Flex::float_cast(grad, FloatDType::F64));
        let grad: &[f64] = grad.as_slice().expect("contiguous f64");
        let shape = Layout::contiguous(Shape::new([rows, voxels]));
        with_inputs(x, ids, |x, ids| match x {
            Values::F32(x) => {
                let dx = FlexTensor::new(Bytes::from_elems(ids.gradient(spec, x, grad, rows)), shape, DType::F32);
                // f16 and bf16 inputs were computed in f32: their gradient goes back to their type.
                if dtype == DType::F32 { dx } else { Flex::float_cast(dx, dtype.into()) }
            }
            Values::F64(x) => FlexTensor::new(Bytes::from_elems(ids.gradient(spec, x, grad, rows)), shape, DType::F64),
        })
    }
}

fn dims(x: &FlexTensor) -> [usize; 2] {
    let shape = x.layout().shape();
    [shape[0], shape[1]]
}

/// The tensor itself when its data are one row-major run, else a contiguous copy.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() { t } else { t.to_contiguous() }
}

/// The inputs as host slices, in the types the passes take.
enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

enum Ids<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

fn with_inputs<T>(x: FlexTensor, ids: FlexTensor, f: impl FnOnce(Values, Ids) -> T) -> T {
    let x = match x.dtype() {
        DType::F32 | DType::F64 => contiguous(x),
        _ => contiguous(Flex::float_cast(x, FloatDType::F32)),
    };
    let ids = match ids.dtype() {
        DType::I32 | DType::I64 => contiguous(ids),
        _ => contiguous(Flex::int_cast(ids, IntDType::I64)),
    };
    let values = match x.dtype() {
        DType::F64 => Values::F64(x.as_slice().expect("contiguous f64")),
        _ => Values::F32(x.as_slice().expect("contiguous f32")),
    };
    let ids = match ids.dtype() {
        DType::I32 => Ids::I32(ids.as_slice().expect("contiguous i32")),
        _ => Ids::I64(ids.as_slice().expect("contiguous i64")),
    };
    f(values, ids)
}

impl Ids<'_> {
    fn sums<R: Real>(&self, spec: InstanceSumsSpec, x: &[R], rows: usize) -> Vec<f64> {
        match self {
            Ids::I32(ids) => sums(spec, x, ids, rows),
            Ids::I64(ids) => sums(spec, x, ids, rows),
        }
    }

    fn gradient<R: Real>(&self, spec: InstanceSumsSpec, x: &[R], grad: &[f64], rows: usize) -> Vec<R> {
        match self {
            Ids::I32(ids) => gradient(spec, x, ids, grad, rows),
            Ids::I64(ids) => gradient(spec, x, ids, grad, rows),
        }
    }
}

/// Whether ids (a block, a span) are all background, without a branch per id.
#[inline(always)]
fn all_background<I: HostId>(ids: &[I]) -> bool {
    ids.iter().fold(0, |any, id| any | id.bin()) == 0
}

/// The bin of a block whose ids are all equal, found without a branch per id.
#[inline(always)]
fn uniform<I: HostId>(ids: &[I; BLOCK]) -> Option<usize> {
    let first = ids[0].bin();
    (ids.iter().fold(0, |any, id| any | (id.bin() ^ first)) == 0).then_some(first)
}

/// A float type the passes compute in: `f32` or `f64`.
///
/// `LOGITS` says whether the inputs are logits ([`SumInput::Logits`]) or probabilities: a
/// compile-time parameter, so that the loops over voxels have no branch on it and vectorise.
trait Real: Copy + Send + Sync + 'static + std::ops::Add<Output = Self> {
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
    /// The probability of an input.
    fn probability<const LOGITS: bool>(self) -> Self;
    /// The binary cross-entropy of one voxel against its target.
    fn cross_entropy<const LOGITS: bool>(self, target: bool) -> Self;
    /// A logit's `ln(1 + exp(-|x|))`, the part of its cross-entropy both targets share.
    fn softplus_tail(self) -> Self;
    /// A logit's cross-entropy from its [`softplus_tail`](Real::softplus_tail).
    fn logit_cross_entropy_with_tail(self, tail: Self, target: bool) -> Self;
    /// The gradient of one voxel from its input and the upstream gradients gathered for it.
    fn voxel_gradient<const LOGITS: bool>(self, g: &Upstream<Self>) -> Self;
}

/// The upstream gradients of a bin's sums, in the type of the voxels: of its `p` and `p^2` sums,
/// and of its cross-entropy sum, as `ce_target` where the bin's target is 1 and as `ce_other`
/// where it is 0 (the other is 0). For a voxel, the sum of those of its bins in every map.
#[derive(Clone, Copy, Debug)]
struct Upstream<R> {
    p: R,
    p2: R,
    ce_target: R,
    ce_other: R,
}

impl<R: Real> Upstream<R> {
    fn add(self, other: Self) -> Self {
        Self {
            p: self.p + other.p,
            p2: self.p2 + other.p2,
            ce_target: self.ce_target + other.ce_target,
            ce_other: self.ce_other + other.ce_other,
        }
    }
}

macro_rules! real {
    ($t:ty, $sigmoid:expr, $cross_entropy:expr, $tail:expr, $with_tail:expr) => {
        impl Real for $t {
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }

            #[inline(always)]
            fn from_f64(value: f64) -> Self {
                value as $t
            }

            #[inline(always)]
            fn probability<const LOGITS: bool>(self) -> Self {
                if LOGITS { $sigmoid(self) } else { self }
            }

            #[inline(always)]
            fn cross_entropy<const LOGITS: bool>(self, target: bool) -> Self {
                $cross_entropy(LOGITS, self, target)
            }

            #[inline(always)]
            fn softplus_tail(self) -> Self {
                $tail(self)
            }

            #[inline(always)]
            fn logit_cross_entropy_with_tail(self, tail: Self, target: bool) -> Self {
                $with_tail(self, tail, target)
            }

            /// Logits: `dp/dx = p (1 - p)` and `d(cross-entropy)/dx = p - t`. Probabilities:
            /// `dp/dx = 1` and `d(-ln q)/dp = -1/q` (target 1) or `1/(1 - p)` (target 0), taken at
            /// the clamped `q`. Both targets' terms, without a select (one of them is 0 for a
            /// voxel of one map).
            #[inline(always)]
            fn voxel_gradient<const LOGITS: bool>(self, g: &Upstream<Self>) -> Self {
                let p = self.probability::<LOGITS>();
                let dsums = g.p + g.p2 * 2.0 * p;
                if LOGITS {
                    dsums * p * (1.0 - p) + (g.ce_target * (p - 1.0) + g.ce_other * p)
                } else {
                    let floor = PROBABILITY_FLOOR as $t;
                    dsums + g.ce_target * (-1.0 / p.max(floor)) + g.ce_other * (1.0 / (1.0 - p).max(floor))
                }
            }
        }
    };
}

// f32 inputs: the vectorisable functions of `fast_math`, the sums in f64; f64 inputs: the
// library's functions in f64 throughout.
real!(
    f32,
    fast_math::sigmoid,
    |logits: bool, x: f32, target: bool| if logits {
        fast_math::logit_cross_entropy(x, target)
    } else {
        fast_math::probability_cross_entropy(x, target)
    },
    fast_math::softplus_tail,
    fast_math::logit_cross_entropy_with_tail
);
real!(
    f64,
    |x: f64| 1.0 / (1.0 + (-x).exp()),
    |logits: bool, x: f64, target: bool| {
        let input = if logits { SumInput::Logits } else { SumInput::Probabilities };
        cross_entropy(input, x, target)
    },
    softplus_tail,
    logit_cross_entropy_with_tail
);

/// Voxels per task for `bins` bins: more when there are more bins, so that the per-task sums
/// never take more memory than the input.
fn task_len(bins: usize) -> usize {
    TASK_VOXELS.max(bins)
}

/// The ids of every map for voxels `range` of row `row` (`ids`: `[maps * rows, voxels]`).
fn map_ids<I>(ids: &[I], maps: usize, rows: usize, voxels: usize, row: usize, range: Range<usize>) -> Vec<&[I]> {
    (0..maps).map(|m| &ids[(m * rows + row) * voxels..][range.clone()]).collect()
}

/// The sums, `[maps * rows, statistics, bins]` row-major, of `x` (`[rows, voxels]`) and `ids`
/// (`[maps * rows, voxels]`).
fn sums<R: Real, I: HostId>(spec: InstanceSumsSpec, x: &[R], ids: &[I], rows: usize) -> Vec<f64> {
    match spec.input {
        SumInput::Logits => sums_of::<true, R, I>(spec, x, ids, rows),
        SumInput::Probabilities => sums_of::<false, R, I>(spec, x, ids, rows),
    }
}

fn sums_of<const LOGITS: bool, R: Real, I: HostId>(
    spec: InstanceSumsSpec,
    x: &[R],
    ids: &[I],
    rows: usize,
) -> Vec<f64> {
    let voxels = (x.len() / rows.max(1)).max(1);
    let per_row = spec.bins * spec.statistics();
    let len = task_len(spec.bins);
    let parts: Vec<(usize, Vec<f64>)> = x
        .par_chunks(voxels)
        .enumerate()
        .flat_map(|(row, x)| {
            x.par_chunks(len).enumerate().map(move |(task, x)| {
                let ids = map_ids(ids, spec.maps, rows, voxels, row, task * len..task * len + x.len());
                (
                    row,
                    vectorised(
                        #[inline(always)]
                        || sum_task::<LOGITS, R, I>(spec, x, &ids),
                    ),
                )
            })
        })
        .collect();
    let mut all = vec![0f64; spec.maps * rows * per_row];
    for (row, part) in parts {
        for (m, part) in part.chunks(per_row).enumerate() {
            let at = (m * rows + row) * per_row;
            all[at..at + per_row].iter_mut().zip(part).for_each(|(a, b)| *a += b);
        }
    }
    all
}

/// `[map][statistic][bin]` sums of a stretch of one row (one task of [`sums`]), `ids` the
/// stretch's ids in every map: two maps by [`joint_sums`]; one (or more than two) block by
/// block, each map's voxels added as the blocks of [`joint_sums`] are.
#[inline(always)]
fn sum_task<const LOGITS: bool, R: Real, I: HostId>(spec: InstanceSumsSpec, x: &[R], ids: &[&[I]]) -> Vec<f64> {
    let offsets = Offsets::of(spec);
    let per_map = offsets.per_map;
    if let [a, b] = *ids {
        let mut acc = vec![0f64; 2 * per_map];
        joint_sums::<LOGITS, 2, R, I>(spec, x, [a, b], &mut acc);
        return acc;
    }
    let with_ce = offsets.ce.is_some();
    let mut acc = vec![0f64; per_map * ids.len()];
    // One voxel's probability and cross-entropy (when summed) into its bin of one map.
    let add = |acc: &mut [f64], p: R, ce: R, id: I| {
        let mut voxel = Run::new([id.bin()]);
        voxel.push(p.to_f64(), [ce.to_f64()]);
        voxel.add_to(acc, spec, offsets);
    };
    let zero = R::from_f64(0.0);
    let (blocks, tail) = x.as_chunks::<BLOCK>();
    let mut maps: Vec<MapSums<'_, I>> = ids
        .iter()
        .zip(acc.chunks_mut(per_map))
        .map(|(ids, acc)| {
            let (blocks, tail) = ids.as_chunks::<BLOCK>();
            MapSums { blocks, tail, acc, background: Lanes::default(), lanes: Lanes::default() }
        })
        .collect();
    for (i, x) in blocks.iter().enumerate() {
        if spec.skip_background && maps.iter().all(|map| all_background(&map.blocks[i])) {
            continue;
        }
        // Plain loops over the lanes, without bins, that the compiler vectorises; the
        // probabilities and the costly part of the cross-entropy once for every map.
        let mut p = [zero; BLOCK];
        for (p, &x) in p.iter_mut().zip(x) {
            *p = x.probability::<LOGITS>();
        }
        let mut tails = [zero; BLOCK];
        if with_ce && LOGITS {
            for (tail, &x) in tails.iter_mut().zip(x) {
                *tail = x.softplus_tail();
            }
        }
        for map in &mut maps {
            let ids = &map.blocks[i];
            if all_background(ids) {
                if !spec.skip_background {
                    map.background.count += BLOCK;
                    let ce = if with_ce { block_ce::<LOGITS, R>(x, &tails, [false; BLOCK]) } else { [zero; BLOCK] };
                    map.background.add(p, [ce], offsets);
                }
            } else if let Some(bin) = uniform(ids) {
                if bin != map.lanes.bins[0] {
                    map.lanes.flush(map.acc, spec, offsets);
                    map.lanes.bins = [bin];
                }
                map.lanes.count += BLOCK;
                let ce =
                    if with_ce { block_ce::<LOGITS, R>(x, &tails, [spec.target(bin); BLOCK]) } else { [zero; BLOCK] };
                map.lanes.add(p, [ce], offsets);
            } else {
                // A block across bins: the cross-entropies against each voxel's target in one
                // vectorised loop too, then voxel by voxel, each run of voxels in one bin summed
                // apart and added into its bin once (not a chain of additions to one bin).
                let ce = if with_ce {
                    block_ce::<LOGITS, R>(x, &tails, ids.map(|id| spec.target(id.bin())))
                } else {
                    [zero; BLOCK]
                };
                let mut run = Run::new([ids[0].bin()]);
                for ((p, ce), &id) in p.into_iter().zip(ce).zip(ids) {
                    if id.bin() != run.bins[0] {
                        run.add_to(map.acc, spec, offsets);
                        run = Run::new([id.bin()]);
                    }
                    run.push(p.to_f64(), [ce.to_f64()]);
                }
                run.add_to(map.acc, spec, offsets);
            }
        }
    }
    for map in &mut maps {
        for (&x, &id) in tail.iter().zip(map.tail) {
            let ce = if with_ce { x.cross_entropy::<LOGITS>(spec.target(id.bin())) } else { zero };
            add(map.acc, x.probability::<LOGITS>(), ce, id);
        }
        map.lanes.flush(map.acc, spec, offsets);
        map.background.flush(map.acc, spec, offsets);
    }
    acc
}

/// One map's part of a task of [`sums`]: its ids, its sums, and its lanes (the background's,
/// and those of the other bin the last uniform blocks fell in).
struct MapSums<'a, I> {
    blocks: &'a [[I; BLOCK]],
    tail: &'a [I],
    acc: &'a mut [f64],
    background: Lanes<1>,
    lanes: Lanes<1>,
}

/// The sums of `M` maps over a stretch into `acc` (`[map][statistic][bin]`, zeros) in one pass,
/// for two maps (BiCC's branches): the probabilities and the costly part of the cross-entropies
/// of [`GROUP`] blocks at a time, in loops whose long chains of operations run side by side (a
/// block alone leaves the vector units waiting on each chain: the one-map pass, where the
/// background's lanes dominate, does not gain from it); blocks of [`BLOCK`] voxels in one bin of
/// every map (the inside of a cell of both partitions) summed in lanes without a bin lookup per
/// voxel; a block across bins of any map voxel by voxel, each run of voxels in the same bins of
/// every map summed apart and added into its bin of each map once.
#[inline(always)]
fn joint_sums<const LOGITS: bool, const M: usize, R: Real, I: HostId>(
    spec: InstanceSumsSpec,
    x: &[R],
    ids: [&[I]; M],
    acc: &mut [f64],
) {
    let offsets = Offsets::of(spec);
    let with_ce = offsets.ce.is_some();
    let zero = R::from_f64(0.0);
    let (blocks, tail) = x.as_chunks::<BLOCK>();
    let id_blocks = ids.map(|ids| ids.as_chunks::<BLOCK>().0);
    // The lanes of blocks in bin 0 of every map, and those of the other bins the last uniform
    // blocks fell in.
    let (mut background, mut lanes) = (Lanes::<M>::default(), Lanes::<M>::default());
    let (mut probabilities, mut tails) = ([[zero; BLOCK]; GROUP], [[zero; BLOCK]; GROUP]);
    for (g, group) in blocks.chunks(GROUP).enumerate() {
        let first = g * GROUP;
        let in_bin_0 = |i: usize| id_blocks.iter().all(|blocks| all_background(&blocks[i]));
        if spec.skip_background && (first..first + group.len()).all(in_bin_0) {
            continue;
        }
        for (p, x) in probabilities.iter_mut().zip(group) {
            for (p, &x) in p.iter_mut().zip(x) {
                *p = x.probability::<LOGITS>();
            }
        }
        if with_ce && LOGITS {
            for (tail, x) in tails.iter_mut().zip(group) {
                for (tail, &x) in tail.iter_mut().zip(x) {
                    *tail = x.softplus_tail();
                }
            }
        }
        for (j, x) in group.iter().enumerate() {
            if spec.skip_background && in_bin_0(first + j) {
                continue;
            }
            let block: [&[I; BLOCK]; M] = std::array::from_fn(|m| &id_blocks[m][first + j]);
            let (p, tails) = (probabilities[j], &tails[j]);
            let uniform_bins = block.map(uniform);
            if uniform_bins.iter().all(Option::is_some) {
                let bins = uniform_bins.map(|bin| bin.unwrap_or_default());
                let lanes = if bins == [0; M] {
                    &mut background
                } else {
                    if bins != lanes.bins {
                        lanes.flush(acc, spec, offsets);
                        lanes.bins = bins;
                    }
                    &mut lanes
                };
                lanes.count += BLOCK;
                let targets = bins.map(|bin| [spec.target(bin); BLOCK]);
                lanes.add(p, cross_entropies::<LOGITS, M, R>(x, tails, targets, with_ce), offsets);
            } else {
                let targets = block.map(|ids| ids.map(|id| spec.target(id.bin())));
                let ce = cross_entropies::<LOGITS, M, R>(x, tails, targets, with_ce);
                let mut run = Run::<M>::new(block.map(|ids| ids[0].bin()));
                for k in 0..BLOCK {
                    let bins = block.map(|ids| ids[k].bin());
                    if bins != run.bins {
                        run.add_to(acc, spec, offsets);
                        run = Run::new(bins);
                    }
                    run.push(p[k].to_f64(), ce.map(|ce| ce[k].to_f64()));
                }
                run.add_to(acc, spec, offsets);
            }
        }
    }
    let tail_ids = ids.map(|ids| &ids[blocks.len() * BLOCK..]);
    for (k, &x) in tail.iter().enumerate() {
        let mut voxel = Run::<M>::new(tail_ids.map(|ids| ids[k].bin()));
        let ce = voxel.bins.map(|bin| if with_ce { x.cross_entropy::<LOGITS>(spec.target(bin)) } else { zero });
        voxel.push(x.probability::<LOGITS>().to_f64(), ce.map(Real::to_f64));
        voxel.add_to(acc, spec, offsets);
    }
    lanes.flush(acc, spec, offsets);
    background.flush(acc, spec, offsets);
}

/// Each map's cross-entropies of a block against its voxels' `targets` (zeros without
/// `with_ce`); a map whose targets are an earlier map's (BiCC's branches: the ground truth's)
/// takes its values.
#[inline(always)]
fn cross_entropies<const LOGITS: bool, const M: usize, R: Real>(
    x: &[R; BLOCK],
    tails: &[R; BLOCK],
    targets: [[bool; BLOCK]; M],
    with_ce: bool,
) -> [[R; BLOCK]; M] {
    let mut ce = [[R::from_f64(0.0); BLOCK]; M];
    if with_ce {
        for m in 0..M {
            ce[m] = match (0..m).find(|&n| targets[n] == targets[m]) {
                Some(n) => ce[n],
                None => block_ce::<LOGITS, R>(x, tails, targets[m]),
            };
        }
    }
    ce
}

/// The cross-entropies of a block against `targets`, from the shared tails (logits).
#[inline(always)]
fn block_ce<const LOGITS: bool, R: Real>(x: &[R; BLOCK], tails: &[R; BLOCK], targets: [bool; BLOCK]) -> [R; BLOCK] {
    let mut ce = [R::from_f64(0.0); BLOCK];
    if LOGITS {
        for (((ce, &x), &tail), target) in ce.iter_mut().zip(x).zip(tails).zip(targets) {
            *ce = x.logit_cross_entropy_with_tail(tail, target);
        }
    } else {
        for ((ce, &x), target) in ce.iter_mut().zip(x).zip(targets) {
            *ce = x.cross_entropy::<LOGITS>(target);
        }
    }
    ce
}

/// Where the statistics' bins start in a map's part of a task's accumulator (the
/// probabilities' at 0), and the length of that part.
#[derive(Clone, Copy)]
struct Offsets {
    per_map: usize,
    count: usize,
    square: Option<usize>,
    ce: Option<usize>,
}

impl Offsets {
    #[inline(always)]
    fn of(spec: InstanceSumsSpec) -> Self {
        let at = |s: Statistic| spec.index(s).map(|i| i * spec.bins);
        Self {
            per_map: spec.bins * spec.statistics(),
            count: at(Statistic::Count).expect("always summed"),
            square: at(Statistic::Square),
            ce: at(Statistic::CrossEntropy),
        }
    }
}

/// Adds the sums of voxels in bin `bins[m]` of every map `m` into `acc` (`[map][statistic][bin]`):
/// `ce[m]` the cross-entropy against the targets of map `m`; not into bin 0 when it is skipped.
#[inline(always)]
fn add_sums<const M: usize>(
    acc: &mut [f64],
    spec: InstanceSumsSpec,
    offsets: Offsets,
    bins: [usize; M],
    [p, p2, count]: [f64; 3],
    ce: [f64; M],
) {
    for (m, (b, ce)) in bins.into_iter().zip(ce).enumerate() {
        if spec.skip_background && b == 0 {
            continue;
        }
        let acc = &mut acc[m * offsets.per_map..];
        acc[b] += p;
        acc[offsets.count + b] += count;
        if let Some(at) = offsets.square {
            acc[at + b] += p2;
        }
        if let Some(at) = offsets.ce {
            acc[at + b] += ce;
        }
    }
}

/// The sums of a run of voxels in the same bins of every map within a block across bins.
struct Run<const M: usize> {
    bins: [usize; M],
    p: f64,
    p2: f64,
    count: f64,
    /// Against the targets of each map.
    ce: [f64; M],
}

impl<const M: usize> Run<M> {
    #[inline(always)]
    fn new(bins: [usize; M]) -> Self {
        Self { bins, p: 0.0, p2: 0.0, count: 0.0, ce: [0.0; M] }
    }

    #[inline(always)]
    fn push(&mut self, p: f64, ce: [f64; M]) {
        self.p += p;
        self.p2 += p * p;
        self.count += 1.0;
        for (sum, ce) in self.ce.iter_mut().zip(ce) {
            *sum += ce;
        }
    }

    /// Adds the run's sums into its bin of every map of `acc`.
    #[inline(always)]
    fn add_to(&self, acc: &mut [f64], spec: InstanceSumsSpec, offsets: Offsets) {
        add_sums(acc, spec, offsets, self.bins, [self.p, self.p2, self.count], self.ce);
    }
}

/// The sums of blocks that fall in the same bins of every map, in lanes.
struct Lanes<const M: usize> {
    /// p and p^2 lanes.
    sums: [[f64; BLOCK]; 2],
    /// Cross-entropy lanes, against the targets of each map.
    ce: [[f64; BLOCK]; M],
    /// Voxels summed.
    count: usize,
    bins: [usize; M],
}

impl<const M: usize> Default for Lanes<M> {
    fn default() -> Self {
        Self { sums: [[0.0; BLOCK]; 2], ce: [[0.0; BLOCK]; M], count: 0, bins: [0; M] }
    }
}

impl<const M: usize> Lanes<M> {
    /// Adds a block's p, p^2 and cross-entropies (when summed).
    #[inline(always)]
    fn add<R: Real>(&mut self, p: [R; BLOCK], ce: [[R; BLOCK]; M], offsets: Offsets) {
        for (lane, p) in self.sums[0].iter_mut().zip(p) {
            *lane += p.to_f64();
        }
        if offsets.square.is_some() {
            for (lane, p) in self.sums[1].iter_mut().zip(p) {
                *lane += p.to_f64() * p.to_f64();
            }
        }
        if offsets.ce.is_some() {
            for (lanes, ce) in self.ce.iter_mut().zip(ce) {
                for (lane, ce) in lanes.iter_mut().zip(ce) {
                    *lane += ce.to_f64();
                }
            }
        }
    }

    /// Adds the lanes into their bins of `acc` and clears them.
    #[inline(always)]
    fn flush(&mut self, acc: &mut [f64], spec: InstanceSumsSpec, offsets: Offsets) {
        if self.count == 0 {
            return;
        }
        // The sums of the statistics summed only.
        let sum = |lanes: &[f64; BLOCK], summed: bool| if summed { lanes.iter().sum::<f64>() } else { 0.0 };
        let sums = [sum(&self.sums[0], true), sum(&self.sums[1], offsets.square.is_some()), self.count as f64];
        add_sums(acc, spec, offsets, self.bins, sums, self.ce.each_ref().map(|ce| sum(ce, offsets.ce.is_some())));
        *self = Self { bins: self.bins, ..Self::default() };
    }
}

/// The gradient with respect to `x` (`[rows, voxels]`) of a scalar whose gradient with respect
/// to the sums is `grad` (`[maps * rows, statistics, bins]`).
fn gradient<R: Real, I: HostId>(spec: InstanceSumsSpec, x: &[R], ids: &[I], grad: &[f64], rows: usize) -> Vec<R> {
    match spec.input {
        SumInput::Logits => gradient_of::<true, R, I>(spec, x, ids, grad, rows),
        SumInput::Probabilities => gradient_of::<false, R, I>(spec, x, ids, grad, rows),
    }
}

fn gradient_of<const LOGITS: bool, R: Real, I: HostId>(
    spec: InstanceSumsSpec,
    x: &[R],
    ids: &[I],
    grad: &[f64],
    rows: usize,
) -> Vec<R> {
    let voxels = (x.len() / rows.max(1)).max(1);
    let bins = spec.bins;
    let stat =
        |s: Option<usize>, row: usize, b: usize| s.map_or(0.0, |s| grad[(row * spec.statistics() + s) * bins + b]);
    let (square, ce) = (spec.index(Statistic::Square), spec.index(Statistic::CrossEntropy));
    let len = task_len(bins);
    let mut out = vec![R::from_f64(0.0); x.len()];
    out.par_chunks_mut(voxels).zip(x.par_chunks(voxels)).enumerate().for_each(|(row, (out, x))| {
        // Bin 0 left out: zero upstream gradients give its voxels a zero gradient.
        let left_out = |b: usize| spec.skip_background && b == 0;
        let bin_grads: Vec<Vec<Upstream<R>>> = (0..spec.maps)
            .map(|m| {
                (0..bins)
                    .map(|b| {
                        let value =
                            |s: Option<usize>| R::from_f64(if left_out(b) { 0.0 } else { stat(s, m * rows + row, b) });
                        let (ce, zero) = (value(ce), R::from_f64(0.0));
                        let (ce_target, ce_other) = if spec.target(b) { (ce, zero) } else { (zero, ce) };
                        Upstream { p: value(Some(0)), p2: value(square), ce_target, ce_other }
                    })
                    .collect()
            })
            .collect();
        out.par_chunks_mut(len).zip(x.par_chunks(len)).enumerate().for_each(|(task, (out, x))| {
            let ids = map_ids(ids, spec.maps, rows, voxels, row, task * len..task * len + x.len());
            vectorised(
                #[inline(always)]
                || gradient_task::<LOGITS, R, I>(spec, out, x, &ids, &bin_grads),
            )
        });
    });
    out
}

/// The gradient of a stretch of one row from the bin gradients of that row in every map (one
/// task of [`gradient`]), with the gathers of the statistics summed only.
#[inline(always)]
fn gradient_task<const LOGITS: bool, R: Real, I: HostId>(
    spec: InstanceSumsSpec,
    out: &mut [R],
    x: &[R],
    ids: &[&[I]],
    bin_grads: &[Vec<Upstream<R>>],
) {
    match (spec.squares, spec.cross_entropy) {
        (false, false) => gradient_span::<LOGITS, false, false, R, I>(spec, out, x, ids, bin_grads),
        (true, false) => gradient_span::<LOGITS, true, false, R, I>(spec, out, x, ids, bin_grads),
        (false, true) => gradient_span::<LOGITS, false, true, R, I>(spec, out, x, ids, bin_grads),
        (true, true) => gradient_span::<LOGITS, true, true, R, I>(spec, out, x, ids, bin_grads),
    }
}

/// `SQUARES` and `CROSS_ENTROPY`: whether those statistics are summed (their gradients are
/// gathered per voxel only then: the gathers cost the most outside all-background spans).
#[inline(always)]
fn gradient_span<const LOGITS: bool, const SQUARES: bool, const CROSS_ENTROPY: bool, R: Real, I: HostId>(
    spec: InstanceSumsSpec,
    out: &mut [R],
    x: &[R],
    ids: &[&[I]],
    bin_grads: &[Vec<Upstream<R>>],
) {
    let zero = R::from_f64(0.0);
    // A voxel in bin 0 of every map.
    let none = Upstream { p: zero, p2: zero, ce_target: zero, ce_other: zero };
    let background = bin_grads.iter().map(|g| g[0]).fold(none, Upstream::add);
    // Each span: all background in one loop; otherwise every voxel's bin values gathered first
    // (map after map, a block of one bin at once), then one loop over the span. Loops of `SPAN` voxels
    // vectorise (loops over a block of 8 do not: too short for the vectoriser).
    let (mut gp, mut gp2, mut target, mut other) = ([zero; SPAN], [zero; SPAN], [zero; SPAN], [zero; SPAN]);
    for (span, (out, x)) in out.chunks_mut(SPAN).zip(x.chunks(SPAN)).enumerate() {
        let voxels = span * SPAN..span * SPAN + x.len();
        if ids.iter().all(|ids| all_background(&ids[voxels.clone()])) {
            if spec.skip_background {
                out.fill(zero);
            } else {
                for (out, &x) in out.iter_mut().zip(x) {
                    *out = x.voxel_gradient::<LOGITS>(&background);
                }
            }
            continue;
        }
        // The statistics not summed keep their zero gradients.
        let mut gathered = Gathered { p: &mut gp, p2: &mut gp2, target: &mut target, other: &mut other };
        let mut maps = ids.iter().zip(bin_grads);
        if let Some((ids, bin_grads)) = maps.next() {
            gathered.gather::<true, SQUARES, CROSS_ENTROPY, I>(&ids[voxels.clone()], bin_grads);
        }
        for (ids, bin_grads) in maps {
            gathered.gather::<false, SQUARES, CROSS_ENTROPY, I>(&ids[voxels.clone()], bin_grads);
        }
        let n = x.len();
        let lanes = out.iter_mut().zip(x).zip(&gp[..n]).zip(&gp2[..n]).zip(&target[..n]).zip(&other[..n]);
        for (((((out, &x), &p), &p2), &ce_target), &ce_other) in lanes {
            *out = x.voxel_gradient::<LOGITS>(&Upstream { p, p2, ce_target, ce_other });
        }
    }
}

/// The upstream gradients gathered for the voxels of a span (see [`gradient_span`]), one
/// array per statistic.
struct Gathered<'a, R> {
    p: &'a mut [R; SPAN],
    p2: &'a mut [R; SPAN],
    target: &'a mut [R; SPAN],
    other: &'a mut [R; SPAN],
}

impl<R: Real> Gathered<'_, R> {
    /// Writes (`FIRST`, the first map) or adds (the other maps) the bin gradients of a span's
    /// voxels in one map (`ids`, the span's ids there): a block of [`BLOCK`] voxels in one bin
    /// (inside a cell, the common case) by one load of its bin and stores the compiler
    /// vectorises, any other voxel by its own bin.
    #[inline(always)]
    fn gather<const FIRST: bool, const SQUARES: bool, const CROSS_ENTROPY: bool, I: HostId>(
        &mut self,
        ids: &[I],
        bin_grads: &[Upstream<R>],
    ) {
        let (blocks, tail) = ids.as_chunks::<BLOCK>();
        for (b, block) in blocks.iter().enumerate() {
            let at = b * BLOCK;
            match uniform(block) {
                Some(bin) => {
                    let g = bin_grads[bin];
                    for k in at..at + BLOCK {
                        self.put::<FIRST, SQUARES, CROSS_ENTROPY>(k, &g);
                    }
                }
                None => {
                    for (k, &id) in (at..).zip(block) {
                        self.put::<FIRST, SQUARES, CROSS_ENTROPY>(k, &bin_grads[id.bin()]);
                    }
                }
            }
        }
        for (k, &id) in (blocks.len() * BLOCK..).zip(tail) {
            self.put::<FIRST, SQUARES, CROSS_ENTROPY>(k, &bin_grads[id.bin()]);
        }
    }

    /// Voxel `k`'s gradients of one map, written or added.
    #[inline(always)]
    fn put<const FIRST: bool, const SQUARES: bool, const CROSS_ENTROPY: bool>(&mut self, k: usize, g: &Upstream<R>) {
        let add = |to: &mut R, value: R| *to = if FIRST { value } else { *to + value };
        add(&mut self.p[k], g.p);
        if SQUARES {
            add(&mut self.p2[k], g.p2);
        }
        if CROSS_ENTROPY {
            add(&mut self.target[k], g.ce_target);
            add(&mut self.other[k], g.ce_other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    fn probability<R: Real>(x: R, input: SumInput) -> R {
        match input {
            SumInput::Logits => x.probability::<true>(),
            SumInput::Probabilities => x.probability::<false>(),
        }
    }

    /// `rows` rows of `voxels` inputs and ids: long background stretches (whole blocks) and
    /// short instance runs, ids up to `max_id`.
    fn inputs(rng: &mut SmallRng, rows: usize, voxels: usize, max_id: u64, input: SumInput) -> (Vec<f64>, Vec<i64>) {
        let x = (0..rows * voxels)
            .map(|_| match input {
                SumInput::Probabilities => rng.random::<f64>(),
                SumInput::Logits => rng.random::<f64>() * 16.0 - 8.0,
            })
            .collect();
        let mut ids = vec![0i64; rows * voxels];
        let mut i = 0;
        while i < ids.len() {
            i += rng.random_range(0..40) as usize;
            let id = 1 + rng.random_range(0..max_id) as i64;
            for _ in 0..rng.random_range(0..5) {
                if i < ids.len() {
                    ids[i] = id;
                    i += 1;
                }
            }
        }
        (x, ids)
    }

    /// Ids like Voronoi cells': every voxel in a bin (`0..=max_id`), in runs of 1 to 24 voxels.
    fn cell_ids(rng: &mut SmallRng, len: usize, max_id: u64) -> Vec<i64> {
        let mut ids = Vec::with_capacity(len);
        while ids.len() < len {
            let (id, run) = (rng.random_range(0..=max_id) as i64, rng.random_range(1..=24));
            ids.extend(std::iter::repeat_n(id, run.min(len - ids.len())));
        }
        ids
    }

    fn assert_close(found: &[f64], expected: &[f64], rel: f64, what: &str) {
        assert_eq!(found.len(), expected.len(), "{what}");
        for (i, (a, b)) in found.iter().zip(expected).enumerate() {
            assert!((a - b).abs() <= rel * b.abs().max(1.0), "{what}[{i}]: {a} vs {b}");
        }
    }

    /// Rows longer than a task and not a multiple of a block, few and many bins (more bins than
    /// a task has voxels), `i32` and `i64` ids, `f32` and `f64` inputs, every statistic, both
    /// inputs: sums and gradient voxel by voxel against the definitions.
    #[test]
    fn sums_and_gradient_match_a_plain_loop() {
        let mut rng = SmallRng::seed_from_u64(7);
        for (rows, voxels, max_id) in
            [(3, 2 * TASK_VOXELS + 13, 9), (2, TASK_VOXELS + 5, 3 * TASK_VOXELS as u64), (1, 7, 2), (4, 1, 1)]
        {
            for input in [SumInput::Logits, SumInput::Probabilities] {
                // Sparse instances, and cells covering the row in runs (whole blocks of one
                // bin, blocks across two bins and across more).
                let (x, sparse) = inputs(&mut rng, rows, voxels, max_id, input);
                let cells = cell_ids(&mut rng, rows * voxels, max_id);
                for ids in [sparse, cells] {
                    let bins = *ids.iter().max().unwrap() as usize + 1;
                    let ids32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
                    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                    let variants = [
                        (false, false, false, false),
                        (true, true, false, false),
                        (false, true, true, false),
                        (true, true, true, true),
                    ];
                    for (squares, ce, split, skip) in variants {
                        let spec = InstanceSumsSpec::new(input, bins)
                            .with_squares(squares)
                            .with_cross_entropy(ce)
                            .with_skip_background(skip);
                        // The upper half of the bins as target-0 regions (Voronoi cells).
                        let spec = if split { spec.with_foreground_end(bins / 2 + 1) } else { spec };
                        let stats = spec.statistics();
                        // The definition, in f64.
                        let definition = |x: &[f64]| {
                            let mut expected = vec![0f64; rows * stats * bins];
                            for (i, (&x, &id)) in x.iter().zip(&ids).enumerate() {
                                if skip && id == 0 {
                                    continue; // bin 0 left out
                                }
                                let p = probability(x, input);
                                let at = |s: usize| (i / voxels * stats + s) * bins + id as usize;
                                expected[at(0)] += p;
                                expected[at(1)] += 1.0;
                                if let Some(s) = spec.index(super::super::Statistic::Square) {
                                    expected[at(s)] += p * p;
                                }
                                if let Some(s) = spec.index(super::super::Statistic::CrossEntropy) {
                                    expected[at(s)] += cross_entropy(input, x, spec.target(id as usize));
                                }
                            }
                            expected
                        };
                        let expected = definition(&x);
                        assert_close(&sums(spec, &x, &ids, rows), &expected, 1e-9, "f64 sums");
                        assert_close(&sums(spec, &x, &ids32, rows), &expected, 1e-9, "f64 sums, i32 ids");
                        // f32 inputs: the probabilities are computed in f32, the sums in f64 (against
                        // the definition at the f32 inputs: `-ln(1 - p)` near `p = 1` magnifies the
                        // rounding of the inputs themselves).
                        let x32_as_f64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
                        assert_close(&sums(spec, &x32, &ids32, rows), &definition(&x32_as_f64), 1e-6, "f32 sums");

                        // The gradient: made-up bin gradients, checked voxel by voxel.
                        let grad: Vec<f64> = (0..rows * stats * bins).map(|i| (i as f64 * 0.7).sin()).collect();
                        let g64 = gradient(spec, &x, &ids, &grad, rows);
                        let g32 = gradient(spec, &x32, &ids32, &grad, rows);
                        for (i, (&x, &id)) in x.iter().zip(&ids).enumerate() {
                            let at = |s: Option<usize>| {
                                s.map_or(0.0, |s| grad[(i / voxels * stats + s) * bins + id as usize])
                            };
                            let (gp, gp2, gce) = (
                                at(Some(0)),
                                at(spec.index(super::super::Statistic::Square)),
                                at(spec.index(super::super::Statistic::CrossEntropy)),
                            );
                            let t = f64::from(u8::from(spec.target(id as usize)));
                            let expected = |p: f64| {
                                let (dp_dx, dce_dx) = match input {
                                    SumInput::Logits => (p * (1.0 - p), p - t),
                                    SumInput::Probabilities if t > 0.0 => (1.0, -1.0 / p.max(PROBABILITY_FLOOR)),
                                    SumInput::Probabilities => (1.0, 1.0 / (1.0 - p).max(PROBABILITY_FLOOR)),
                                };
                                (gp + 2.0 * gp2 * p) * dp_dx + gce * dce_dx
                            };
                            if skip && id == 0 {
                                assert_eq!((g64[i], g32[i]), (0.0, 0.0), "bin 0 left out, voxel {i}");
                                continue;
                            }
                            let e64 = expected(probability(x, input));
                            assert!(
                                (g64[i] - e64).abs() <= 1e-9 * e64.abs().max(1.0),
                                "gradient[{i}]: {} vs {e64}",
                                g64[i]
                            );
                            // f32: the same rule at the f32 probability the pass computes.
                            let e32 = expected(f64::from(probability(x32[i], input)));
                            let tolerance = 1e-4 * e32.abs().max(1.0);
                            assert!(
                                (f64::from(g32[i]) - e32).abs() <= tolerance,
                                "f32 gradient[{i}]: {} vs {e32}",
                                g32[i]
                            );
                        }
                    }
                }
            }
        }
    }

    /// Two maps in one pass (and three: two together, one apart): each map's sums are those of
    /// its own pass (the same values, added in another order: a run ends where either map's bin
    /// changes), and the gradient is the sum of the passes' gradients.
    #[test]
    fn maps_share_one_pass() {
        let mut rng = SmallRng::seed_from_u64(11);
        for (rows, voxels) in [(2, TASK_VOXELS + 13), (1, 7), (3, 2 * SPAN + 5)] {
            for input in [SumInput::Logits, SumInput::Probabilities] {
                let (x, sparse) = inputs(&mut rng, rows, voxels, 9, input);
                let cells = cell_ids(&mut rng, rows * voxels, 9);
                let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                for (a, b) in [(&sparse, &cells), (&cells, &sparse)] {
                    let both: Vec<i64> = a.iter().chain(b).copied().collect();
                    for (squares, ce, split, skip) in
                        [(false, false, false, false), (true, true, true, false), (true, true, false, true)]
                    {
                        let one = InstanceSumsSpec::new(input, 10)
                            .with_squares(squares)
                            .with_cross_entropy(ce)
                            .with_skip_background(skip);
                        let one = if split { one.with_foreground_end(6) } else { one };
                        let two = one.with_maps(2);
                        let separate = [sums(one, &x, a, rows), sums(one, &x, b, rows)].concat();
                        assert_close(&sums(two, &x, &both, rows), &separate, 1e-13, "f64 sums");
                        let separate = [sums(one, &x32, a, rows), sums(one, &x32, b, rows)].concat();
                        assert_close(&sums(two, &x32, &both, rows), &separate, 1e-13, "f32 sums");
                        // Three maps: the first two together, the third as a map of its own.
                        let three: Vec<i64> = both.iter().chain(a).copied().collect();
                        let separate =
                            [sums(one, &x, a, rows), sums(one, &x, b, rows), sums(one, &x, a, rows)].concat();
                        assert_close(&sums(one.with_maps(3), &x, &three, rows), &separate, 1e-13, "three maps");

                        let half = rows * one.statistics() * one.bins;
                        let grad: Vec<f64> = (0..2 * half).map(|i| (i as f64 * 0.37).cos()).collect();
                        let (ga, gb) =
                            (gradient(one, &x, a, &grad[..half], rows), gradient(one, &x, b, &grad[half..], rows));
                        let expected: Vec<f64> = ga.iter().zip(&gb).map(|(a, b)| a + b).collect();
                        assert_close(&gradient(two, &x, &both, &grad, rows), &expected, 1e-12, "f64 gradient");
                        let (ga, gb) =
                            (gradient(one, &x32, a, &grad[..half], rows), gradient(one, &x32, b, &grad[half..], rows));
                        let expected: Vec<f64> = ga.iter().zip(&gb).map(|(a, b)| f64::from(a + b)).collect();
                        let found: Vec<f64> =
                            gradient(two, &x32, &both, &grad, rows).into_iter().map(f64::from).collect();
                        assert_close(&found, &expected, 1e-5, "f32 gradient");
                    }
                }
            }
        }
    }

    /// Saturated and edge inputs: finite sums and gradients, the exact BCE gradient at 0.
    #[test]
    fn edges_give_finite_sums_and_gradients() {
        let x = [f32::INFINITY, f32::NEG_INFINITY, 0.0, f32::INFINITY, f32::NEG_INFINITY, 0.0, 1e30, -1e30];
        let ids = [0i32, 0, 0, 1, 1, 1, 1, 0];
        let spec = InstanceSumsSpec::new(SumInput::Logits, 2).with_squares(true).with_cross_entropy(true);
        let s = sums(spec, &x, &ids, 1);
        assert!(s.iter().all(|v| v.is_finite()), "{s:?}");
        let grad = vec![1.0; spec.statistics() * 2];
        let g = gradient(spec, &x, &ids, &grad, 1);
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
        // Only the cross-entropy's gradient survives saturation: sigmoid(x) - t.
        assert_eq!(g[0], 1.0);
        assert!(g[1].abs() < 1e-30, "{}", g[1]);
        assert_eq!(&g[3..5], &[0.0, -1.0]);
        // At x = 0: p = 1/2, (1 + 2 * 1/2) * 1/4 + (1/2 - t).
        assert_eq!(g[2], 0.5 + 0.5);
        assert_eq!(g[5], 0.5 - 0.5);

        let p = [0.0f64, 1.0, 0.0, 1.0];
        let ids = [0i64, 0, 1, 1];
        let spec = InstanceSumsSpec::new(SumInput::Probabilities, 2).with_cross_entropy(true);
        let s = sums(spec, &p, &ids, 1);
        assert!(s.iter().all(|v| v.is_finite()), "{s:?}");
        let g = gradient(spec, &p, &ids, &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0], 1);
        let expected = [1.0, 1e12, -1e12, -1.0];
        assert!(g.iter().zip(expected).all(|(a, b)| (a - b).abs() <= 1e-9 * b.abs()), "{g:?}");
    }
}
