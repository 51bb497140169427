//! The Euclidean distance transform and Voronoi cells of `components`, for the cross-tool
//! scripts: timing on a lesion-like volume, and answers to cases written by another tool.
//!
//! ```text
//! cargo run --release --example edt -- bench [--size 256 --lesions 1500 --runs 5 --threads 1,2 --out FILE]
//! cargo run --release --example edt -- cases DIR
//! ```
//!
//! `bench` draws `--lesions` lesion-like ellipsoids in a `--size`³ volume (the generator of the
//! other benchmarks), times `distance_transform` (distance to the nearest lesion voxel, with the
//! nearest voxel's index) and `distance_map` (distances only) on each rayon pool size of `--threads`, the minimum over `--runs` runs
//! after a warm-up, prints one line per pool size, and writes the volume as raw `u8` to `--out`
//! (default `target/edt_volume.u8`) for `scripts/bench_edt.sh`'s peers.
//!
//! `cases` reads every `DIR/NAME.json` (`{"shape": [..], "spacing": [..]}`) with its mask
//! `DIR/NAME.u8` (raw, row-major), and writes `DIR/NAME.dist.f64` (distances) and
//! `DIR/NAME.index.u64` (row-major index of the nearest foreground voxel), little-endian, for
//! `scripts/edt_compare.py`.

#[path = "common/lesions.rs"]
mod lesions;
#[path = "common/rng.rs"]
mod rng;
#[path = "common/timing.rs"]
mod timing;

use std::path::Path;

use blob_loss::components::{distance_map, distance_transform};
use ndarray::{ArrayD, IxDyn};
use timing::{arg, list, min_time};

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("bench") => bench(),
        Some("cases") => cases(Path::new(&std::env::args().nth(2).expect("usage: edt cases DIR"))),
        _ => eprintln!("usage: edt bench [--size S --lesions N --runs R --threads 1,2 --out FILE] | edt cases DIR"),
    }
}

fn bench() {
    let size: usize = arg("--size", "256").parse().expect("--size: a number");
    let count: usize = arg("--lesions", "1500").parse().expect("--lesions: a number");
    let runs: usize = arg("--runs", "5").parse().expect("--runs: a number");
    let out = arg("--out", "target/edt_volume.u8");
    let volume = lesions::lesions(size, count, 7);
    let foreground = volume.iter().filter(|&&v| v != 0).count();
    if let Some(parent) = Path::new(&out).parent() {
        std::fs::create_dir_all(parent).expect("an output folder");
    }
    std::fs::write(&out, volume.as_slice().expect("standard layout")).expect("the volume written");
    println!(
        "{size}³, {count} ellipsoids, {:.2}% foreground, written to {out}",
        100.0 * foreground as f64 / volume.len() as f64
    );
    for threads in list("--threads", "1,2") {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
        let seconds = pool.install(|| min_time(runs, || distance_transform(volume.view(), &[1.0; 3]).unwrap()));
        println!("blob-loss distance_transform (indices), {threads} thread(s): {:.1} ms", seconds * 1e3);
        let seconds = pool.install(|| min_time(runs, || distance_map(volume.view(), &[1.0; 3]).unwrap()));
        println!("blob-loss distance_map (distances only), {threads} thread(s): {:.1} ms", seconds * 1e3);
    }
}

fn cases(dir: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the cases folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    for name in &names {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("a case"))
                .expect("JSON");
        let numbers = |key: &str| -> Vec<f64> {
            meta[key].as_array().expect("an array").iter().map(|v| v.as_f64().expect("a number")).collect()
        };
        let shape: Vec<usize> = numbers("shape").iter().map(|&s| s as usize).collect();
        let spacing = numbers("spacing");
        let bytes = std::fs::read(dir.join(format!("{name}.u8"))).expect("the mask");
        let mask = ArrayD::from_shape_vec(IxDyn(&shape), bytes).expect("shape and mask agree");
        let dt = distance_transform(mask.view(), &spacing).expect("a valid case");
        let distances: Vec<u8> = dt.distances.iter().flat_map(|d| d.to_le_bytes()).collect();
        let nearest: Vec<u8> = dt.nearest.iter().flat_map(|&i| (i as u64).to_le_bytes()).collect();
        std::fs::write(dir.join(format!("{name}.dist.f64")), distances).expect("written");
        std::fs::write(dir.join(format!("{name}.index.u64")), nearest).expect("written");
    }
    println!("{} cases answered in {}", names.len(), dir.display());
}
