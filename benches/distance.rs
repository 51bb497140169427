//! The Euclidean distance transform (with nearest-voxel indices) and the Voronoi cells of an
//! instance map, on a 128³ lesion-like volume made here (no downloads).
//!
//! ```text
//! cargo bench --bench distance
//! ```
//!
//! The comparison with scipy and the `edt` package is `scripts/bench_edt.sh`.

#[path = "../examples/common/lesions.rs"]
mod lesions;
#[path = "../examples/common/rng.rs"]
mod rng;

use blob_loss::components::{Connectivity, distance_transform, label, voronoi};
use divan::Bencher;

fn main() {
    divan::main();
}

const SPACINGS: [[f64; 3]; 2] = [[1.0, 1.0, 1.0], [3.0, 1.0, 1.0]];

/// Distances to the nearest lesion voxel and its index: isotropic, and 3 mm slices of 1 mm pixels.
#[divan::bench(args = SPACINGS)]
fn distance_transform_128(bencher: Bencher, spacing: [f64; 3]) {
    let volume = lesions::lesions(128, 300, 1);
    bencher
        .counter(divan::counter::ItemsCount::new(volume.len()))
        .bench(|| distance_transform(volume.view(), &spacing).unwrap());
}

/// The Voronoi cells of the 26-connected lesions.
#[divan::bench]
fn voronoi_128(bencher: Bencher) {
    let labels = label(lesions::lesions(128, 300, 1).view(), Connectivity::TwentySix).unwrap().labels;
    bencher.counter(divan::counter::ItemsCount::new(labels.len())).bench(|| voronoi(labels.view(), &[1.0; 3]).unwrap());
}
