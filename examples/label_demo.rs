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

#[path = "common/lesions.rs"]
mod lesions;
#[path = "common/rng.rs"]
mod rng;

use lesions::lesions;

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
