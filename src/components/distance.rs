//! Exact Euclidean distance transform with nearest-feature indices, and the Voronoi cells of an
//! instance map (the partition the connected-component losses score).

use ndarray::{Array, ArrayView, ArrayViewMut2, ArrayViewMut3, Axis, Dimension};
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
    let (squared, nearest) = squared_distances::<true, A, D>(mask, spacing)?;
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
    let (squared, _) = squared_distances::<false, A, D>(mask, spacing)?;
    Ok(Array::from_shape_vec(dim, squared.into_iter().map(f64::sqrt).collect()).expect("one distance per voxel"))
}

/// The squared distances, row-major, and (with `INDICES`) the nearest voxels' indices (empty
/// without).
fn squared_distances<const INDICES: bool, A, D>(
    mask: ArrayView<'_, A, D>,
    spacing: &[f64],
) -> Result<(Vec<f64>, Vec<usize>), Error>
where
    A: Copy + Default + PartialEq + Send + Sync,
    D: Dimension,
{
    check_spacing(mask.ndim(), spacing)?;
    let shape = mask.shape().to_vec();
    let background = A::default();
    // Squared distances and nearest indices, row-major, refined one axis at a time.
    let standard = mask.as_standard_layout();
    let values = standard.as_slice().expect("standard layout");
    let mut squared: Vec<f64> = values.par_iter().map(|&v| if v == background { f64::INFINITY } else { 0.0 }).collect();
    let mut nearest: Vec<usize> = if INDICES {
        values.par_iter().enumerate().map(|(i, &v)| if v == background { usize::MAX } else { i }).collect()
    } else {
        Vec::new()
    };
    // The last axis first (contiguous lines, binary input), then the others, last to first.
    if let Some((&last, others)) = spacing.split_last() {
        first_pass::<INDICES>(&mut squared, &mut nearest, shape[others.len()], last * last);
        for (axis, &step) in others.iter().enumerate().rev() {
            pass::<INDICES>(&mut squared, &mut nearest, &shape, axis, step * step);
        }
    }
    Ok((squared, nearest))
}

/// The Voronoi cells of an instance map: every voxel takes the id of its nearest instance voxel
/// (Euclidean, with voxel `spacing`), so cell `k` holds the voxels closer to instance `k` than
/// to any other. The cells partition the whole volume, background included; a map without
/// instances gives all zeros.
///
/// This is the partition of the connected-component (CC) losses: instance `k` is scored on its
/// cell. Ties follow [`distance_transform`].
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
    let (_, nearest) = squared_distances::<true, u32, D>(labels.view(), spacing)?;
    let standard = labels.as_standard_layout();
    let flat = standard.as_slice().expect("standard layout");
    let cells = nearest.into_par_iter().map(|i| flat.get(i).copied().unwrap_or(0)).collect();
    Ok(Array::from_shape_vec(labels.raw_dim(), cells).expect("one cell per voxel"))
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
        for (channel, mut out) in element.outer_iter().zip(out.outer_iter_mut()) {
            out.assign(&voronoi(channel, spacing)?);
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

/// The first pass, along the last (contiguous) axis, on the binary mask: every voxel's nearest
/// foreground voxel on its line is the nearer of the last one before it and the first one after
/// it (the one before on a tie).
fn first_pass<const INDICES: bool>(squared: &mut [f64], nearest: &mut [usize], len: usize, weight: f64) {
    if len == 0 {
        return;
    }
    let line = |squared: &mut [f64], nearest: &mut [usize]| {
        // Forward: the last foreground voxel at or before q.
        let mut last = usize::MAX;
        for q in 0..len {
            if squared[q] == 0.0 {
                last = q;
            } else if last != usize::MAX {
                let d = (q - last) as f64;
                squared[q] = weight * d * d;
                if INDICES {
                    nearest[q] = nearest[last];
                }
            }
        }
        // Backward: the first foreground voxel after q, where strictly nearer.
        let mut next = usize::MAX;
        for q in (0..len).rev() {
            if squared[q] == 0.0 {
                next = q;
            } else if next != usize::MAX {
                let d = (next - q) as f64;
                let candidate = weight * d * d;
                if candidate < squared[q] {
                    squared[q] = candidate;
                    if INDICES {
                        nearest[q] = nearest[next];
                    }
                }
            }
        }
    };
    if INDICES {
        squared.par_chunks_mut(len).zip(nearest.par_chunks_mut(len)).for_each(|(s, n)| line(s, n));
    } else {
        squared.par_chunks_mut(len).for_each(|s| line(s, &mut []));
    }
}

/// Lines gathered at once by [`pass`]: neighbouring lines along a strided axis share cache
/// lines, so a tile of them is read and written row by row.
const TILE: usize = 16;

/// Lines per task of a pass: a column of a block, `COLUMN` lines wide.
const COLUMN: usize = 4 * TILE;

/// One pass along `axis` (not the last): every line of `squared` becomes the lower envelope of
/// the parabolas `weight * (q - p)^2 + squared[p]`, and `nearest` follows the minimising `p`.
fn pass<const INDICES: bool>(squared: &mut [f64], nearest: &mut [usize], shape: &[usize], axis: usize, weight: f64) {
    let len = shape[axis];
    let stride: usize = shape[axis + 1..].iter().product();
    let block = len * stride;
    if block == 0 || len == 1 || squared.is_empty() {
        return;
    }
    let order = TieOrder::new(shape);
    let outer = squared.len() / block;
    // Every block (the voxels before `axis` fixed) is cut into columns of lines, so that even
    // the first axis, one block, is shared among the threads.
    let squared = columns(squared, [outer, len, stride]);
    let run = |tile: &mut Tile<INDICES>,
               mut squared: ArrayViewMut2<'_, f64>,
               mut nearest: Option<ArrayViewMut2<'_, usize>>| {
        let width = squared.ncols();
        for first in (0..width).step_by(TILE) {
            let lines = TILE.min(width - first);
            tile.load(&squared, nearest.as_ref(), first, lines);
            for line in 0..lines {
                tile.envelope(line, weight, &order);
            }
            tile.store(&mut squared, nearest.as_mut(), first, lines);
        }
    };
    if INDICES {
        let nearest = columns(nearest, [outer, len, stride]);
        squared.into_par_iter().zip(nearest).for_each_init(|| Tile::new(len), |tile, (s, n)| run(tile, s, Some(n)));
    } else {
        squared.into_par_iter().for_each_init(|| Tile::new(len), |tile, s| run(tile, s, None));
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
/// on (the smaller column-major index).
struct TieOrder {
    /// The row-major stride and the column-major stride of every axis.
    strides: Vec<(usize, usize, usize)>,
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

    /// The column-major index of the voxel of row-major index `index`.
    fn key(&self, index: usize) -> usize {
        self.strides.iter().map(|&(row, len, column)| (index / row) % len * column).sum()
    }
}

/// The scratch buffers of up to [`TILE`] lines of `len` voxels, line after line.
struct Tile<const INDICES: bool> {
    len: usize,
    /// The input values and nearest indices.
    f: Vec<f64>,
    feature: Vec<usize>,
    /// The output.
    out: Vec<f64>,
    out_feature: Vec<usize>,
    /// The envelope of one line: positions of its parabolas, the crossing of each with the one
    /// before as a fraction (see `envelope`), and the parabolas' constant terms.
    v: Vec<usize>,
    rise: Vec<f64>,
    run: Vec<f64>,
    g: Vec<f64>,
}

impl<const INDICES: bool> Tile<INDICES> {
    fn new(len: usize) -> Self {
        let features = if INDICES { len * TILE } else { 0 };
        Self {
            len,
            f: vec![0.0; len * TILE],
            feature: vec![0; features],
            out: vec![0.0; len * TILE],
            out_feature: vec![0; features],
            v: vec![0; len],
            rise: vec![0.0; len],
            run: vec![0.0; len],
            g: vec![0.0; len],
        }
    }

    /// Lines `first..first + lines` of a column (`[len, lines..]`: line `j`'s voxel `q` at `[q, j]`).
    fn load(
        &mut self,
        squared: &ArrayViewMut2<'_, f64>,
        nearest: Option<&ArrayViewMut2<'_, usize>>,
        first: usize,
        lines: usize,
    ) {
        for q in 0..self.len {
            let row = squared.row(q);
            let row = &row.as_slice().expect("rows are contiguous")[first..first + lines];
            for (j, &value) in row.iter().enumerate() {
                self.f[j * self.len + q] = value;
            }
            if let Some(nearest) = nearest {
                let row = nearest.row(q);
                let row = &row.as_slice().expect("rows are contiguous")[first..first + lines];
                for (j, &index) in row.iter().enumerate() {
                    self.feature[j * self.len + q] = index;
                }
            }
        }
    }

    fn store(
        &self,
        squared: &mut ArrayViewMut2<'_, f64>,
        mut nearest: Option<&mut ArrayViewMut2<'_, usize>>,
        first: usize,
        lines: usize,
    ) {
        for q in 0..self.len {
            let mut row = squared.row_mut(q);
            let row = &mut row.as_slice_mut().expect("rows are contiguous")[first..first + lines];
            for (j, value) in row.iter_mut().enumerate() {
                *value = self.out[j * self.len + q];
            }
            if let Some(nearest) = nearest.as_mut() {
                let mut row = nearest.row_mut(q);
                let row = &mut row.as_slice_mut().expect("rows are contiguous")[first..first + lines];
                for (j, index) in row.iter_mut().enumerate() {
                    *index = self.out_feature[j * self.len + q];
                }
            }
        }
    }

    /// Line `line`: `out[q] = min_p weight (q - p)^2 + f[p]` over the finite `f[p]`, and its
    /// `feature[p]`; of several minimising `p`, the one whose feature comes first in `order`.
    fn envelope(&mut self, line: usize, weight: f64, order: &TieOrder) {
        let range = line * self.len..(line + 1) * self.len;
        let features = if INDICES { range.clone() } else { 0..0 };
        let (f, feature) = (&self.f[range.clone()], &self.feature[features.clone()]);
        let (out, out_feature) = (&mut self.out[range], &mut self.out_feature[features]);
        let (v, g) = (&mut self.v, &mut self.g);
        let (rise, run) = (&mut self.rise, &mut self.run);
        // `g[q] = f[q] + weight q^2`: the parabola rooted at `q` is `weight x^2 - 2 weight q x + g[q]`,
        // so two of them, rooted at `a < b`, cross at `x = (g[b] - g[a]) / (2 weight (b - a))`.
        // The envelope keeps, for its `i`-th parabola, that crossing with the one before as the
        // fraction `rise[i] / (2 weight run[i])`, and every comparison of crossings is made
        // without a division (division latency dominated this loop): exact for the integer
        // squared distances of unit spacing, so ties are found exactly.
        for (q, (g, &f)) in g.iter_mut().zip(f).enumerate() {
            let q = q as f64;
            *g = f + weight * q * q;
        }
        let two_weight = 2.0 * weight;
        let mut k = 0usize; // parabolas in the envelope
        for (q, &gq) in g.iter().enumerate() {
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
            out_feature.fill(usize::MAX);
            return;
        }
        // Parabola `i > 0` starts at `x` when its crossing is `x`, and before `x` when below.
        let starts_before = |i: usize, x: f64| rise[i] < two_weight * x * run[i];
        let starts_at = |i: usize, x: f64| rise[i] == two_weight * x * run[i];
        let mut j = 0;
        for (q, out) in out.iter_mut().enumerate() {
            let x = q as f64;
            while j + 1 < k && starts_before(j + 1, x) {
                j += 1;
            }
            let mut p = v[j];
            if INDICES {
                // The parabolas that start exactly at `x` tie with `v[j]` there.
                let mut tied = j + 1;
                while tied < k && starts_at(tied, x) {
                    if order.key(feature[v[tied]]) < order.key(feature[p]) {
                        p = v[tied];
                    }
                    tied += 1;
                }
                out_feature[q] = feature[p];
            }
            let d = x - p as f64;
            *out = weight * d * d + f[p];
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
