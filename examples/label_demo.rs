//! The main job for now: label a generated lesion-like volume and print what was found.
//!
//! ```text
//! cargo run --release --example label_demo [-- SIZE [LESIONS]]
//! ```
//!
//! It draws `LESIONS` (default 800) random ellipsoids of radius 1 to 8 voxels into a `SIZE`^3
//! (default 256) `u8` volume, labels it with 6-, 18- and 26-connectivity, and prints the number of
//! components, the time and the throughput of each, plus the sizes of the smallest and largest
//! components.

use std::time::Instant;

use blob_loss::components::{Connectivity, label};
use ndarray::Array3;

/// SplitMix64: a seeded generator, so every run draws the same volume.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn lesions(size: usize, count: usize, seed: u64) -> Array3<u8> {
    let mut rng = Rng(seed);
    let mut volume = Array3::<u8>::zeros((size, size, size));
    for _ in 0..count {
        let center: [f64; 3] = std::array::from_fn(|_| rng.unit() * size as f64);
        let radii: [f64; 3] = std::array::from_fn(|_| 1.0 + rng.unit().powi(2) * 7.0);
        let lo = |d: usize| (center[d] - radii[d]).floor().max(0.0) as usize;
        let hi = |d: usize| ((center[d] + radii[d]).ceil() as usize + 1).min(size);
        for z in lo(0)..hi(0) {
            for y in lo(1)..hi(1) {
                for x in lo(2)..hi(2) {
                    let q: f64 =
                        [z, y, x].iter().enumerate().map(|(d, &p)| ((p as f64 - center[d]) / radii[d]).powi(2)).sum();
                    if q <= 1.0 {
                        volume[[z, y, x]] = 1;
                    }
                }
            }
        }
    }
    volume
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("usage: label_demo [SIZE [LESIONS]]"));
    let size = args.next().unwrap_or(256);
    let count = args.next().unwrap_or(800);
    let volume = lesions(size, count, 42);
    let foreground = volume.iter().filter(|&&v| v != 0).count();
    println!(
        "volume {size}^3 = {:.1} Mvoxel, {count} ellipsoids drawn, {:.2}% foreground, {} threads",
        volume.len() as f64 / 1e6,
        100.0 * foreground as f64 / volume.len() as f64,
        rayon::current_num_threads()
    );
    for connectivity in [Connectivity::Six, Connectivity::Eighteen, Connectivity::TwentySix] {
        label(volume.view(), connectivity).expect("3D mask, 3D connectivity"); // warm-up
        let start = Instant::now();
        let labeling = label(volume.view(), connectivity).expect("3D mask, 3D connectivity");
        let elapsed = start.elapsed();
        let mut sizes = vec![0usize; labeling.count + 1];
        labeling.labels.iter().for_each(|&l| sizes[l as usize] += 1);
        let (smallest, largest) = sizes[1..].iter().fold((usize::MAX, 0), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        println!(
            "connectivity {:>2}: {:>5} components (sizes {smallest}..={largest} voxels) in {:>6.2} ms, {:>5.0} Mvoxel/s",
            connectivity.neighbours(),
            labeling.count,
            elapsed.as_secs_f64() * 1e3,
            volume.len() as f64 / 1e6 / elapsed.as_secs_f64()
        );
    }
}
