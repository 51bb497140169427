//! Connected-component labelling: `label` and `label_into` on deterministic volumes made here
//! (no downloads): sparse lesion-like ellipsoids, dense noise (the union-find worst case), touching
//! multi-label regions, and a 2D image of ellipses.
//!
//! ```text
//! cargo bench --bench labelling
//! ```
//!
//! The cross-tool comparison (cc3d, scipy) is `scripts/bench_ccl.sh`.

#[path = "../examples/common/lesions.rs"]
mod lesions;
#[path = "../examples/common/rng.rs"]
mod rng;

use blob_loss::components::{Connectivity, label, label_into};
use divan::Bencher;
use ndarray::{Array2, Array3, ArrayD, IxDyn};
use rng::Rng;

fn main() {
    divan::main();
}

/// 128³ voxels of i.i.d. coin flips: as many components and merges as a volume can have.
fn noise(size: usize, seed: u64) -> Array3<u8> {
    let mut rng = Rng(seed);
    Array3::from_shape_simple_fn((size, size, size), || (rng.next_u64() & 1) as u8)
}

/// 128³ voxels of axis-aligned boxes of 6 classes (values 1 to 5, and 0), touching each other.
fn multilabel(size: usize, seed: u64) -> Array3<u8> {
    let mut rng = Rng(seed);
    let mut volume = Array3::<u8>::zeros((size, size, size));
    for _ in 0..400 {
        let value = rng.below(6) as u8;
        let lo: [usize; 3] = std::array::from_fn(|_| rng.below(size as u64) as usize);
        let len: [usize; 3] = std::array::from_fn(|_| 2 + rng.below(24) as usize);
        volume
            .slice_mut(ndarray::s![
                lo[0]..(lo[0] + len[0]).min(size),
                lo[1]..(lo[1] + len[1]).min(size),
                lo[2]..(lo[2] + len[2]).min(size)
            ])
            .fill(value);
    }
    volume
}

/// A 2048² image of 1,500 ellipses of radius 1.5 to 30 pixels.
fn ellipses(size: usize, seed: u64) -> Array2<u8> {
    let mut rng = Rng(seed);
    let mut image = Array2::<u8>::zeros((size, size));
    for _ in 0..1500 {
        let (cy, cx) = (rng.unit() * size as f64, rng.unit() * size as f64);
        let (ry, rx) = (1.5 + rng.unit().powi(2) * 28.5, 1.5 + rng.unit().powi(2) * 28.5);
        let range = |c: f64, r: f64| (c - r).max(0.0) as usize..((c + r) as usize + 1).min(size);
        for y in range(cy, ry) {
            for x in range(cx, rx) {
                if ((y as f64 - cy) / ry).powi(2) + ((x as f64 - cx) / rx).powi(2) <= 1.0 {
                    image[[y, x]] = 1;
                }
            }
        }
    }
    image
}

/// The volumes, by name, as dynamic-rank arrays (one benchmark function serves them all).
fn volume(name: &str) -> ArrayD<u8> {
    match name {
        "lesions 128³" => lesions::lesions(128, 300, 1).into_dyn(),
        "noise 128³" => noise(128, 2).into_dyn(),
        "multi-label 128³" => multilabel(128, 3).into_dyn(),
        "ellipses 2048²" => ellipses(2048, 4).into_dyn(),
        other => unreachable!("{other}"),
    }
}

const VOLUMES: [&str; 4] = ["lesions 128³", "noise 128³", "multi-label 128³", "ellipses 2048²"];

/// Full connectivity (26 in 3D, 8 in 2D), the most demanding.
fn full(mask: &ArrayD<u8>) -> Connectivity {
    Connectivity::full(mask.ndim()).expect("2D or 3D")
}

/// `label`: allocates its output, as cc3d and scipy do.
#[divan::bench(args = VOLUMES)]
fn label_full_connectivity(bencher: Bencher, name: &str) {
    let mask = volume(name);
    let connectivity = full(&mask);
    bencher.counter(divan::counter::ItemsCount::new(mask.len())).bench(|| label(mask.view(), connectivity).unwrap());
}

/// `label` with face connectivity (6 in 3D, 4 in 2D).
#[divan::bench(args = VOLUMES)]
fn label_face_connectivity(bencher: Bencher, name: &str) {
    let mask = volume(name);
    let connectivity = Connectivity::face(mask.ndim()).expect("2D or 3D");
    bencher.counter(divan::counter::ItemsCount::new(mask.len())).bench(|| label(mask.view(), connectivity).unwrap());
}

/// `label_into` a reused buffer: what a data loader that keeps its buffers pays.
#[divan::bench(args = VOLUMES)]
fn label_into_reused_buffer(bencher: Bencher, name: &str) {
    let mask = volume(name);
    let connectivity = full(&mask);
    let mut out = ArrayD::<u32>::zeros(IxDyn(mask.shape()));
    bencher
        .counter(divan::counter::ItemsCount::new(mask.len()))
        .bench_local(|| label_into(mask.view(), connectivity, out.view_mut()).unwrap());
}
