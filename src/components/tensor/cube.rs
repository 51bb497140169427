//! The extension on burn's cube backend (wgpu, cuda): labelling and Voronoi cells in kernels.
//!
//! Labelling (one unit per voxel, voxels indexed by `i32` over the whole `[slices, depth, height,
//! width]` grid):
//! 1. every foreground voxel is its own parent (its index), the background `-1`;
//! 2. every foreground voxel joins each earlier neighbour (in row-major order) of the same value:
//!    Playne and Hawick's union, which links the larger of two roots under the smaller with an
//!    atomic minimum and retries where another unit linked it first, so parents are always
//!    smaller than their children and each component's root is its first voxel;
//! 3. every voxel takes its root (path to the root followed), and roots are flagged;
//! 4. a prefix sum of the flags along each slice ranks the roots, and every voxel takes its
//!    root's rank: the host labeller's numbering.
//!
//! Voronoi cells: every voxel's nearest instance voxel, refined one axis at a time from the last
//! to the first (as the host distance transform does). Along the width, one unit per row sweeps
//! it forward and backward (`O(width)` per row). Along the height and the depth, every voxel
//! takes, of the candidates its line holds (each line voxel's nearest so far), the one at the
//! smallest squared distance, ties to the one first in scipy's order (smallest last coordinate,
//! then the one before), searching outward from itself and stopping once the step along the line
//! alone costs more than the best found: a pass costs about the distance to the nearest instance,
//! in voxels, per voxel (the line's length where a line holds no candidate).

use burn::backend::ops::IntTensorOps;
use burn::tensor::{DType, IntDType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, zeros_client};
use burn_cubecl::ops::reshape;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use super::{ComponentsBackend, GridSpacing};
use crate::components::Connectivity;

impl ComponentsBackend for CubeBackend {
    fn label_components(mask: CubeTensor, connectivity: Connectivity) -> CubeTensor {
        let [slices, depth, height, width] = mask.meta.shape().dims::<4>();
        let total = slices * depth * height * width;
        let client = mask.client.clone();
        let device = mask.device.clone();
        let mask = flat(i32_tensor(mask));
        let parents = empty_i32(&mask, total);
        let roots = empty_i32(&mask, total);
        let (cube_dim, cube_count) = elementwise(&mask, total);
        // Every index the kernels form is in bounds: voxels are checked against `total`, their
        // neighbours against the grid's sides, and parents are voxel indices (or -1, never
        // followed); the checked launch bounds every access again.
        init_parents_kernel::launch(
            &client,
            cube_count.clone(),
            cube_dim,
            mask.clone().into_tensor_arg(),
            parents.clone().into_tensor_arg(),
            total as u32,
        );
        let reach = match connectivity {
            Connectivity::Four | Connectivity::Six => 1,
            Connectivity::Eight | Connectivity::Eighteen => 2,
            Connectivity::TwentySix => 3,
        };
        union_kernel::launch(
            &client,
            cube_count.clone(),
            cube_dim,
            mask.clone().into_tensor_arg(),
            parents.clone().into_tensor_arg(),
            depth as u32,
            height as u32,
            width as u32,
            total as u32,
            reach,
        );
        roots_kernel::launch(
            &client,
            cube_count.clone(),
            cube_dim,
            parents.clone().into_tensor_arg(),
            roots.clone().into_tensor_arg(),
            total as u32,
        );
        let voxels = depth * height * width;
        // The rank of every root among its slice's roots.
        let ranks = inclusive_scan(roots, slices, voxels);
        let labels = empty_device_contiguous_dtype(client.clone(), device, Shape::new([total]), DType::I32);
        rank_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            parents.into_tensor_arg(),
            ranks.into_tensor_arg(),
            labels.clone().into_tensor_arg(),
            total as u32,
        );
        reshape(labels, Shape::new([slices, depth, height, width]))
    }

    fn voronoi_cells(labels: CubeTensor, spacing: GridSpacing) -> CubeTensor {
        let [slices, depth, height, width] = labels.meta.shape().dims::<4>();
        let total = slices * depth * height * width;
        let client = labels.client.clone();
        let labels = flat(i32_tensor(labels));
        let mut nearest = empty_i32(&labels, total);
        let mut next = empty_i32(&labels, total);
        let (cube_dim, cube_count) = elementwise(&labels, total);
        let [sz, sy, sx] = spacing.0.map(|s| (s * s) as f32);
        let rows = slices * depth * height;
        let (row_dim, row_count) = elementwise(&labels, rows);
        // As in `label_components`: rows and voxels are checked against their counts, line
        // positions against the axis' length, and nearest voxels are indices within the slice
        // (or -1, never read).
        row_nearest_kernel::launch(
            &client,
            row_count,
            row_dim,
            labels.clone().into_tensor_arg(),
            nearest.clone().into_tensor_arg(),
            width as u32,
            (depth * height * width) as u32,
            rows as u32,
        );
        for axis in [1u32, 0] {
            if [depth, height][axis as usize] > 1 {
                nearest_pass_kernel::launch(
                    &client,
                    cube_count.clone(),
                    cube_dim,
                    nearest.clone().into_tensor_arg(),
                    next.clone().into_tensor_arg(),
                    depth as u32,
                    height as u32,
                    width as u32,
                    total as u32,
                    sz,
                    sy,
                    sx,
                    axis,
                );
                std::mem::swap(&mut nearest, &mut next);
            }
        }
        let cells = next;
        cells_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            labels.into_tensor_arg(),
            nearest.into_tensor_arg(),
            cells.clone().into_tensor_arg(),
            (depth * height * width) as u32,
            total as u32,
        );
        reshape(cells, Shape::new([slices, depth, height, width]))
    }

    fn components_apart(labels: CubeTensor, other: CubeTensor) -> CubeTensor {
        let [slices, depth, height, width] = labels.meta.shape().dims::<4>();
        let voxels = depth * height * width;
        let total = slices * voxels;
        let client = labels.client.clone();
        let device = labels.device.clone();
        let labels = flat(i32_tensor(labels));
        let other = flat(i32_tensor(other));
        // One flag per possible label of every slice (`0..=voxels`): touched, then kept.
        let flags = zeros_client(client.clone(), device.clone(), Shape::new([slices * (voxels + 1)]), DType::I32);
        let (cube_dim, cube_count) = elementwise(&labels, total);
        // Labels are in `0..=voxels` (numbered per slice by `label_components`), so every flag
        // index is in bounds; voxels are checked against `total`.
        touched_kernel::launch(
            &client,
            cube_count.clone(),
            cube_dim,
            labels.clone().into_tensor_arg(),
            other.into_tensor_arg(),
            flags.clone().into_tensor_arg(),
            voxels as u32,
            total as u32,
        );
        let (flag_dim, flag_count) = elementwise(&flags, slices * (voxels + 1));
        kept_kernel::launch(
            &client,
            flag_count,
            flag_dim,
            flags.clone().into_tensor_arg(),
            (voxels + 1) as u32,
            (slices * (voxels + 1)) as u32,
        );
        let ranks = inclusive_scan(flags.clone(), slices, voxels + 1);
        let apart = empty_device_contiguous_dtype(client.clone(), device, Shape::new([total]), DType::I32);
        apart_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            labels.into_tensor_arg(),
            flags.into_tensor_arg(),
            ranks.into_tensor_arg(),
            apart.clone().into_tensor_arg(),
            voxels as u32,
            total as u32,
        );
        reshape(apart, Shape::new([slices, depth, height, width]))
    }
}

/// Values per unit of [`inclusive_scan`]'s passes.
const SCAN_CHUNK: usize = 256;

/// The inclusive prefix sums of every slice of `values` (`slices` runs of `len` `i32`, flat):
/// each unit sums a chunk of [`SCAN_CHUNK`] values, the chunks' sums are scanned the same way
/// (recursively, until one chunk covers a slice), and each unit then scans its chunk from its
/// offset. `O(values)` work in passes of `values / SCAN_CHUNK` units. (burn's `int_cumsum` on
/// this backend sums every prefix from scratch, `O(len^2)` per slice.)
fn inclusive_scan(values: CubeTensor, slices: usize, len: usize) -> CubeTensor {
    let client = values.client.clone();
    let chunks = len.div_ceil(SCAN_CHUNK).max(1);
    let units = slices * chunks;
    let out = empty_i32(&values, slices * len);
    let (cube_dim, cube_count) = elementwise(&values, units);
    if chunks == 1 {
        // Unused offsets: bound to the values, never read.
        scan_chunks_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            values.clone().into_tensor_arg(),
            values.clone().into_tensor_arg(),
            values.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            len as u32,
            chunks as u32,
            units as u32,
            false,
        );
        return out;
    }
    let sums = empty_i32(&values, units);
    // Every chunk's values lie in its slice: `chunk * SCAN_CHUNK < len` for `chunk < chunks`.
    chunk_sums_kernel::launch(
        &client,
        cube_count.clone(),
        cube_dim,
        values.clone().into_tensor_arg(),
        sums.clone().into_tensor_arg(),
        len as u32,
        chunks as u32,
        units as u32,
    );
    let ends = inclusive_scan(sums.clone(), slices, chunks);
    scan_chunks_kernel::launch(
        &client,
        cube_count,
        cube_dim,
        values.into_tensor_arg(),
        ends.into_tensor_arg(),
        sums.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        len as u32,
        chunks as u32,
        units as u32,
        true,
    );
    out
}

/// A contiguous one-dimensional view of a tensor, for linear indexing in the kernels.
fn flat(t: CubeTensor) -> CubeTensor {
    let n = t.meta.num_elements();
    reshape(into_contiguous(t), Shape::new([n]))
}

fn i32_tensor(t: CubeTensor) -> CubeTensor {
    if t.dtype == DType::I32 { t } else { CubeBackend::int_cast(t, IntDType::I32) }
}

/// A new `i32` buffer of `len` values on `like`'s device.
fn empty_i32(like: &CubeTensor, len: usize) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), Shape::new([len]), DType::I32)
}

/// One unit per voxel.
fn elementwise(like: &CubeTensor, total: usize) -> (CubeDim, CubeCount) {
    let cube_dim = CubeDim::new(&like.client, total.max(1));
    (cube_dim, calculate_cube_count_elemwise(&like.client, total.max(1), cube_dim))
}

#[cube(launch)]
fn init_parents_kernel(mask: &Tensor<i32>, parents: &mut Tensor<i32>, total: u32) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS;
    parents[at] = select(mask[at] != 0, at as i32, -1i32);
}

/// The root of `start`'s tree, halving the path on the way: every node passed is linked to its
/// grandparent with an atomic minimum, so a link another unit made meanwhile (always to a
/// smaller index in the same component) is never undone, and trees stay shallow however the
/// units interleave (without it, voxels linked one after the other in a run form a chain that
/// every later search walks).
#[cube]
fn find_root(parents: &mut Tensor<Atomic<i32>>, start: i32) -> i32 {
    let mut node = start;
    let mut parent = parents[node as usize].load();
    while parent != node {
        let grandparent = parents[parent as usize].load();
        if grandparent != parent {
            parents[node as usize].fetch_min(grandparent);
        }
        node = parent;
        parent = grandparent;
    }
    node
}

/// Playne and Hawick's union of the trees of `a` and `b`: the larger root goes under the
/// smaller, by an atomic minimum; when another unit linked that root first, the union goes on
/// with the root it was linked to.
#[cube]
fn union(parents: &mut Tensor<Atomic<i32>>, a: i32, b: i32) {
    let mut a = a;
    let mut b = b;
    loop {
        a = find_root(parents, a);
        b = find_root(parents, b);
        if a < b {
            let old = parents[b as usize].fetch_min(a);
            if old == b {
                break;
            }
            b = old;
        } else if b < a {
            let old = parents[a as usize].fetch_min(b);
            if old == a {
                break;
            }
            a = old;
        } else {
            break;
        }
    }
}

/// Every foreground voxel joins its earlier neighbours of the same value within `reach`
/// non-zero offsets (1: faces, 2: and edges, 3: and corners).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn union_kernel(
    mask: &Tensor<i32>,
    parents: &mut Tensor<Atomic<i32>>,
    depth: u32,
    height: u32,
    width: u32,
    total: u32,
    reach: u32,
) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS as u32;
    let value = mask[at as usize];
    if value != 0 {
        let x = at % width;
        let y = (at / width) % height;
        let z = (at / (width * height)) % depth;
        // Offsets (dz, dy, dx) in -1..=1, stored +1; earlier in row-major order only.
        for oz in 0..2u32 {
            for oy in 0..3u32 {
                for ox in 0..3u32 {
                    let earlier = oz == 0 || (oy == 0 || (oy == 1 && ox == 0));
                    let moved = (1 - oz) + select(oy == 1, 0u32, 1u32) + select(ox == 1, 0u32, 1u32);
                    let inside = (oz == 1 || z > 0)
                        && (oy != 0 || y > 0)
                        && (oy != 2 || y + 1 < height)
                        && (ox != 0 || x > 0)
                        && (ox != 2 || x + 1 < width);
                    if earlier && moved > 0 && moved <= reach && inside {
                        let neighbour = at + ox + oy * width + oz * width * height - 1 - width - width * height;
                        if mask[neighbour as usize] == value {
                            union(parents, at as i32, neighbour as i32);
                        }
                    }
                }
            }
        }
    }
}

/// Every voxel's root (-1 on the background) in `parents`, and 1 in `roots` where a voxel is
/// its own root.
#[cube(launch)]
fn roots_kernel(parents: &mut Tensor<Atomic<i32>>, roots: &mut Tensor<i32>, total: u32) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS;
    let parent = parents[at].load();
    let mut flag = 0i32;
    if parent >= 0 {
        let root = find_root(parents, at as i32);
        flag = select(root == at as i32, 1i32, 0i32);
        parents[at].store(root);
    }
    roots[at] = flag;
}

/// Every voxel's label: its root's rank among its slice's roots (0 on the background).
#[cube(launch)]
fn rank_kernel(roots: &Tensor<i32>, ranks: &Tensor<i32>, labels: &mut Tensor<i32>, total: u32) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS;
    let root = roots[at];
    let clamped = select(root >= 0, root, 0i32);
    labels[at] = select(root >= 0, ranks[clamped as usize], 0i32);
}

/// The first pass, along the width: every voxel's nearest instance voxel on its row (its index
/// within the slice, -1 where the row has none), one unit per row sweeping it forward (the last
/// instance voxel at or before each) and backward (the first after, where strictly nearer: a tie
/// goes to the one before, the smaller width coordinate, as in scipy's order).
#[cube(launch)]
fn row_nearest_kernel(labels: &Tensor<i32>, nearest: &mut Tensor<i32>, width: u32, voxels: u32, rows: u32) {
    if ABSOLUTE_POS >= rows as usize {
        terminate!();
    }
    let start = ABSOLUTE_POS as u32 * width;
    // Rows never cross slices (a slice is whole rows): the row's first index within its slice.
    let local_start = start % voxels;
    // Forward: 1 + the width coordinate of the last instance voxel at or before `x` (0: none),
    // kept in `nearest` for the backward sweep.
    let mut last = 0u32;
    for x in 0..width {
        let at = (start + x) as usize;
        if labels[at] != 0 {
            last = x + 1;
        }
        nearest[at] = last as i32;
    }
    // Backward: the first instance voxel after `x` (1 + its coordinate), where strictly nearer
    // than the one before.
    let mut after = 0u32;
    for back in 0..width {
        let x = width - 1 - back;
        let at = (start + x) as usize;
        if labels[at] != 0 {
            after = x + 1;
        }
        let before = nearest[at] as u32;
        let take_after = after > 0 && (before == 0 || after - (x + 1) < (x + 1) - before);
        let chosen = select(take_after, after, before);
        nearest[at] = select(chosen > 0, (local_start + chosen - 1) as i32, -1i32);
    }
}

/// One pass along `axis` (0: depth, 1: height): every voxel takes the nearest of its line's
/// candidates (squared distances with the squared spacings `sz`, `sy`, `sx`; ties to the
/// candidate with the smallest width coordinate, then height, then depth). The line is searched
/// outward from the voxel, both sides at each step, and the search stops once the step alone
/// costs more than the best distance found: a candidate holds its line voxel's coordinate on
/// `axis`, so its distance is at least that step's term (a sum of non-negative `f32` terms is
/// never below one of them), and the result is that of a scan of the whole line.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn nearest_pass_kernel(
    nearest: &Tensor<i32>,
    next: &mut Tensor<i32>,
    depth: u32,
    height: u32,
    width: u32,
    total: u32,
    sz: f32,
    sy: f32,
    sx: f32,
    axis: u32,
) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS as u32;
    let plane = width * height;
    let voxels = plane * depth;
    let slice_start = at - at % voxels;
    let local = at % voxels;
    let x = local % width;
    let y = (local / width) % height;
    let z = local / plane;
    let (len, stride, position, step_weight) = if axis == 1 { (height, width, y, sy) } else { (depth, plane, z, sz) };
    let line_start = slice_start + local - position * stride;
    let mut found = false;
    let mut best = 0i32;
    let mut best_distance = 0.0f32;
    let mut best_key = 0u32;
    let mut step = 0u32;
    loop {
        let offset = f32::cast_from(step);
        let below = step <= position;
        let above = step > 0 && position + step < len;
        if (found && offset * offset * step_weight > best_distance) || !(below || above) {
            break;
        }
        for side in 0..2u32 {
            let inside = select(side == 0, below, above);
            if inside {
                let j = select(side == 0, position - step, position + step);
                let candidate = nearest[(line_start + j * stride) as usize];
                if candidate >= 0 {
                    let c = candidate as u32;
                    let cx = c % width;
                    let cy = (c / width) % height;
                    let cz = c / plane;
                    let dx = f32::cast_from(cx) - f32::cast_from(x);
                    let dy = f32::cast_from(cy) - f32::cast_from(y);
                    let dz = f32::cast_from(cz) - f32::cast_from(z);
                    let distance = dx * dx * sx + dy * dy * sy + dz * dz * sz;
                    // scipy's order of equidistant voxels: the width coordinate first, then
                    // height, then depth (a key that orders as the triple does, within a slice).
                    let key = (cx * height + cy) * depth + cz;
                    if !found || distance < best_distance || (distance == best_distance && key < best_key) {
                        found = true;
                        best = candidate;
                        best_distance = distance;
                        best_key = key;
                    }
                }
            }
        }
        step += 1;
    }
    next[at as usize] = select(found, best, -1i32);
}

/// Every voxel's cell: the id of its nearest instance voxel (0 where it has none).
#[cube(launch)]
fn cells_kernel(labels: &Tensor<i32>, nearest: &Tensor<i32>, cells: &mut Tensor<i32>, voxels: u32, total: u32) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS as u32;
    let near = nearest[at as usize];
    let slice_start = at - at % voxels;
    let clamped = select(near >= 0, near, 0i32) as u32;
    cells[at as usize] = select(near >= 0, labels[(slice_start + clamped) as usize], 0i32);
}

/// Flags every label with a voxel where `other` is positive (`flags`: `voxels + 1` per slice).
#[cube(launch)]
fn touched_kernel(labels: &Tensor<i32>, other: &Tensor<i32>, flags: &mut Tensor<i32>, voxels: u32, total: u32) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS as u32;
    let label = labels[at as usize];
    if label > 0 && other[at as usize] > 0 {
        // Every unit that writes here writes 1: no atomic is needed.
        flags[((at / voxels) * (voxels + 1) + label as u32) as usize] = 1;
    }
}

/// Turns the touched flags into kept flags: 1 for a label `> 0` that touched nothing.
#[cube(launch)]
fn kept_kernel(flags: &mut Tensor<i32>, per_slice: u32, total: u32) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS;
    let label = at as u32 % per_slice;
    flags[at] = select(label > 0 && flags[at] == 0, 1i32, 0i32);
}

/// Every voxel of a kept label takes that label's rank among its slice's kept labels; 0 elsewhere.
#[cube(launch)]
fn apart_kernel(
    labels: &Tensor<i32>,
    kept: &Tensor<i32>,
    ranks: &Tensor<i32>,
    apart: &mut Tensor<i32>,
    voxels: u32,
    total: u32,
) {
    if ABSOLUTE_POS >= total as usize {
        terminate!();
    }
    let at = ABSOLUTE_POS as u32;
    let label = labels[at as usize];
    let flag = ((at / voxels) * (voxels + 1) + select(label > 0, label, 0i32) as u32) as usize;
    apart[at as usize] = select(label > 0 && kept[flag] == 1, ranks[flag], 0i32);
}

/// The sum of every chunk of [`SCAN_CHUNK`] values of every slice (one unit per chunk).
#[cube(launch)]
fn chunk_sums_kernel(values: &Tensor<i32>, sums: &mut Tensor<i32>, len: u32, chunks: u32, units: u32) {
    if ABSOLUTE_POS >= units as usize {
        terminate!();
    }
    let unit = ABSOLUTE_POS as u32;
    let slice = unit / chunks;
    let first = (unit % chunks) * comptime!(SCAN_CHUNK as u32);
    let end = u32::min(first + comptime!(SCAN_CHUNK as u32), len);
    let mut sum = 0i32;
    for i in first..end {
        sum += values[(slice * len + i) as usize];
    }
    sums[unit as usize] = sum;
}

/// The inclusive prefix sums of every chunk of every slice, from the chunk's offset (the
/// inclusive prefix of the chunks' sums, `ends`, less its own sum) when `with_offsets`.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn scan_chunks_kernel(
    values: &Tensor<i32>,
    ends: &Tensor<i32>,
    sums: &Tensor<i32>,
    out: &mut Tensor<i32>,
    len: u32,
    chunks: u32,
    units: u32,
    #[comptime] with_offsets: bool,
) {
    if ABSOLUTE_POS >= units as usize {
        terminate!();
    }
    let unit = ABSOLUTE_POS as u32;
    let slice = unit / chunks;
    let first = (unit % chunks) * comptime!(SCAN_CHUNK as u32);
    let end = u32::min(first + comptime!(SCAN_CHUNK as u32), len);
    let mut sum = 0i32;
    if comptime!(with_offsets) {
        sum = ends[unit as usize] - sums[unit as usize];
    }
    for i in first..end {
        let at = (slice * len + i) as usize;
        sum += values[at];
        out[at] = sum;
    }
}
