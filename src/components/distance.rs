//! Exact Euclidean distance transform with nearest-feature indices, and the Voronoi cells of an
//! instance map (the partition the connected-component losses score).

use ndarray::{Array, ArrayView, ArrayViewMut, ArrayViewMut2, ArrayViewMut3, Axis, Dimension};
use rayon::prelude::*;

use crate::Error;

/// The Euclidean distance transform of a mask: for every voxel, the distance to the nearest
/// foreground (non-zero) voxel and that voxel's index.
///
/// # Example
/// ```
/// use blob_loss::components::distance_transform;
/// use ndarray::array;
///
/// let mask = array![[1u8, 0, 0, 0]];
/// let dt = distance_transform(mask.view(), &[1.0, 2.0]).unwrap();
/// assert_eq!(dt.distances, array![[0.0, 2.0, 4.0, 6.0]]);
/// assert_eq!(dt.nearest, array![[0, 0, 0, 0]]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DistanceTransform<D: Dimension> {
    /// The distance, in the units of the spacing, to the nearest foreground voxel (0 on the
    /// foreground; `f64::INFINITY` everywhere when the mask has no foreground).
    pub distances: Array<f64, D>,
    /// The row-major (logical) index of that nearest foreground voxel (`usize::MAX` when the mask
    /// has no foreground).
    pub nearest: Array<usize, D>,
}

/// The exact Euclidean distance transform of `mask` with voxel `spacing` (one positive, finite
/// value per axis): the distance from every voxel to the nearest non-zero voxel, and which one.
///
/// The separable algorithm of Felzenszwalb and Huttenlocher ("Distance transforms of sampled
/// functions", 2012): one pass per axis, carrying the nearest voxel's index along; `O(voxels)`
/// per axis, lines in parallel. The first pass, along the last (contiguous) axis, scans each
/// line for the nearest foreground voxel before and after; the others, from the second-to-last
/// axis to the first, take the lower envelope of parabolas along every line, a tile of
/// neighbouring lines at a time. It is the distance
/// `scipy.ndimage.distance_transform_edt(mask == 0, sampling=spacing)` computes.
///
/// **Ties** (voxels at exactly the same distance from several foreground voxels) go as in scipy's
/// feature transform: to the foreground voxel with the smallest coordinate on the last axis,
/// then on the axis before, and so on (every pass keeps, of its equidistant candidates, the one
/// first in that order, which makes the result the first in that order of all the nearest
/// voxels). Ties are found exactly where the squared distances are exact: integer coordinates
/// times spacings whose squares are exact binary numbers (1, 2, 0.5, ...).
///
/// # Errors
/// [`Error::InvalidArgument`] when `spacing` does not have one positive finite value per axis.
///
/// # Example
/// ```
/// use blob_loss::components::distance_transform;
/// use ndarray::array;
///
/// let mask = array![[0u8, 0, 0], [0, 1, 0], [0, 0, 0]];
/// let dt = distance_transform(mask.view(), &[1.0, 1.0]).unwrap();
/// assert_eq!(dt.distances[[0, 0]], 2f64.sqrt());
/// assert!(dt.nearest.iter().all(|&i| i == 4)); // every voxel's nearest is the centre
/// ```
pub fn distance_transform<A, D>(mask: ArrayView<'_, A, D>, spacing: &[f64]) -> Result<DistanceTransform<D>, Error>
where
    A: Copy + Default + PartialEq + Send + Sync,
    D: Dimension,
{
    let dim = mask.raw_dim();
    let schedule = Schedule::for_shape(mask.shape());
    let (squared, nearest) = squared_distances::<true, usize, A, D>(mask, spacing, schedule)?;
    let distances = Array::from_shape_vec(dim.clone(), squared.into_iter().map(f64::sqrt).collect())
        .expect("one distance per voxel");
    let nearest = Array::from_shape_vec(dim, nearest).expect("one index per voxel");
    Ok(DistanceTransform { distances, nearest })
}

/// The distances of [`distance_transform`] alone, without the nearest voxels' indices (less
/// memory traffic: for boundary losses and Hausdorff distances, which need no index).
///
/// # Errors
/// As [`distance_transform`].
///
/// # Example
/// ```
/// use blob_loss::components::distance_map;
/// use ndarray::array;
///
/// let mask = array![[1u8, 0, 0, 0]];
/// assert_eq!(distance_map(mask.view(), &[1.0, 2.0]).unwrap(), array![[0.0, 2.0, 4.0, 6.0]]);
/// ```
pub fn distance_map<A, D>(mask: ArrayView<'_, A, D>, spacing: &[f64]) -> Result<Array<f64, D>, Error>
where
    A: Copy + Default + PartialEq + Send + Sync,
    D: Dimension,
{
    let dim = mask.raw_dim();
    let schedule = Schedule::for_shape(mask.shape());
    let (squared, _) = squared_distances::<false, usize, A, D>(mask, spacing, schedule)?;
    Ok(Array::from_shape_vec(dim, squared.into_iter().map(f64::sqrt).collect()).expect("one distance per voxel"))
}

/// The index type of nearest voxels: `usize` for [`distance_transform`], `u32` for the cells of
/// [`voronoi`] (half the memory traffic, for volumes of fewer than `u32::MAX` voxels).
trait Feature: Copy + Default + PartialEq + Send + Sync {
    /// No nearest voxel (a line or volume without foreground).
    const NONE: Self;
    fn from_index(index: usize) -> Self;
    fn index(self) -> usize;
}

impl Feature for usize {
    const NONE: Self = usize::MAX;
    fn from_index(index: usize) -> Self {
        index
    }
    fn index(self) -> usize {
        self
    }
}

impl Feature for u32 {
    const NONE: Self = u32::MAX;
    fn from_index(index: usize) -> Self {
        debug_assert!(index < u32::MAX as usize, "u32 features only for volumes under u32::MAX voxels");
        index as u32
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// How the first two passes (the last two axes) run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schedule {
    /// Each pass over the whole volume, its lines shared among the threads.
    AxisByAxis,
    /// Plane by plane (the last two axes): one task reads a plane of the mask and runs both
    /// passes on it while it is in cache; the planes are shared among the threads. One pass over
    /// memory instead of three (initialisation and two passes).
    PlaneByPlane,
}

impl Schedule {
    /// Plane by plane when there are planes for every thread (3D and up), axis by axis otherwise
    /// (a 2D image, a volume of few planes).
    fn for_shape(shape: &[usize]) -> Self {
        let planes: usize = shape.iter().rev().skip(2).product();
        if shape.len() >= 3 && planes >= rayon::current_num_threads() { Self::PlaneByPlane } else { Self::AxisByAxis }
    }
}

/// The squared distances, row-major, and (with `INDICES`) the nearest voxels' indices (empty
/// without).
fn squared_distances<const INDICES: bool, F: Feature, A, D>(
    mask: ArrayView<'_, A, D>,
    spacing: &[f64],
    schedule: Schedule,
) -> Result<(Vec<f64>, Vec<F>), Error>
where
    A: Copy + Default + PartialEq + Send + Sync,
    D: Dimension,
{
    check_spacing(mask.ndim(), spacing)?;
    let shape = mask.shape().to_vec();
    let background = A::default();
    let standard = mask.as_standard_layout();
    let values = standard.as_slice().expect("standard layout");
    let weights: Vec<f64> = spacing.iter().map(|s| s * s).collect();
    let order = TieOrder::new(&shape);
    // Zeroed allocations: their pages are mapped as the tasks first write them, in parallel.
    let mut squared = vec![0.0; values.len()];
    let mut nearest = if INDICES { vec![F::default(); values.len()] } else { Vec::new() };
    // The axes still to pass, from the last to the first.
    let mut axes = shape.len();
    if schedule == Schedule::PlaneByPlane && shape.len() >= 2 && !values.is_empty() {
        let plane = [shape[axes - 2], shape[axes - 1]];
        let voxels = plane[0] * plane[1];
        let weights = [weights[axes - 2], weights[axes - 1]];
        let task = |tile: &mut Tile<INDICES, F>, (p, (squared, nearest)): (usize, (&mut [f64], &mut [F]))| {
            let offset = p * voxels;
            let values = &values[offset..offset + voxels];
            let name = |y: usize, x: usize| F::from_index(offset + y * plane[1] + x);
            if !plane_passes(values, background, plane, weights, name, squared, nearest, tile, &order) {
                // Every voxel infinitely far, with no nearest voxel, as both passes would write.
                squared.fill(f64::INFINITY);
                nearest.fill(F::NONE);
            }
        };
        let planes = squared.par_chunks_mut(voxels);
        if INDICES {
            planes.zip(nearest.par_chunks_mut(voxels)).enumerate().for_each_init(|| Tile::new(plane[0]), task);
        } else {
            planes.map(|s| (s, &mut [][..])).enumerate().for_each_init(|| Tile::new(plane[0]), task);
        }
        axes -= 2;
    } else {
        // The last axis first (contiguous lines, binary input); a 0-dimensional mask is one
        // line of one voxel.
        let (len, weight) = (shape.last().copied().unwrap_or(1), weights.last().copied().unwrap_or(1.0));
        if len > 0 {
            let lines = squared.par_chunks_mut(len).zip(values.par_chunks(len)).enumerate();
            if INDICES {
                lines.zip(nearest.par_chunks_mut(len)).for_each(|((line, (s, v)), n)| {
                    nearest_on_row::<INDICES, F, A>(v, background, |q| F::from_index(line * len + q), s, n, weight);
                });
            } else {
                lines.for_each(|(line, (s, v))| {
                    nearest_on_row::<INDICES, F, A>(
                        v,
                        background,
                        |q| F::from_index(line * len + q),
                        s,
                        &mut [],
                        weight,
                    );
                });
            }
        }
        axes = axes.saturating_sub(1);
    }
    for axis in (0..axes).rev() {
        pass::<INDICES, F>(&mut squared, &mut nearest, &shape, axis, weights[axis], &order);
    }
    Ok((squared, nearest))
}

/// Both passes within one plane (the last two axes, `[height, width]`) while it is in cache:
/// the nearest foreground voxel on every row, then the envelopes along the columns. `name(y,
/// x)` names the plane's voxel `[y, x]` as a feature, `order` settles ties between names.
/// Whether the plane holds foreground (every voxel of such a plane has a nearest voxel in it);
/// a plane without is left as it was.
#[allow(clippy::too_many_arguments)]
fn plane_passes<const INDICES: bool, F: Feature, A: Copy + PartialEq>(
    values: &[A],
    background: A,
    [height, width]: [usize; 2],
    [weight_y, weight_x]: [f64; 2],
    name: impl Fn(usize, usize) -> F,
    squared: &mut [f64],
    nearest: &mut [F],
    tile: &mut Tile<INDICES, F>,
    order: &impl TieKey,
) -> bool {
    // The rows with foreground: the only ones the envelopes read (every other voxel of the row
    // pass would be infinitely far), so the others are not written.
    let mut rows = std::mem::take(&mut tile.rows);
    rows.clear();
    for (y, (s, v)) in squared.chunks_mut(width).zip(values.chunks(width)).enumerate() {
        if !has_foreground(v, background) {
            continue;
        }
        rows.push(y);
        let n = if INDICES { &mut nearest[y * width..(y + 1) * width] } else { &mut [][..] };
        nearest_on_row::<INDICES, F, A>(v, background, |x| name(y, x), s, n, weight_x);
    }
    if rows.is_empty() {
        // No foreground (most planes of a volume of a few small lesions): nothing written.
        tile.rows = rows;
        return false;
    }
    let squared = ArrayViewMut2::from_shape((height, width), squared).expect("a plane");
    let nearest = INDICES.then(|| ArrayViewMut2::from_shape((height, width), nearest).expect("a plane"));
    envelopes(tile, squared, nearest, weight_y, order, Some(&rows));
    tile.rows = rows;
    true
}

/// The Voronoi cells of an instance map: every voxel takes the id of its nearest instance voxel
/// (Euclidean, with voxel `spacing`), so cell `k` holds the voxels closer to instance `k` than
/// to any other. The cells partition the whole volume, background included; a map without
/// instances gives all zeros.
///
/// This is the partition of the connected-component (CC) losses: instance `k` is scored on its
/// cell. Ties follow [`distance_transform`].
///
/// The passes are those of [`distance_transform`], without the distances. A 3D volume with at
/// least a plane per thread runs plane by plane: one task labels each plane's voxels with their
/// nearest instance voxel in the plane (both in-plane passes while the plane is in cache), then
/// the pass along the first axis writes the cells over them; the nearest voxels are kept as
/// packed coordinates in the output itself, so no buffer the size of the volume is allocated
/// besides the output ([`voronoi_into`] writes into the caller's).
///
/// # Errors
/// As [`distance_transform`].
///
/// # Example
/// ```
/// use blob_loss::components::voronoi;
/// use ndarray::array;
///
/// let labels = array![[1u32, 0, 0, 0, 0, 2]];
/// let cells = voronoi(labels.view(), &[1.0, 1.0]).unwrap();
/// assert_eq!(cells, array![[1, 1, 1, 2, 2, 2]]);
/// ```
pub fn voronoi<D: Dimension>(labels: ArrayView<'_, u32, D>, spacing: &[f64]) -> Result<Array<u32, D>, Error> {
    let mut cells = Array::zeros(labels.raw_dim());
    voronoi_into(labels, spacing, cells.view_mut())?;
    Ok(cells)
}

/// [`voronoi`] written into the caller's buffer `out` (every voxel is overwritten), for a data
/// pipeline that reuses one buffer for every patch. `out` may have any memory layout; a
/// standard-layout buffer is written directly.
///
/// # Errors
/// As [`voronoi`], plus [`Error::ShapeMismatch`] when `out` does not have the labels' shape.
///
/// # Example
/// ```
/// use blob_loss::components::voronoi_into;
/// use ndarray::{array, Array2};
///
/// let mut cells = Array2::<u32>::from_elem((1, 6), 99);
/// voronoi_into(array![[1u32, 0, 0, 0, 0, 2]].view(), &[1.0, 1.0], cells.view_mut()).unwrap();
/// assert_eq!(cells, array![[1, 1, 1, 2, 2, 2]]);
/// ```
pub fn voronoi_into<D: Dimension>(
    labels: ArrayView<'_, u32, D>,
    spacing: &[f64],
    out: ArrayViewMut<'_, u32, D>,
) -> Result<(), Error> {
    if labels.shape() != out.shape() {
        return Err(Error::ShapeMismatch {
            what: "voronoi_into output buffer",
            expected: labels.shape().to_vec(),
            found: out.shape().to_vec(),
        });
    }
    let schedule = Schedule::for_shape(labels.shape());
    voronoi_scheduled(labels, spacing, out, schedule)
}

/// [`voronoi_into`] with the passes' schedule given (both give the same cells).
fn voronoi_scheduled<D: Dimension>(
    labels: ArrayView<'_, u32, D>,
    spacing: &[f64],
    mut out: ArrayViewMut<'_, u32, D>,
    schedule: Schedule,
) -> Result<(), Error> {
    let standard = labels.as_standard_layout();
    let flat = standard.as_slice().expect("standard layout");
    if let (Schedule::PlaneByPlane, Ok(shape), Some(out)) =
        (schedule, <[usize; 3]>::try_from(labels.shape()), out.as_slice_mut())
        && let Some(packing) = Packing::new(shape)
    {
        check_spacing(3, spacing)?;
        voronoi_packed(flat, packing, [spacing[0], spacing[1], spacing[2]], out);
        return Ok(());
    }
    if flat.len() < u32::MAX as usize {
        let (_, nearest) = squared_distances::<true, u32, u32, D>(labels.view(), spacing, schedule)?;
        write_cells(flat, &nearest, out);
    } else {
        let (_, nearest) = squared_distances::<true, usize, u32, D>(labels.view(), spacing, schedule)?;
        write_cells(flat, &nearest, out);
    }
    Ok(())
}

/// The nearest voxels of a 3D volume named by their packed coordinates, `x`, `y` and `z` from
/// the most significant bits down: a packed value orders ties as [`TieOrder`] does (the smaller
/// last coordinate first), and a voxel's squared distance within its plane is computed from it,
/// so [`voronoi_packed`] keeps no volume of distances.
#[derive(Clone, Copy, Debug)]
struct Packing {
    z_bits: u32,
    y_bits: u32,
    shape: [usize; 3],
}

impl Packing {
    /// The packing of a `[depth, height, width]` volume, if its coordinates fit in 31 bits (so
    /// that no packed value is `u32::NONE`).
    fn new(shape: [usize; 3]) -> Option<Self> {
        let bits = |n: usize| usize::BITS - n.saturating_sub(1).leading_zeros();
        let [z_bits, y_bits, x_bits] = shape.map(bits);
        (z_bits + y_bits + x_bits <= 31).then_some(Self { z_bits, y_bits, shape })
    }

    fn pack(&self, [z, y, x]: [usize; 3]) -> u32 {
        ((x << (self.y_bits + self.z_bits)) | (y << self.z_bits) | z) as u32
    }

    fn unpack(&self, packed: u32) -> [usize; 3] {
        let packed = packed as usize;
        let z = packed & ((1 << self.z_bits) - 1);
        let y = (packed >> self.z_bits) & ((1 << self.y_bits) - 1);
        [z, y, packed >> (self.z_bits + self.y_bits)]
    }

    /// The row-major index of a packed voxel.
    fn index(&self, packed: u32) -> usize {
        let [z, y, x] = self.unpack(packed);
        (z * self.shape[1] + y) * self.shape[2] + x
    }
}

impl TieKey for Packing {
    fn key(&self, packed: usize) -> usize {
        packed
    }
}

/// The Voronoi cells of a 3D instance map `labels` (row-major, `packing.shape`), plane by plane:
/// `out` first holds each voxel's nearest instance voxel within its plane (packed), then, after
/// the pass along the first axis, its cell. The same comparisons on the same values as the
/// passes of [`squared_distances`] (a plane's squared distances are recomputed from the packed
/// voxels with the same operations), so the same cells; no buffer the size of the volume but
/// `out`.
fn voronoi_packed(labels: &[u32], packing: Packing, spacing: [f64; 3], out: &mut [u32]) {
    let [depth, height, width] = packing.shape;
    let [weight_z, weight_y, weight_x] = spacing.map(|s| s * s);
    let plane = height * width;
    if plane == 0 || depth == 0 {
        return;
    }
    // Every plane: the nearest voxel on each row, then the envelopes along the columns.
    let filled: Vec<bool> = out
        .par_chunks_mut(plane)
        .zip(labels.par_chunks(plane))
        .enumerate()
        .map_init(
            || (Tile::<true, u32>::new(height).without_distances(), vec![0.0; plane]),
            |(tile, squared), (z, (nearest, labels))| {
                let name = |y: usize, x: usize| packing.pack([z, y, x]);
                plane_passes(labels, 0, [height, width], [weight_y, weight_x], name, squared, nearest, tile, &packing)
            },
        )
        .collect();
    // The planes with instances: along the first axis, the only voxels with a nearest voxel.
    let rows: Vec<usize> = filled.iter().enumerate().filter_map(|(z, &filled)| filled.then_some(z)).collect();
    if rows.is_empty() {
        out.fill(0);
        return;
    }
    // Along the first axis, a column of lines at a time; the cells written over the voxels.
    let columns = columns(out, [1, depth, plane]);
    columns.into_par_iter().enumerate().for_each_init(
        || Tile::<true, u32>::new(depth).without_distances(),
        |tile, (c, mut column)| {
            for first in (0..column.ncols()).step_by(TILE) {
                let lines = TILE.min(column.ncols() - first);
                // The plane coordinates of the lines.
                let start = c * COLUMN + first;
                let mut at = [(0.0, 0.0); TILE];
                for (j, at) in at.iter_mut().enumerate().take(lines) {
                    *at = (((start + j) / width) as f64, ((start + j) % width) as f64);
                }
                tile.load_rows(&column, first, lines, &rows, |tile, voxel, j, packed| {
                    tile.feature[voxel] = packed;
                    // As the plane's passes computed it: the row term, then the column's.
                    let [_, ny, nx] = packing.unpack(packed);
                    let (dy, dx) = (at[j].0 - ny as f64, at[j].1 - nx as f64);
                    tile.f[voxel] = weight_y * dy * dy + weight_x * dx * dx;
                });
                // Every line's nearest voxels as their labels (every voxel has one: its plane
                // or another holds an instance).
                for line in 0..lines {
                    tile.envelope_over_rows(line, weight_z, &packing, &rows, |packed| labels[packing.index(packed)]);
                }
                tile.store_column(&mut column, first, lines, |tile, voxel| tile.out_feature[voxel]);
            }
        },
    );
}

/// Every voxel's cell: the label of its nearest instance voxel (0 where there is none).
fn write_cells<F: Feature, D: Dimension>(labels: &[u32], nearest: &[F], mut out: ArrayViewMut<'_, u32, D>) {
    let cell = |n: &F| labels.get(n.index()).copied().unwrap_or(0);
    match out.as_slice_mut() {
        Some(out) => out.par_iter_mut().zip(nearest).for_each(|(c, n)| *c = cell(n)),
        None => out.iter_mut().zip(nearest).for_each(|(c, n)| *c = cell(n)),
    }
}

/// [`voronoi`] of every `(element, channel)` slice of a `[B, C, spatial..]` instance map (for
/// example [`BatchLabeling::labels`](super::BatchLabeling)): the cells that
/// [`Partition::Voronoi`](crate::loss::Partition::Voronoi) scores instances on. `spacing` has one
/// value per spatial axis.
///
/// # Errors
/// [`Error::UnsupportedRank`] unless the map has 1 to 3 spatial axes, and the errors of
/// [`voronoi`].
///
/// # Example
/// ```
/// use blob_loss::components::voronoi_batch;
/// use ndarray::array;
///
/// let labels = array![[[[1u32, 0, 0, 2]]], [[[0, 0, 0, 0]]]];
/// let cells = voronoi_batch(labels.view(), &[1.0, 1.0]).unwrap();
/// assert_eq!(cells, array![[[[1, 1, 2, 2]]], [[[0, 0, 0, 0]]]]);
/// ```
pub fn voronoi_batch<D: Dimension>(labels: ArrayView<'_, u32, D>, spacing: &[f64]) -> Result<Array<u32, D>, Error> {
    if !(3..=5).contains(&labels.ndim()) {
        return Err(Error::UnsupportedRank {
            what: "instance map",
            ndim: labels.ndim(),
            expected: "3, 4 or 5 ([B, C, spatial..] with 1 to 3 spatial axes)",
        });
    }
    check_spacing(labels.ndim() - 2, spacing)?;
    let mut cells = ndarray::ArrayD::zeros(labels.shape());
    for (element, mut out) in labels.view().into_dyn().outer_iter().zip(cells.outer_iter_mut()) {
        for (channel, out) in element.outer_iter().zip(out.outer_iter_mut()) {
            voronoi_into(channel, spacing, out)?;
        }
    }
    Ok(cells.into_dimensionality().expect("the labels' rank"))
}

fn check_spacing(ndim: usize, spacing: &[f64]) -> Result<(), Error> {
    if spacing.len() != ndim {
        return Err(Error::InvalidArgument(format!(
            "spacing has {} values for a {ndim}D array: give one per axis",
            spacing.len()
        )));
    }
    if let Some(bad) = spacing.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(Error::InvalidArgument(format!("voxel spacing must be positive and finite, got {bad}")));
    }
    Ok(())
}

/// Whether `values` hold a voxel other than `background`: one branch-free fold that vectorises
/// (most rows of a volume of a few small lesions hold none, and are read to their end).
#[inline(always)]
fn has_foreground<A: Copy + PartialEq>(values: &[A], background: A) -> bool {
    values.iter().fold(false, |any, &v| any | (v != background))
}

/// The pass along the last (contiguous) axis, on one line of the mask (`values`, foreground
/// where not `background`): every voxel's squared distance to its nearest foreground voxel on
/// the line, the nearer of the last one before it and the first one after it (the one before on
/// a tie), named by `name` (the voxel's position on the line); infinity and [`Feature::NONE`] on
/// a line without foreground.
fn nearest_on_row<const INDICES: bool, F: Feature, A: Copy + PartialEq>(
    values: &[A],
    background: A,
    name: impl Fn(usize) -> F,
    squared: &mut [f64],
    nearest: &mut [F],
    weight: f64,
) {
    // Forward: the last foreground voxel at or before q.
    let mut last = usize::MAX;
    for (q, (s, &v)) in squared.iter_mut().zip(values).enumerate() {
        let (distance, feature) = if v != background {
            last = q;
            (0.0, q)
        } else if last != usize::MAX {
            let d = (q - last) as f64;
            (weight * d * d, last)
        } else {
            (f64::INFINITY, usize::MAX)
        };
        *s = distance;
        if INDICES {
            nearest[q] = if feature == usize::MAX { F::NONE } else { name(feature) };
        }
    }
    // Backward: the first foreground voxel after q, where strictly nearer.
    let mut next = usize::MAX;
    for (q, (s, &v)) in squared.iter_mut().zip(values).enumerate().rev() {
        if v != background {
            next = q;
        } else if next != usize::MAX {
            let d = (next - q) as f64;
            let candidate = weight * d * d;
            if candidate < *s {
                *s = candidate;
                if INDICES {
                    nearest[q] = name(next);
                }
            }
        }
    }
}

/// Lines gathered at once by [`pass`]: neighbouring lines along a strided axis share cache
/// lines, so a tile of them is read and written row by row.
const TILE: usize = 16;

/// Lines per task of a pass: a column of a block, `COLUMN` lines wide.
const COLUMN: usize = 4 * TILE;

/// One pass along `axis` (not the last): every line of `squared` becomes the lower envelope of
/// the parabolas `weight * (q - p)^2 + squared[p]`, and `nearest` follows the minimising `p`.
fn pass<const INDICES: bool, F: Feature>(
    squared: &mut [f64],
    nearest: &mut [F],
    shape: &[usize],
    axis: usize,
    weight: f64,
    order: &impl TieKey,
) {
    let len = shape[axis];
    let stride: usize = shape[axis + 1..].iter().product();
    let block = len * stride;
    if block == 0 || len == 1 || squared.is_empty() {
        return;
    }
    let outer = squared.len() / block;
    // Every block (the voxels before `axis` fixed) is cut into columns of lines, so that even
    // the first axis, one block, is shared among the threads.
    let squared = columns(squared, [outer, len, stride]);
    if INDICES {
        let nearest = columns(nearest, [outer, len, stride]);
        squared.into_par_iter().zip(nearest).for_each_init(
            || Tile::<INDICES, F>::new(len),
            |tile, (s, n)| envelopes(tile, s, Some(n), weight, order, None),
        );
    } else {
        squared
            .into_par_iter()
            .for_each_init(|| Tile::<INDICES, F>::new(len), |tile, s| envelopes(tile, s, None, weight, order, None));
    }
}

/// The lower envelopes of the lines of a column `[len, lines]` (line `j`'s voxel `q` at `[q, j]`),
/// [`TILE`] lines at a time; with `rows`, the finite values are known to be in those rows
/// (increasing), and the others are not read.
fn envelopes<const INDICES: bool, F: Feature>(
    tile: &mut Tile<INDICES, F>,
    mut squared: ArrayViewMut2<'_, f64>,
    mut nearest: Option<ArrayViewMut2<'_, F>>,
    weight: f64,
    order: &impl TieKey,
    rows: Option<&[usize]>,
) {
    let width = squared.ncols();
    for first in (0..width).step_by(TILE) {
        let lines = TILE.min(width - first);
        match rows {
            Some(rows) => {
                tile.load_rows(&squared, first, lines, rows, |tile, voxel, _, value| tile.f[voxel] = value);
                if let Some(nearest) = nearest.as_ref() {
                    tile.load_rows(nearest, first, lines, rows, |tile, voxel, _, index| tile.feature[voxel] = index);
                }
                for line in 0..lines {
                    tile.envelope_over_rows(line, weight, order, rows, |feature| feature);
                }
            }
            None => {
                tile.load(&squared, nearest.as_ref(), first, lines);
                for line in 0..lines {
                    tile.envelope(line, weight, order);
                }
            }
        }
        tile.store(&mut squared, nearest.as_mut(), first, lines);
    }
}

/// A `[outer, len, stride]` array cut into disjoint columns `[len, <= COLUMN]`, block after block.
fn columns<T>(flat: &mut [T], [outer, len, stride]: [usize; 3]) -> Vec<ArrayViewMut2<'_, T>> {
    let mut out = Vec::with_capacity(outer * stride.div_ceil(COLUMN));
    let mut rest = ArrayViewMut3::from_shape((outer, len, stride), flat).expect("the shape's volume");
    for _ in 0..outer {
        let (block, tail) = rest.split_at(Axis(0), 1);
        rest = tail;
        let mut block = block.index_axis_move(Axis(0), 0);
        while block.ncols() > COLUMN {
            let (column, tail) = block.split_at(Axis(1), COLUMN);
            out.push(column);
            block = tail;
        }
        out.push(block);
    }
    out
}

/// The order that settles exact ties between nearest voxels as scipy's feature transform settles
/// them: the voxel with the smaller coordinate on the last axis, then on the axis before, and so
/// on (the smaller column-major index); features are row-major indices.
struct TieOrder {
    /// The row-major stride and the column-major stride of every axis.
    strides: Vec<(usize, usize, usize)>,
}

/// How the envelopes order equidistant nearest voxels: by a key, the smallest first.
trait TieKey: Sync {
    /// The key of the voxel a feature names.
    fn key(&self, feature: usize) -> usize;
}

impl TieKey for TieOrder {
    fn key(&self, index: usize) -> usize {
        self.strides.iter().map(|&(row, len, column)| (index / row) % len * column).sum()
    }
}

impl TieOrder {
    fn new(shape: &[usize]) -> Self {
        let mut column = 1;
        let mut strides = Vec::with_capacity(shape.len());
        for (axis, &len) in shape.iter().enumerate() {
            let row: usize = shape[axis + 1..].iter().product();
            strides.push((row, len, column));
            column *= len;
        }
        Self { strides }
    }
}

/// The scratch buffers of up to [`TILE`] lines of `len` voxels, line after line.
struct Tile<const INDICES: bool, F: Feature> {
    len: usize,
    /// Whether the envelopes write the distances (the Voronoi cells need the nearest voxels
    /// only: their passes recompute or drop the distances).
    distances: bool,
    /// The input values and nearest indices.
    f: Vec<f64>,
    feature: Vec<F>,
    /// The output.
    out: Vec<f64>,
    out_feature: Vec<F>,
    /// The envelope of one line: positions of its parabolas, the crossing of each with the one
    /// before as a fraction (see `envelope`), and the parabolas' constant terms.
    v: Vec<usize>,
    rise: Vec<f64>,
    run: Vec<f64>,
    g: Vec<f64>,
    /// The rows of a plane with foreground (see `plane_passes`).
    rows: Vec<usize>,
}

impl<const INDICES: bool, F: Feature> Tile<INDICES, F> {
    fn new(len: usize) -> Self {
        let features = if INDICES { len * TILE } else { 0 };
        Self {
            len,
            distances: true,
            f: vec![0.0; len * TILE],
            feature: vec![F::default(); features],
            out: vec![0.0; len * TILE],
            out_feature: vec![F::default(); features],
            v: vec![0; len],
            // One more: the envelope's end (see `envelope_of`).
            rise: vec![0.0; len + 1],
            run: vec![0.0; len + 1],
            g: vec![0.0; len],
            rows: Vec::with_capacity(len),
        }
    }

    /// A tile whose envelopes find the nearest voxels only: their distances are neither
    /// computed nor stored (the caller's distances are left as they were).
    fn without_distances(self) -> Self {
        Self { distances: false, ..self }
    }

    /// Lines `first..first + lines` of a column (`[len, lines..]`: line `j`'s voxel `q` at `[q, j]`).
    fn load(
        &mut self,
        squared: &ArrayViewMut2<'_, f64>,
        nearest: Option<&ArrayViewMut2<'_, F>>,
        first: usize,
        lines: usize,
    ) {
        self.load_column(squared, first, lines, |tile, voxel, _, value| tile.f[voxel] = value);
        if let Some(nearest) = nearest {
            self.load_column(nearest, first, lines, |tile, voxel, _, index| tile.feature[voxel] = index);
        }
    }

    /// The output of lines `first..first + lines` into a column (see [`load`](Self::load)).
    fn store(
        &self,
        squared: &mut ArrayViewMut2<'_, f64>,
        nearest: Option<&mut ArrayViewMut2<'_, F>>,
        first: usize,
        lines: usize,
    ) {
        if self.distances {
            self.store_column(squared, first, lines, |tile, voxel| tile.out[voxel]);
        }
        if let Some(nearest) = nearest {
            self.store_column(nearest, first, lines, |tile, voxel| tile.out_feature[voxel]);
        }
    }

    /// Reads lines `first..first + lines` of a column of `T`, row after row: `put(tile, voxel,
    /// j, value)` for line `j`'s voxel `q`, at `voxel = j * len + q` in the tile's buffers.
    fn load_column<T: Copy>(
        &mut self,
        column: &ArrayViewMut2<'_, T>,
        first: usize,
        lines: usize,
        mut put: impl FnMut(&mut Self, usize, usize, T),
    ) {
        for q in 0..self.len {
            let row = column.row(q);
            let row = &row.as_slice().expect("rows are contiguous")[first..first + lines];
            for (j, &value) in row.iter().enumerate() {
                put(self, j * self.len + q, j, value);
            }
        }
    }

    /// [`load_column`](Self::load_column) of the rows `rows` only.
    fn load_rows<T: Copy>(
        &mut self,
        column: &ArrayViewMut2<'_, T>,
        first: usize,
        lines: usize,
        rows: &[usize],
        mut put: impl FnMut(&mut Self, usize, usize, T),
    ) {
        for &q in rows {
            let row = column.row(q);
            let row = &row.as_slice().expect("rows are contiguous")[first..first + lines];
            for (j, &value) in row.iter().enumerate() {
                put(self, j * self.len + q, j, value);
            }
        }
    }

    /// Writes lines `first..first + lines` of a column of `T`, row after row: line `j`'s voxel
    /// `q` takes `get(tile, j * len + q)`.
    fn store_column<T>(
        &self,
        column: &mut ArrayViewMut2<'_, T>,
        first: usize,
        lines: usize,
        get: impl Fn(&Self, usize) -> T,
    ) {
        for q in 0..self.len {
            let mut row = column.row_mut(q);
            let row = &mut row.as_slice_mut().expect("rows are contiguous")[first..first + lines];
            for (j, value) in row.iter_mut().enumerate() {
                *value = get(self, j * self.len + q);
            }
        }
    }

    /// Line `line`: `out[q] = min_p weight (q - p)^2 + f[p]` over the finite `f[p]`, and its
    /// `feature[p]`; of several minimising `p`, the one whose feature comes first in `order`.
    fn envelope(&mut self, line: usize, weight: f64, order: &impl TieKey) {
        let range = line * self.len..(line + 1) * self.len;
        for (q, (g, &f)) in self.g.iter_mut().zip(&self.f[range]).enumerate() {
            let q = q as f64;
            *g = f + weight * q * q;
        }
        self.envelope_of(line, weight, order, 0..self.len, |feature| feature);
    }

    /// [`envelope`](Self::envelope) where the finite `f[p]` are known to be those at `rows`
    /// (increasing): the others are not read. Every output feature is `map(feature)` (once per
    /// segment of the envelope: the Voronoi cells map the nearest voxel to its label).
    fn envelope_over_rows(
        &mut self,
        line: usize,
        weight: f64,
        order: &impl TieKey,
        rows: &[usize],
        map: impl Fn(F) -> F,
    ) {
        let f = &self.f[line * self.len..(line + 1) * self.len];
        for &q in rows {
            let x = q as f64;
            self.g[q] = f[q] + weight * x * x;
        }
        self.envelope_of(line, weight, order, rows.iter().copied(), map);
    }

    /// The envelope of line `line` over the parabolas at `candidates` (increasing), their
    /// `g[q] = f[q] + weight q^2` computed.
    #[inline(always)]
    fn envelope_of(
        &mut self,
        line: usize,
        weight: f64,
        order: &impl TieKey,
        candidates: impl Iterator<Item = usize>,
        map: impl Fn(F) -> F,
    ) {
        let range = line * self.len..(line + 1) * self.len;
        let features = if INDICES { range.clone() } else { 0..0 };
        let (f, feature) = (&self.f[range.clone()], &self.feature[features.clone()]);
        let (out, out_feature) = (&mut self.out[range], &mut self.out_feature[features]);
        let (v, g, distances) = (&mut self.v, &self.g, self.distances);
        let (rise, run) = (&mut self.rise, &mut self.run);
        // `g[q] = f[q] + weight q^2`: the parabola rooted at `q` is `weight x^2 - 2 weight q x + g[q]`,
        // so two of them, rooted at `a < b`, cross at `x = (g[b] - g[a]) / (2 weight (b - a))`.
        // The envelope keeps, for its `i`-th parabola, that crossing with the one before as the
        // fraction `rise[i] / (2 weight run[i])`, and every comparison of crossings is made
        // without a division (division latency dominated this loop): exact for the integer
        // squared distances of unit spacing, so ties are found exactly.
        let two_weight = 2.0 * weight;
        let mut k = 0usize; // parabolas in the envelope
        for q in candidates {
            let gq = g[q];
            if !gq.is_finite() {
                continue;
            }
            // Pop the parabolas that the new one hides: those whose crossing with it comes before
            // their crossing with the one before them (the first one is never popped). One that
            // the new one meets exactly where it meets the one before is kept (its segment has
            // no width): at that point it ties, and a tie may go to it.
            while k > 1 {
                let p = v[k - 1];
                let (new_rise, new_run) = (gq - g[p], (q - p) as f64);
                let (lhs, rhs) = (new_rise * run[k - 1], rise[k - 1] * new_run);
                if lhs < rhs || (!INDICES && lhs == rhs) {
                    k -= 1;
                } else {
                    break;
                }
            }
            if k > 0 {
                let p = v[k - 1];
                rise[k] = gq - g[p];
                run[k] = (q - p) as f64;
            }
            v[k] = q;
            k += 1;
        }
        if k == 0 {
            out.fill(f64::INFINITY);
            out_feature.fill(F::NONE);
            return;
        }
        // The first parabola's output (that of every voxel up to where the next one starts).
        let mut nearest = if INDICES { map(feature[v[0]]) } else { F::NONE };
        if INDICES && !distances && v[1..k].iter().all(|&p| map(feature[p]) == nearest) {
            // Every voxel's output is that of one of the envelope's parabolas: when they all map
            // to the same value (one instance's voxels, for the Voronoi cells), so does the line.
            out_feature.fill(nearest);
            return;
        }
        // Parabola `i > 0` starts at `x` when its crossing is `x` (`rise[i] == 2 weight x
        // run[i]`), and before `x` when below. A last parabola that never starts ends the
        // envelope, so the scan needs no bound check.
        (rise[k], run[k]) = (f64::INFINITY, 1.0);
        let mut j = 0;
        let mut next = (rise[1], run[1]);
        for (q, out) in out.iter_mut().enumerate() {
            let x = q as f64;
            let at = two_weight * x;
            while next.0 < at * next.1 {
                j += 1;
                next = (rise[j + 1], run[j + 1]);
                if INDICES {
                    nearest = map(feature[v[j]]);
                }
            }
            let mut p = v[j];
            if INDICES {
                if next.0 == at * next.1 {
                    // The parabolas that start exactly at `x` tie with `v[j]` there.
                    let mut tied = j + 1;
                    while rise[tied] == at * run[tied] {
                        if order.key(feature[v[tied]].index()) < order.key(feature[p].index()) {
                            p = v[tied];
                        }
                        tied += 1;
                    }
                    out_feature[q] = map(feature[p]);
                } else {
                    out_feature[q] = nearest;
                }
            }
            if distances {
                let d = x - p as f64;
                *out = weight * d * d + f[p];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3, ArrayD, IxDyn};
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// Every voxel against every foreground voxel.
    fn brute_force(mask: &ArrayD<u8>, spacing: &[f64]) -> Vec<f64> {
        let shape = mask.shape();
        let coords = |mut i: usize| -> Vec<f64> {
            let mut c = vec![0.0; shape.len()];
            for d in (0..shape.len()).rev() {
                c[d] = (i % shape[d]) as f64 * spacing[d];
                i /= shape[d];
            }
            c
        };
        let foreground: Vec<Vec<f64>> =
            mask.iter().enumerate().filter(|&(_, &v)| v != 0).map(|(i, _)| coords(i)).collect();
        (0..mask.len())
            .map(|i| {
                let c = coords(i);
                foreground
                    .iter()
                    .map(|f| f.iter().zip(&c).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
                    .fold(f64::INFINITY, f64::min)
                    .sqrt()
            })
            .collect()
    }

    /// Random 2D and 3D masks, sparse and dense, isotropic and anisotropic: the distances equal
    /// the brute force, and the named voxel is foreground and at that distance.
    #[test]
    fn matches_brute_force() {
        let mut rng = SmallRng::seed_from_u64(3);
        for (shape, density, spacing) in [
            (vec![9, 13], 0.05, vec![1.0, 1.0]),
            (vec![17, 5], 0.3, vec![0.7, 1.9]),
            (vec![6, 7, 8], 0.02, vec![2.5, 1.0, 0.6]),
            (vec![5, 9, 4], 0.4, vec![1.0, 1.0, 1.0]),
            (vec![1, 30], 0.1, vec![3.0, 0.5]),
            (vec![4, 1, 6], 0.2, vec![1.0, 1.3, 0.9]),
        ] {
            let mask = ArrayD::from_shape_simple_fn(IxDyn(&shape), || u8::from(rng.random::<f64>() < density));
            let dt = distance_transform(mask.view(), &spacing).unwrap();
            let want = brute_force(&mask, &spacing);
            // The distances alone are the same bits.
            assert_eq!(distance_map(mask.view(), &spacing).unwrap(), dt.distances, "{shape:?}");
            let flat: Vec<u8> = mask.iter().copied().collect();
            let coords = |mut i: usize| -> Vec<f64> {
                let mut c = vec![0.0; shape.len()];
                for d in (0..shape.len()).rev() {
                    c[d] = (i % shape[d]) as f64 * spacing[d];
                    i /= shape[d];
                }
                c
            };
            for (i, ((&got, &nearest), &want)) in dt.distances.iter().zip(&dt.nearest).zip(&want).enumerate() {
                if want.is_infinite() {
                    assert!(got.is_infinite() && nearest == usize::MAX, "{shape:?} voxel {i}");
                    continue;
                }
                assert!((got - want).abs() <= 1e-9 * want.max(1.0), "{shape:?} voxel {i}: {got} vs {want}");
                assert_eq!(flat[nearest], 1, "{shape:?} voxel {i}: nearest {nearest} is not foreground");
                let (a, b) = (coords(i), coords(nearest));
                let d = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
                assert!(
                    (d - want).abs() <= 1e-9 * want.max(1.0),
                    "{shape:?} voxel {i}: named voxel at {d}, not {want}"
                );
            }
        }
    }

    /// Masks full of ties (small, dense, integer and dyadic spacings): the named voxel is, of all
    /// the nearest ones, the one with the smallest last coordinate, then the one before (scipy's
    /// choice; `scripts/edt_compare.py` checks it against scipy itself).
    #[test]
    fn ties_go_to_the_smallest_last_coordinate() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut ties = 0;
        for round in 0..300 {
            let shape = match round % 3 {
                0 => vec![1 + round % 7, 2 + round % 9],
                1 => vec![1 + round % 4, 2 + round % 5, 1 + round % 6],
                _ => vec![3, 1 + round % 8, 4],
            };
            let spacing: Vec<f64> = shape.iter().map(|_| [1.0, 2.0, 0.5][rng.random_range(0..3)]).collect();
            let density = [0.05, 0.15, 0.4][round % 3];
            let mask = ArrayD::from_shape_simple_fn(IxDyn(&shape), || u8::from(rng.random::<f64>() < density));
            let dt = distance_transform(mask.view(), &spacing).unwrap();
            let coords = |mut i: usize| -> Vec<usize> {
                let mut c = vec![0; shape.len()];
                for d in (0..shape.len()).rev() {
                    c[d] = i % shape[d];
                    i /= shape[d];
                }
                c
            };
            let squared = |a: &[usize], b: &[usize]| -> f64 {
                a.iter().zip(b).zip(&spacing).map(|((&x, &y), s)| ((x as f64 - y as f64) * s).powi(2)).sum()
            };
            let foreground: Vec<usize> = mask.iter().enumerate().filter(|&(_, &v)| v != 0).map(|(i, _)| i).collect();
            for (i, &nearest) in dt.nearest.iter().enumerate() {
                let c = coords(i);
                let best = foreground.iter().map(|&f| squared(&c, &coords(f))).fold(f64::INFINITY, f64::min);
                let mut tied: Vec<Vec<usize>> =
                    foreground.iter().map(|&f| coords(f)).filter(|f| squared(&c, f) == best).collect();
                if tied.is_empty() {
                    assert_eq!(nearest, usize::MAX);
                    continue;
                }
                ties += usize::from(tied.len() > 1);
                // Reverse-lexicographic: the last axis first.
                tied.sort_by(|a, b| a.iter().rev().cmp(b.iter().rev()));
                assert_eq!(coords(nearest), tied[0], "{shape:?} {spacing:?} voxel {c:?}");
            }
        }
        assert!(ties > 1000, "only {ties} ties: the cases test little");
    }

    /// The two schedules, with and without indices, with `usize` and `u32` indices, give the
    /// same bits: 2D to 4D masks full of ties (integer and dyadic spacings), axes of size 1.
    #[test]
    fn schedules_and_index_types_agree() {
        let mut rng = SmallRng::seed_from_u64(11);
        for round in 0..240 {
            let shape = match round % 4 {
                0 => vec![1 + round % 6, 2 + round % 9],
                1 | 2 => vec![1 + round % 5, 1 + round % 7, 2 + round % 9],
                _ => vec![1 + round % 3, 2 + round % 4, 1 + round % 5, 3],
            };
            let spacing: Vec<f64> = shape.iter().map(|_| [1.0, 2.0, 0.5, 1.3][rng.random_range(0..4)]).collect();
            let density = [0.02, 0.1, 0.4][round % 3];
            let mask = ArrayD::from_shape_simple_fn(IxDyn(&shape), || u8::from(rng.random::<f64>() < density));
            let run = |schedule| squared_distances::<true, usize, u8, _>(mask.view(), &spacing, schedule).unwrap();
            let reference = run(Schedule::AxisByAxis);
            assert_eq!(run(Schedule::PlaneByPlane), reference, "{shape:?} {spacing:?}");
            for schedule in [Schedule::AxisByAxis, Schedule::PlaneByPlane] {
                let (squared, nearest) =
                    squared_distances::<true, u32, u8, _>(mask.view(), &spacing, schedule).unwrap();
                assert_eq!(squared, reference.0, "{shape:?} {schedule:?}");
                let widened: Vec<usize> =
                    nearest.iter().map(|&n| if n == u32::NONE { usize::NONE } else { n.index() }).collect();
                assert_eq!(widened, reference.1, "{shape:?} {schedule:?}");
                let (alone, _) = squared_distances::<false, u32, u8, _>(mask.view(), &spacing, schedule).unwrap();
                assert_eq!(alone, reference.0, "{shape:?} {schedule:?}");
            }
            // Every instance voxel its own id: a tie that goes the wrong way shows in the cells.
            let ids = mask.iter().enumerate().map(|(i, &m)| if m == 0 { 0 } else { i as u32 + 1 }).collect();
            let labels = ArrayD::from_shape_vec(IxDyn(&shape), ids).unwrap();
            let mut cells = [ArrayD::zeros(IxDyn(&shape)), ArrayD::zeros(IxDyn(&shape))];
            for (out, schedule) in cells.iter_mut().zip([Schedule::AxisByAxis, Schedule::PlaneByPlane]) {
                voronoi_scheduled(labels.view(), &spacing, out.view_mut(), schedule).unwrap();
            }
            assert_eq!(cells[0], cells[1], "{shape:?}");
        }
    }

    /// `voronoi_into` writes every voxel of a buffer of any layout, and names a buffer of the
    /// wrong shape.
    #[test]
    fn voronoi_into_writes_any_layout_and_checks_the_shape() {
        let mut labels = Array3::<u32>::zeros((3, 4, 5));
        labels[[0, 0, 0]] = 1;
        labels[[2, 3, 4]] = 2;
        let want = voronoi(labels.view(), &[1.0, 2.0, 1.0]).unwrap();
        let mut transposed = Array3::<u32>::from_elem((5, 4, 3), 7);
        voronoi_into(labels.view(), &[1.0, 2.0, 1.0], transposed.view_mut().reversed_axes()).unwrap();
        assert_eq!(transposed.reversed_axes(), want);
        let mut wrong = Array3::<u32>::zeros((3, 4, 4));
        let err = voronoi_into(labels.view(), &[1.0; 3], wrong.view_mut()).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    }

    #[test]
    fn packed_cells_of_few_instances_overwrite_any_output() {
        // Few ids (whole lines of the first axis whose nearest voxels all carry one id end early),
        // empty planes and rows, ties; the output buffer full of another value beforehand (as a
        // reused buffer is): the plane-by-plane cells equal the axis-by-axis ones everywhere.
        let mut rng = SmallRng::seed_from_u64(5);
        for round in 0..120 {
            let shape = vec![2 + round % 7, 1 + round % 6, 2 + round % 11];
            let spacing: Vec<f64> = (0..3).map(|_| [1.0, 2.0, 0.5, 1.3][rng.random_range(0..4)]).collect();
            let density = [0.01, 0.05, 0.3][round % 3];
            let ids = (rng.random_range(1..4u32), rng.random_range(0..shape[0]));
            let labels = ArrayD::from_shape_fn(IxDyn(&shape), |at| {
                // Plane `ids.1` left empty, so that the first axis's lines skip a plane.
                if at[0] == ids.1 || rng.random::<f64>() >= density { 0 } else { 1 + (at[1] as u32 % ids.0) }
            });
            let mut expected = ArrayD::zeros(IxDyn(&shape));
            voronoi_scheduled(labels.view(), &spacing, expected.view_mut(), Schedule::AxisByAxis).unwrap();
            let mut found = ArrayD::from_elem(IxDyn(&shape), 77u32);
            voronoi_scheduled(labels.view(), &spacing, found.view_mut(), Schedule::PlaneByPlane).unwrap();
            assert_eq!(found, expected, "{shape:?} {spacing:?}");
        }
    }

    #[test]
    fn voronoi_cells_take_the_nearest_instance() {
        // Anisotropic: along the first axis a step costs 3, along the second 1.
        let mut labels = Array2::<u32>::zeros((5, 9));
        labels[[0, 0]] = 4;
        labels[[4, 8]] = 9;
        let cells = voronoi(labels.view(), &[3.0, 1.0]).unwrap();
        for ((y, x), &cell) in cells.indexed_iter() {
            let d4 = ((3.0 * y as f64).powi(2) + (x as f64).powi(2)).sqrt();
            let d9 = ((3.0 * (4.0 - y as f64)).powi(2) + (8.0 - x as f64).powi(2)).sqrt();
            if (d4 - d9).abs() > 1e-9 {
                assert_eq!(cell, if d4 < d9 { 4 } else { 9 }, "({y}, {x})");
            }
        }
        // No instances: no cells.
        let empty = Array3::<u32>::zeros((2, 3, 4));
        assert!(voronoi(empty.view(), &[1.0; 3]).unwrap().iter().all(|&c| c == 0));
    }

    #[test]
    fn bad_spacing_is_an_error() {
        let mask = Array2::<u8>::zeros((2, 2));
        for spacing in [vec![1.0], vec![1.0, 0.0], vec![1.0, f64::NAN], vec![-1.0, 1.0]] {
            let err = distance_transform(mask.view(), &spacing).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        }
        // Zero-sized axes are fine.
        let empty = Array2::<u8>::zeros((0, 3));
        assert_eq!(distance_transform(empty.view(), &[1.0, 1.0]).unwrap().distances.len(), 0);
    }
}
