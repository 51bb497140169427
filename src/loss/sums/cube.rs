//! The op on burn's cube backend: one kernel for the sums, one for the gradient, for every
//! cubecl runtime (wgpu, cuda).
//!
//! The sums kernel gives each workgroup a tile of [`TILE`] voxels of one row, [`PER_UNIT`]
//! consecutive voxels per unit:
//! - background voxels (id 0, most of a volume) are summed in registers, reduced across the
//!   workgroup in shared memory, and written once per tile, with no atomic: per-tile partials,
//!   summed in a tree afterwards;
//! - the other voxels (instances, and background regions such as Voronoi cells) are summed in
//!   runs of equal id, and each run is added to the bins of the
//!   tile's *chunk* (a group of tiles with bins of its own, so that no `f32` bin takes more than a
//!   chunk's voxels) with one atomic per statistic: the device's float atomic add where it has
//!   one, a compare-and-swap loop on the bits where it has not. The chunks are summed afterwards.
//!
//! The result depends on scheduling only through the order of additions inside a chunk's bin
//! (float rounding). The gradient kernel reads every voxel once and gathers its bin's upstream
//! gradients.

use burn::backend::ops::{FloatTensorOps, IntTensorOps};
use burn::tensor::{DType, FloatDType, IntDType, Shape, Slice};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, zeros_client};
use burn_cubecl::ops::reshape;
use burn_cubecl::tensor::CubeTensor;
use cubecl::features::AtomicUsage;
use cubecl::ir::{ElemType, FloatKind, IntKind};
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use super::InstanceSumsBackend;
use super::spec::{InstanceSumsSpec, MAX_F32_CHUNK_BINS, MAX_LOGIT_CROSS_ENTROPY, PROBABILITY_FLOOR, SumInput};

/// Units per workgroup of the sums kernel.
const UNITS: u32 = 256;
/// Consecutive voxels per unit.
const PER_UNIT: u32 = 16;
/// Voxels per workgroup.
const TILE: u32 = UNITS * PER_UNIT;
/// The most voxels one chunk's bins take, when the bins leave room for it.
const CHUNK_VOXELS: usize = 1 << 16;

/// Which float atomic add the device offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtomicAdd {
    /// The device adds `f32` atomically.
    Native,
    /// Emulated with a compare-and-swap loop on the bits.
    CompareAndSwap,
}

/// Whether the device of `client` runs kernels on 64-bit integers (wgpu needs the adapter's
/// `SHADER_INT64`, which lavapipe and some GPUs lack).
pub(crate) fn int64_kernels(client: &Client) -> bool {
    client.properties().supports_type(ElemType::Int(IntKind::I64))
}

/// The float atomic add the device of `client` offers.
pub(crate) fn atomic_add(client: &Client) -> AtomicAdd {
    let usage = client.properties().atomic_type_usage(Type::atomic(ElemType::Float(FloatKind::F32)));
    if usage.contains(AtomicUsage::Add) { AtomicAdd::Native } else { AtomicAdd::CompareAndSwap }
}

impl InstanceSumsBackend for CubeBackend {
    fn instance_sums(x: CubeTensor, ids: CubeTensor, spec: InstanceSumsSpec) -> CubeTensor {
        let [x_rows, voxels] = x.meta.shape().dims::<2>();
        // One row of sums per row of every map; the kernel reads each map's row of `x`.
        let rows = x_rows * spec.maps;
        let stats = spec.statistics();
        let bins = spec.bins;
        let client = x.client.clone();
        let device = x.device.clone();
        let x = flat(x);
        let ids = flat(i32_ids(ids));
        let tiles = voxels.div_ceil(TILE as usize).max(1);
        // Tiles per chunk: at least CHUNK_VOXELS per chunk's worth where the bins allow it.
        let per_row_chunk = stats * bins;
        let max_chunks = (MAX_F32_CHUNK_BINS / (rows * per_row_chunk).max(1)).clamp(1, tiles);
        let tiles_per_chunk = tiles.div_ceil(max_chunks).max((CHUNK_VOXELS / TILE as usize).min(tiles)).max(1);
        let chunks = tiles.div_ceil(tiles_per_chunk);
        let chunk_bins =
            zeros_client(client.clone(), device.clone(), Shape::new([rows * chunks * per_row_chunk]), DType::F32);
        let background = empty_device_contiguous_dtype(
            client.clone(),
            device.clone(),
            Shape::new([rows * tiles * stats]),
            DType::F32,
        );
        if rows > 0 && voxels > 0 {
            let cube_count = CubeCount::Static(tiles as u32, rows as u32, 1);
            let cube_dim = CubeDim::new_1d(UNITS);
            let dtype = float_elem(x.dtype);
            let launch = match atomic_add(&client) {
                AtomicAdd::Native => sums_kernel::launch::<NativeAdd>,
                AtomicAdd::CompareAndSwap => sums_kernel::launch::<CompareAndSwapAdd>,
            };
            // Every index the kernel forms is in bounds: voxels are checked against `voxels`, rows,
            // tiles and chunks come from the grid sized here (chunks = ceil(tiles /
            // tiles_per_chunk)), and bins are ids, which the callers check in `0..bins`
            // (`instance_sums`, `bin_ids`); the checked launch bounds every access again.
            launch(
                &client,
                cube_count,
                cube_dim,
                x.into_tensor_arg(),
                ids.into_tensor_arg(),
                chunk_bins.clone().into_tensor_arg(),
                background.clone().into_tensor_arg(),
                x_rows as u32,
                voxels as u32,
                bins as u32,
                foreground_end(spec),
                tiles_per_chunk as u32,
                spec.input == SumInput::Logits,
                spec.squares,
                spec.cross_entropy,
                dtype,
            );
        }
        // Chunks and tiles summed by burn's reductions (trees), then the background into bin 0.
        let sums = CubeBackend::float_sum_dim(reshape(chunk_bins, Shape::new([rows, chunks, per_row_chunk])), 1);
        let sums = reshape(sums, Shape::new([rows, stats, bins]));
        let background = CubeBackend::float_sum_dim(reshape(background, Shape::new([rows, tiles, stats])), 1);
        let background = if spec.skip_background {
            zeros_client(client, device, Shape::new([rows, stats, 1]), DType::F32)
        } else {
            reshape(background, Shape::new([rows, stats, 1]))
        };
        CubeBackend::float_slice_assign(sums, &bin_zero(rows, stats), background)
    }

    fn instance_sums_backward(grad: CubeTensor, x: CubeTensor, ids: CubeTensor, spec: InstanceSumsSpec) -> CubeTensor {
        let [rows, voxels] = x.meta.shape().dims::<2>();
        let client = x.client.clone();
        let device = x.device.clone();
        let dtype = x.dtype;
        let grad = if grad.dtype == DType::F32 { grad } else { CubeBackend::float_cast(grad, FloatDType::F32) };
        // Bin 0 left out: zero upstream gradients give its voxels a zero gradient.
        let grad = if spec.skip_background {
            let (stats, grad_rows) = (spec.statistics(), rows * spec.maps);
            let zeros = zeros_client(client.clone(), device.clone(), Shape::new([grad_rows, stats, 1]), DType::F32);
            CubeBackend::float_slice_assign(grad, &bin_zero(grad_rows, stats), zeros)
        } else {
            grad
        };
        let grad = flat(grad);
        let x = flat(x);
        let ids = flat(i32_ids(ids));
        let total = rows * voxels;
        let dx = empty_device_contiguous_dtype(client.clone(), device, Shape::new([total]), dtype);
        if total > 0 {
            let cube_dim = CubeDim::new(&client, total);
            let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
            // The kernel reads and writes voxel `ABSOLUTE_POS < total` only (and its id in each of
            // the `maps` maps, `m * total + ABSOLUTE_POS`), and the bins of ids checked in
            // `0..bins` by the callers.
            gradient_kernel::launch(
                &client,
                cube_count,
                cube_dim,
                grad.into_tensor_arg(),
                x.into_tensor_arg(),
                ids.into_tensor_arg(),
                dx.clone().into_tensor_arg(),
                voxels as u32,
                spec.bins as u32,
                foreground_end(spec),
                total as u32,
                spec.maps as u32,
                spec.input == SumInput::Logits,
                spec.squares,
                spec.cross_entropy,
                float_elem(dtype),
            );
        }
        reshape(dx, Shape::new([rows, voxels]))
    }
}

/// Bin 0 of every row and statistic of `[rows, statistics, bins]` sums.
fn bin_zero(rows: usize, stats: usize) -> [Slice; 3] {
    [Slice::from(0..rows), Slice::from(0..stats), Slice::from(0..1)]
}

/// A contiguous one-dimensional view of a tensor, for linear indexing in the kernels.
fn flat(t: CubeTensor) -> CubeTensor {
    let n = t.meta.num_elements();
    reshape(into_contiguous(t), Shape::new([n]))
}

/// The first target-0 bin after the foreground, as the kernels take it (ids are `i32`).
fn foreground_end(spec: InstanceSumsSpec) -> u32 {
    spec.foreground_end.map_or(u32::MAX, |end| end.min(u32::MAX as usize) as u32)
}

fn i32_ids(ids: CubeTensor) -> CubeTensor {
    if ids.dtype == DType::I32 { ids } else { CubeBackend::int_cast(ids, IntDType::I32) }
}

fn float_elem(dtype: DType) -> ElemType {
    match dtype {
        DType::F64 => ElemType::Float(FloatKind::F64),
        DType::F16 => ElemType::Float(FloatKind::F16),
        DType::BF16 => ElemType::Float(FloatKind::BF16),
        _ => ElemType::Float(FloatKind::F32),
    }
}

/// How a run's sum is added to a bin.
#[cube]
trait BinAdd: Send + Sync + 'static {
    /// The type the bins are bound as.
    type Proxy: Numeric;

    fn add(bins: &mut Tensor<Atomic<Self::Proxy>>, index: usize, value: f32);
}

#[derive(CubeType)]
struct NativeAdd;

#[derive(CubeType)]
struct CompareAndSwapAdd;

#[cube]
impl BinAdd for NativeAdd {
    type Proxy = f32;

    fn add(bins: &mut Tensor<Atomic<f32>>, index: usize, value: f32) {
        bins[index].fetch_add(value);
    }
}

#[cube]
impl BinAdd for CompareAndSwapAdd {
    type Proxy = u32;

    fn add(bins: &mut Tensor<Atomic<u32>>, index: usize, value: f32) {
        let mut current = bins[index].load();
        loop {
            let expected = current;
            let next = (f32::from_bits(current) + value).to_bits();
            current = bins[index].compare_exchange_weak(current, next);
            if current == expected {
                break;
            }
        }
    }
}

/// The probability of an input.
#[cube]
fn probability(x: f32, #[comptime] logits: bool) -> f32 {
    if comptime!(logits) { 1.0 / (1.0 + (-x).exp()) } else { x }
}

/// The binary cross-entropy of one voxel (see [`cross_entropy`](super::spec::cross_entropy)).
#[cube]
fn cross_entropy(x: f32, p: f32, target: bool, #[comptime] logits: bool) -> f32 {
    if comptime!(logits) {
        let z = if target { -x } else { x };
        let value = f32::max(z, 0.0) + (-f32::abs(z)).exp().log1p();
        f32::min(value, MAX_LOGIT_CROSS_ENTROPY as f32)
    } else {
        let q = if target { p } else { 1.0 - p };
        -f32::max(q, PROBABILITY_FLOOR as f32).ln()
    }
}

/// Sums of one tile (see the module doc). `chunk_bins` is `[maps * rows, chunks, statistics,
/// bins]` and `background` `[maps * rows, tiles, statistics]`, both flat; the workgroups' rows
/// are those of every map, each reading its row of `x` (`x_rows` rows).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn sums_kernel<F: Float, A: BinAdd>(
    x: &Tensor<F>,
    ids: &Tensor<i32>,
    chunk_bins: &mut Tensor<Atomic<A::Proxy>>,
    background: &mut Tensor<f32>,
    x_rows: u32,
    voxels: u32,
    bins: u32,
    foreground_end: u32,
    tiles_per_chunk: u32,
    #[comptime] logits: bool,
    #[comptime] squares: bool,
    #[comptime] with_ce: bool,
    #[define(F)] _dtype: ElemType,
) {
    let stats = comptime!(2 + squares as u32 + with_ce as u32);
    let square_at = comptime!(2u32);
    let ce_at = comptime!(2 + squares as u32);
    let tile = CUBE_POS_X;
    let row = CUBE_POS_Y;
    let tiles = CUBE_COUNT_X;
    let chunks = tiles.div_ceil(tiles_per_chunk);
    let chunk = tile / tiles_per_chunk;
    // `row` counts the rows of every map (`ids`' rows); `x` has the rows of one.
    let x_start = (row % x_rows) as usize * voxels as usize;
    let id_start = row as usize * voxels as usize;
    let bin_start = ((row * chunks + chunk) * stats) as usize * bins as usize;
    let first = tile * TILE + UNIT_POS * PER_UNIT;

    let mut background_p = 0.0f32;
    let mut background_count = 0.0f32;
    let mut background_square = 0.0f32;
    let mut background_ce = 0.0f32;
    let mut run_id = 0i32;
    let mut run_p = 0.0f32;
    let mut run_count = 0.0f32;
    let mut run_square = 0.0f32;
    let mut run_ce = 0.0f32;
    for j in 0..PER_UNIT {
        let v = first + j;
        if v < voxels {
            let value = f32::cast_from(x[x_start + v as usize]);
            let id = ids[id_start + v as usize];
            let p = probability(value, logits);
            let mut ce = 0.0f32;
            if comptime!(with_ce) {
                ce = cross_entropy(value, p, id > 0 && (id as u32) < foreground_end, logits);
            }
            if id == 0 {
                background_p += p;
                background_count += 1.0;
                background_square += p * p;
                background_ce += ce;
            } else {
                if id != run_id {
                    if run_id > 0 {
                        let slot = bin_start + run_id as usize;
                        flush::<A>(chunk_bins, slot, bins, run_p, run_count, run_square, run_ce, squares, with_ce);
                    }
                    run_id = id;
                    run_p = 0.0;
                    run_count = 0.0;
                    run_square = 0.0;
                    run_ce = 0.0;
                }
                run_p += p;
                run_count += 1.0;
                run_square += p * p;
                run_ce += ce;
            }
        }
    }
    if run_id > 0 {
        let slot = bin_start + run_id as usize;
        flush::<A>(chunk_bins, slot, bins, run_p, run_count, run_square, run_ce, squares, with_ce);
    }

    // The background of the tile: a tree over the workgroup's units in shared memory.
    let mut shared_p = Shared::<[f32]>::new_slice(comptime!(UNITS as usize));
    let mut shared_count = Shared::<[f32]>::new_slice(comptime!(UNITS as usize));
    let mut shared_square = Shared::<[f32]>::new_slice(comptime!(UNITS as usize));
    let mut shared_ce = Shared::<[f32]>::new_slice(comptime!(UNITS as usize));
    let unit = UNIT_POS as usize;
    shared_p[unit] = background_p;
    shared_count[unit] = background_count;
    shared_square[unit] = background_square;
    shared_ce[unit] = background_ce;
    sync_cube();
    let mut stride = comptime!(UNITS / 2).runtime();
    while stride > 0 {
        if UNIT_POS < stride {
            let other = (UNIT_POS + stride) as usize;
            shared_p[unit] += shared_p[other];
            shared_count[unit] += shared_count[other];
            if comptime!(squares) {
                shared_square[unit] += shared_square[other];
            }
            if comptime!(with_ce) {
                shared_ce[unit] += shared_ce[other];
            }
        }
        sync_cube();
        stride /= 2;
    }
    if UNIT_POS == 0 {
        let out = ((row * tiles + tile) * stats) as usize;
        background[out] = shared_p[0];
        background[out + 1] = shared_count[0];
        if comptime!(squares) {
            background[out + square_at as usize] = shared_square[0];
        }
        if comptime!(with_ce) {
            background[out + ce_at as usize] = shared_ce[0];
        }
    }
}

/// Adds one run's sums to its bin, statistic by statistic (`slot` is the bin of statistic 0).
#[allow(clippy::too_many_arguments)]
#[cube]
fn flush<A: BinAdd>(
    chunk_bins: &mut Tensor<Atomic<A::Proxy>>,
    slot: usize,
    bins: u32,
    p: f32,
    count: f32,
    square: f32,
    ce: f32,
    #[comptime] squares: bool,
    #[comptime] with_ce: bool,
) {
    let bins = bins as usize;
    A::add(chunk_bins, slot, p);
    A::add(chunk_bins, slot + bins, count);
    if comptime!(squares) {
        A::add(chunk_bins, slot + 2 * bins, square);
    }
    if comptime!(with_ce) {
        let at = comptime!(2 + squares as usize);
        A::add(chunk_bins, slot + at * bins, ce);
    }
}

/// The gradient of one voxel of probability `p` from the upstream gradients of its bin's sums
/// (`dsums`, already chained through `p^2`) and cross-entropy (`dce`).
#[cube]
fn gradient(dsums: f32, dce: f32, p: f32, target: bool, #[comptime] logits: bool) -> f32 {
    let one = 1.0f32;
    let mut g = dsums;
    if comptime!(logits) {
        let t = select(target, one, 0.0f32);
        g = dsums * p * (one - p) + dce * (p - t);
    } else {
        let floor = comptime!(PROBABILITY_FLOOR as f32);
        let wrong = select(target, f32::max(p, floor), f32::max(one - p, floor));
        let sign = select(target, -one, one);
        g += dce * sign / wrong;
    }
    g
}

/// The gradient of every voxel from its bins' upstream gradients in every map (`grad`: `[maps *
/// rows, statistics, bins]`, flat, `f32`; `ids`: `[maps * rows, voxels]`, flat).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gradient_kernel<F: Float>(
    grad: &Tensor<f32>,
    x: &Tensor<F>,
    ids: &Tensor<i32>,
    dx: &mut Tensor<F>,
    voxels: u32,
    bins: u32,
    foreground_end: u32,
    total: u32,
    maps: u32,
    #[comptime] logits: bool,
    #[comptime] squares: bool,
    #[comptime] with_ce: bool,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let stats = comptime!(2 + squares as u32 + with_ce as u32);
    let ce_at = comptime!(2 + squares as u32);
    let at = ABSOLUTE_POS;
    let rows = (total / voxels) as usize;
    let row = at / voxels as usize;
    let value = f32::cast_from(x[at]);
    let p = probability(value, logits);
    // The voxel's bin in every map: the gradients of the maps' sums add up.
    let mut g = 0.0f32;
    for m in 0..maps {
        let id = ids[m as usize * total as usize + at];
        let target = id > 0 && (id as u32) < foreground_end;
        let slot = (m as usize * rows + row) * (stats * bins) as usize + id as usize;
        let mut dsums = grad[slot];
        if comptime!(squares) {
            dsums += grad[slot + 2 * bins as usize] * 2.0 * p;
        }
        let mut dce = 0.0f32;
        if comptime!(with_ce) {
            dce = grad[slot + (ce_at * bins) as usize];
        }
        g += gradient(dsums, dce, p, target, logits);
    }
    dx[at] = F::cast_from(g);
}
