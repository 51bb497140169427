//! Exact Euclidean distance transform with nearest-feature indices, and the Voronoi cells of an
//! instance map (the partition the connected-component losses score).

use ndarray::{Array, ArrayView, Dimension};
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
/// **Ties** (voxels at exactly the same distance from two foreground voxels): the first pass
/// keeps the voxel before; the envelope passes keep, at an exact crossing, the parabola of the
/// smaller position along their axis. Distances are exact either way; which of two equidistant
/// voxels is named depends on the order of the passes and may differ from scipy's (on the
/// random cases of `scripts/edt_compare.py` it differs only at such equidistant voxels).
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
    A: Copy + Default + PartialEq,
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
    A: Copy + Default + PartialEq,
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
    A: Copy + Default + PartialEq,
    D: Dimension,
{
    check_spacing(mask.ndim(), spacing)?;
    let shape = mask.shape().to_vec();
    let background = A::default();
    // Squared distances and nearest indices, row-major, refined one axis at a time.
    let mut squared: Vec<f64> = mask.iter().map(|&v| if v == background { f64::INFINITY } else { 0.0 }).collect();
    let mut nearest: Vec<usize> = if INDICES {
        mask.iter().enumerate().map(|(i, &v)| if v == background { usize::MAX } else { i }).collect()
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
    let transform = distance_transform(labels.view(), spacing)?;
    let flat: Vec<u32> = labels.iter().copied().collect();
    Ok(transform.nearest.mapv(|i| flat.get(i).copied().unwrap_or(0)))
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

/// One pass along `axis` (not the last): every line of `squared` becomes the lower envelope of
/// the parabolas `weight * (q - p)^2 + squared[p]`, and `nearest` follows the minimising `p`.
fn pass<const INDICES: bool>(squared: &mut [f64], nearest: &mut [usize], shape: &[usize], axis: usize, weight: f64) {
    let len = shape[axis];
    let stride: usize = shape[axis + 1..].iter().product();
    let block = len * stride;
    if block == 0 || len == 1 {
        return;
    }
    let run = |tile: &mut Tile<INDICES>, squared: &mut [f64], nearest: &mut [usize]| {
        for first in (0..stride).step_by(TILE) {
            let lines = TILE.min(stride - first);
            tile.load(squared, nearest, first, lines, stride);
            for line in 0..lines {
                tile.envelope(line, weight);
            }
            tile.store(squared, nearest, first, lines, stride);
        }
    };
    if INDICES {
        squared
            .par_chunks_mut(block)
            .zip(nearest.par_chunks_mut(block))
            .for_each_init(|| Tile::new(len), |tile, (s, n)| run(tile, s, n));
    } else {
        squared.par_chunks_mut(block).for_each_init(|| Tile::new(len), |tile, s| run(tile, s, &mut []));
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
    /// The envelope of one line: positions of its parabolas and the boundaries between them,
    /// and the parabolas' constant terms.
    v: Vec<usize>,
    z: Vec<f64>,
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
            z: vec![0.0; len + 1],
            g: vec![0.0; len],
        }
    }

    /// Lines `first..first + lines` of a block (line `j`'s voxel `q` at `first + j + q * stride`).
    fn load(&mut self, squared: &[f64], nearest: &[usize], first: usize, lines: usize, stride: usize) {
        for q in 0..self.len {
            let row = first + q * stride;
            for j in 0..lines {
                self.f[j * self.len + q] = squared[row + j];
            }
            if INDICES {
                for j in 0..lines {
                    self.feature[j * self.len + q] = nearest[row + j];
                }
            }
        }
    }

    fn store(&self, squared: &mut [f64], nearest: &mut [usize], first: usize, lines: usize, stride: usize) {
        for q in 0..self.len {
            let row = first + q * stride;
            for j in 0..lines {
                squared[row + j] = self.out[j * self.len + q];
            }
            if INDICES {
                for j in 0..lines {
                    nearest[row + j] = self.out_feature[j * self.len + q];
                }
            }
        }
    }

    /// Line `line`: `out[q] = min_p weight (q - p)^2 + f[p]` over the finite `f[p]`, and its
    /// `feature[p]`.
    fn envelope(&mut self, line: usize, weight: f64) {
        let range = line * self.len..(line + 1) * self.len;
        let features = if INDICES { range.clone() } else { 0..0 };
        let (f, feature) = (&self.f[range.clone()], &self.feature[features.clone()]);
        let (out, out_feature) = (&mut self.out[range], &mut self.out_feature[features]);
        let (v, z, g) = (&mut self.v, &mut self.z, &mut self.g);
        // `g[q] = f[q] + weight q^2`: the parabola rooted at `q` is `weight x^2 - 2 weight q x + g[q]`,
        // so two of them cross where `x = (g[q] - g[p]) / (2 weight (q - p))`.
        for (q, (g, &f)) in g.iter_mut().zip(f).enumerate() {
            let q = q as f64;
            *g = f + weight * q * q;
        }
        let half = 0.5 / weight;
        let mut k = 0usize; // parabolas in the envelope
        for (q, &gq) in g.iter().enumerate() {
            if !gq.is_finite() {
                continue;
            }
            if k == 0 {
                v[0] = q;
                z[0] = f64::NEG_INFINITY;
                z[1] = f64::INFINITY;
                k = 1;
                continue;
            }
            // Pop the parabolas that the new one hides (the first one's left end is -inf: it
            // is never popped).
            let crossing = |p: usize| (gq - g[p]) * half / (q - p) as f64;
            let mut s = crossing(v[k - 1]);
            while k > 1 && s <= z[k - 1] {
                k -= 1;
                s = crossing(v[k - 1]);
            }
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            k += 1;
        }
        if k == 0 {
            out.fill(f64::INFINITY);
            out_feature.fill(usize::MAX);
            return;
        }
        let mut j = 0;
        for (q, out) in out.iter_mut().enumerate() {
            let x = q as f64;
            while z[j + 1] < x {
                j += 1;
            }
            let p = v[j];
            let d = x - p as f64;
            *out = weight * d * d + f[p];
            if INDICES {
                out_feature[q] = feature[p];
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
