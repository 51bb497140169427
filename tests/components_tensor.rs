//! `label_tensor` and `voronoi_tensor` against the host labeller and distance transform: equal,
//! not just equivalent (the same numbering, the same cells, ties included), on every
//! connectivity, odd sizes, axes of one voxel, 0 to many components and multi-label masks.
//! Built with `--features wgpu`, the suite runs the cube kernels on wgpu (CI: lavapipe);
//! without, the flex path.

use blob_loss::Error;
use blob_loss::components::{Connectivity, label_batch, label_tensor, voronoi_batch, voronoi_tensor};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// The backend under test: flex, or wgpu when built with `--features wgpu`.
fn device() -> Device {
    #[cfg(feature = "wgpu")]
    return Device::wgpu(Default::default());
    #[cfg(not(feature = "wgpu"))]
    return Device::flex();
}

/// A pseudo-random mask: values in `0..=labels` with a density of foreground, `[B, C, spatial..]`.
fn random_mask(shape: &[usize], density: f64, labels: u32, seed: u64) -> Vec<i32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n: usize = shape.iter().product();
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            if u < density { 1 + (state % u64::from(labels)) as i32 } else { 0 }
        })
        .collect()
}

/// Host labels of a mask, as `i32`.
fn host_labels(mask: &[i32], shape: &[usize], connectivity: Connectivity) -> (Vec<i32>, Vec<i32>) {
    let array = ArrayD::from_shape_vec(IxDyn(shape), mask.to_vec()).unwrap();
    let labelled = label_batch(array.view(), connectivity).unwrap();
    (labelled.labels.iter().map(|&l| l as i32).collect(), labelled.counts.iter().map(|&c| c as i32).collect())
}

fn host_cells(labels: &[i32], shape: &[usize], spacing: &[f64]) -> Vec<i32> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), labels.iter().map(|&l| l as u32).collect()).unwrap();
    voronoi_batch(array.view(), spacing).unwrap().iter().map(|&c| c as i32).collect()
}

fn ints(t: Tensor<4, Int>) -> Vec<i32> {
    t.into_data().convert::<i32>().try_to_vec::<i32>().unwrap()
}

fn ints5(t: Tensor<5, Int>) -> Vec<i32> {
    t.into_data().convert::<i32>().try_to_vec::<i32>().unwrap()
}

/// Labels `mask` on the device and on the host and asserts they are equal, counts included;
/// then the Voronoi cells of those labels with `spacing`.
fn check(mask: &[i32], shape: &[usize], connectivity: Connectivity, spacing: &[f64]) {
    let device = device();
    let (expected, counts) = host_labels(mask, shape, connectivity);
    let data = TensorData::new(mask.to_vec(), shape.to_vec());
    let (labels, found_counts, cells) = match shape.len() {
        4 => {
            let labelled = label_tensor(Tensor::<4, Int>::from_data(data, &device), connectivity).unwrap();
            let cells = voronoi_tensor(labelled.labels.clone(), spacing).unwrap();
            (ints(labelled.labels), labelled.counts, ints(cells))
        }
        _ => {
            let labelled = label_tensor(Tensor::<5, Int>::from_data(data, &device), connectivity).unwrap();
            let cells = voronoi_tensor(labelled.labels.clone(), spacing).unwrap();
            (ints5(labelled.labels), labelled.counts, ints5(cells))
        }
    };
    assert_eq!(labels, expected, "labels of {shape:?} with {connectivity:?}");
    let found_counts: Vec<i32> = found_counts.into_data().convert::<i32>().try_to_vec().unwrap();
    assert_eq!(found_counts, counts, "counts of {shape:?} with {connectivity:?}");
    let expected_cells = host_cells(&expected, shape, spacing);
    let differ = cells.iter().zip(&expected_cells).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} cells differ, {shape:?} with spacing {spacing:?}");
}

#[test]
fn golden_cases_match_the_host() {
    // Two classes that touch stay two components; a diagonal joins with 8-connectivity only.
    let mask = [1, 1, 2, 0, 0, 2, 1, 0, 0, 0, 1, 0];
    check(&mask, &[2, 1, 2, 3], Connectivity::Eight, &[1.0, 1.0]);
    check(&mask, &[2, 1, 2, 3], Connectivity::Four, &[1.0, 1.0]);
    // A spiral: one component whose union-find joins from many directions.
    let mut spiral = vec![0; 9 * 9];
    let (mut lo, mut hi) = (0usize, 8usize);
    while lo <= hi {
        for j in lo..=hi {
            spiral[lo * 9 + j] = 1;
            spiral[j * 9 + hi] = 1;
            spiral[hi * 9 + j] = 1;
        }
        for i in lo + 2..=hi {
            spiral[i * 9 + lo] = 1;
        }
        if lo + 2 > hi {
            break;
        }
        lo += 2;
        hi -= 2;
    }
    check(&spiral, &[1, 1, 9, 9], Connectivity::Four, &[1.0, 1.0]);
    // Nothing, everything, one voxel.
    check(&[0; 12], &[1, 1, 3, 4], Connectivity::Four, &[1.0, 1.0]);
    check(&[1; 12], &[1, 1, 3, 4], Connectivity::Eight, &[1.0, 1.0]);
    check(&[7], &[1, 1, 1, 1], Connectivity::Four, &[1.0, 1.0]);
    // Equidistant voxels: the middle of a row between two components, and the centre of a
    // square between four.
    check(&[1, 0, 0, 0, 1], &[1, 1, 1, 5], Connectivity::Four, &[1.0, 1.0]);
    let mut corners = vec![0; 25];
    for at in [0, 4, 20, 24] {
        corners[at] = 1;
    }
    check(&corners, &[1, 1, 5, 5], Connectivity::Four, &[1.0, 1.0]);
    let mut corners3 = vec![0; 27];
    for at in [0, 2, 6, 8, 18, 20, 24, 26] {
        corners3[at] = 1;
    }
    check(&corners3, &[1, 1, 3, 3, 3], Connectivity::Six, &[1.0, 1.0, 1.0]);
}

#[test]
fn every_connectivity_and_odd_shape_matches_the_host() {
    let cases_2d: [&[usize]; 5] = [&[2, 3, 7, 5], &[1, 1, 1, 13], &[1, 2, 13, 1], &[3, 1, 16, 17], &[1, 1, 31, 29]];
    for (i, shape) in cases_2d.iter().enumerate() {
        for density in [0.1, 0.45, 0.8] {
            for labels in [1, 3] {
                let mask = random_mask(shape, density, labels, i as u64 * 31 + labels as u64);
                for connectivity in [Connectivity::Four, Connectivity::Eight] {
                    check(&mask, shape, connectivity, &[1.0, 1.0]);
                }
                check(&mask, shape, Connectivity::Eight, &[2.0, 0.5]);
            }
        }
    }
    let cases_3d: [&[usize]; 5] =
        [&[1, 1, 5, 6, 7], &[2, 1, 1, 9, 4], &[1, 2, 7, 1, 5], &[1, 1, 9, 8, 1], &[1, 1, 17, 13, 11]];
    for (i, shape) in cases_3d.iter().enumerate() {
        for density in [0.05, 0.3, 0.7] {
            for labels in [1, 2] {
                let mask = random_mask(shape, density, labels, 1000 + i as u64 * 7 + labels as u64);
                for connectivity in [Connectivity::Six, Connectivity::Eighteen, Connectivity::TwentySix] {
                    check(&mask, shape, connectivity, &[1.0, 1.0, 1.0]);
                }
                check(&mask, shape, Connectivity::TwentySix, &[2.0, 1.0, 0.5]);
                check(&mask, shape, Connectivity::Six, &[1.5, 1.0, 1.0]);
            }
        }
    }
}

#[test]
fn a_large_volume_with_many_components_matches_the_host() {
    // Thousands of components whose unions race for the same roots.
    let shape = [2, 1, 40, 37, 33];
    for density in [0.2, 0.5] {
        let mask = random_mask(&shape, density, 1, 77);
        check(&mask, &shape, Connectivity::TwentySix, &[1.0, 1.0, 1.0]);
        check(&mask, &shape, Connectivity::Six, &[1.0, 1.0, 2.0]);
    }
    // Sparse lesions in a volume of almost a million voxels: slices longer than the scans'
    // chunks of chunks (and than burn's quadratic `cumsum` could rank in time).
    let shape = [1, 1, 96, 96, 96];
    check(&random_mask(&shape, 0.05, 1, 78), &shape, Connectivity::TwentySix, &[1.0, 1.0, 1.0]);
}

#[test]
fn far_apart_instances_and_their_ties_match_the_host() {
    // A few instance voxels in large volumes: most lines hold no candidate, the nearest
    // instance is tens of voxels away (the device's outward searches run long), and a grid of
    // instances on even coordinates makes equidistant voxels everywhere between them.
    for (shape, seed) in [([2, 1, 33, 40, 27], 5), ([1, 2, 1, 61, 58], 6)] {
        let mask = random_mask(&shape, 0.0008, 3, seed);
        for spacing in [[1.0, 1.0, 1.0], [2.0, 1.0, 0.5], [1.0, 1.5, 3.0]] {
            check(&mask, &shape, Connectivity::TwentySix, &spacing);
        }
    }
    let shape = [1, 1, 17, 21, 19];
    let grid: Vec<i32> = (0..17 * 21 * 19)
        .map(|i| {
            let (z, y, x) = (i / (21 * 19), (i / 19) % 21, i % 19);
            i32::from(z % 8 == 0 && y % 10 == 0 && x % 6 == 0)
        })
        .collect();
    for spacing in [[1.0, 1.0, 1.0], [1.0, 0.5, 2.0]] {
        check(&grid, &shape, Connectivity::Six, &spacing);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_volumes_match_the_host(
        depth in 1usize..7, height in 1usize..9, width in 1usize..9, density in 0.0f64..1.0,
        labels in 1u32..4, seed in any::<u64>(), connectivity in 0usize..3,
    ) {
        let shape = [1, 2, depth, height, width];
        let mask = random_mask(&shape, density, labels, seed);
        let connectivity = [Connectivity::Six, Connectivity::Eighteen, Connectivity::TwentySix][connectivity];
        check(&mask, &shape, connectivity, &[1.0, 2.0, 1.0]);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let device = device();
    let mask = Tensor::<4, Int>::zeros([1, 1, 2, 2], &device);
    let err = label_tensor(mask.clone(), Connectivity::Six).unwrap_err();
    assert!(matches!(err, Error::ConnectivityRank { expected: 3, ndim: 2, .. }), "{err}");
    let err = label_tensor(Tensor::<3, Int>::zeros([1, 2, 2], &device), Connectivity::Four).unwrap_err();
    assert!(matches!(err, Error::UnsupportedRank { ndim: 3, .. }), "{err}");
    let err = voronoi_tensor(mask.clone(), &[1.0]).unwrap_err();
    assert!(err.to_string().contains("spacing has 1 values for 2 spatial axes"), "{err}");
    let err = voronoi_tensor(mask.clone(), &[1.0, f64::NAN]).unwrap_err();
    assert!(err.to_string().contains("positive and finite"), "{err}");
    let negative = Tensor::<4, Int>::from_ints([[[[0, -3]]]], &device);
    assert_eq!(voronoi_tensor(negative, &[1.0, 1.0]).unwrap_err(), Error::NegativeInstanceId { value: -3 });
    // Empty tensors label and partition to empty tensors.
    let empty = label_tensor(Tensor::<4, Int>::zeros([2, 1, 0, 3], &device), Connectivity::Four).unwrap();
    assert_eq!(empty.labels.dims(), [2, 1, 0, 3]);
    assert_eq!(ints(empty.counts.reshape([1, 1, 1, 2])), [0, 0]);
}

/// The components of `labels` apart from `other`'s positive voxels, renumbered, by a plain loop.
fn expected_apart(labels: &[i32], other: &[i32], voxels: usize) -> Vec<i32> {
    let mut out = vec![0; labels.len()];
    for (slice, (labels, other)) in labels.chunks(voxels).zip(other.chunks(voxels)).enumerate() {
        let count = labels.iter().copied().max().unwrap_or(0) as usize;
        let touched: Vec<bool> =
            (0..=count).map(|l| labels.iter().zip(other).any(|(&a, &o)| a as usize == l && o > 0)).collect();
        for (i, &label) in labels.iter().enumerate() {
            if label > 0 && !touched[label as usize] {
                out[slice * voxels + i] = (1..=label as usize).filter(|&l| !touched[l]).count() as i32;
            }
        }
    }
    out
}

#[test]
fn components_apart_from_the_ground_truth_match_a_plain_loop() {
    use blob_loss::components::ComponentsBackend;
    use burn::backend::Dispatch;
    let device = device();
    for (seed, shape) in [[2usize, 1, 7, 9, 11], [1, 2, 1, 13, 17], [1, 1, 40, 41, 42]].iter().enumerate() {
        let mask = random_mask(shape, 0.3, 1, 50 + seed as u64);
        let other = random_mask(shape, 0.02, 3, 90 + seed as u64);
        let voxels: usize = shape[2..].iter().product();
        let grid = [shape[0] * shape[1], shape[2], shape[3], shape[4]];
        let masks = Tensor::<5, Int>::from_data(TensorData::new(mask.clone(), shape.to_vec()), &device);
        let labels = label_tensor(masks, Connectivity::TwentySix).unwrap().labels.reshape(grid);
        let other_tensor = Tensor::<4, Int>::from_data(TensorData::new(other.clone(), grid), &device);
        let apart = <Dispatch as ComponentsBackend>::components_apart(
            labels.clone().into_dispatch(),
            other_tensor.into_dispatch(),
        );
        let found = ints(Tensor::<4, Int>::from_dispatch(apart));
        let expected = expected_apart(&ints(labels), &other, voxels);
        assert!(expected.iter().any(|&l| l > 0) && expected.iter().zip(&mask).any(|(&e, &m)| e == 0 && m > 0));
        assert_eq!(found, expected, "{shape:?}");
    }
}
