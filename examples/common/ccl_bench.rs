//! The body of the `ccl_bench` and `ccl_bench_mimalloc` examples (which differ only in their global
//! allocator): see `examples/ccl_bench.rs`.

use super::timing::{faults_per_call, min_time as tmin};
use blob_loss::components::{Connectivity, label, label_into};
use ndarray::{ArrayD, IxDyn};

struct Args {
    data_dir: std::path::PathBuf,
    runs: usize,
    threads: Vec<usize>,
    json: Option<std::path::PathBuf>,
    only: Vec<String>,
    /// Neighbour counts to time (all that fit each volume when empty).
    conns: Vec<u32>,
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut parsed =
        Args { data_dir: "".into(), runs: 7, threads: vec![1, 2], json: None, only: vec![], conns: vec![] };
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--runs" => parsed.runs = value().parse().expect("--runs N"),
            "--threads" => parsed.threads = value().split(',').map(|t| t.parse().expect("--threads 1,2")).collect(),
            "--json" => parsed.json = Some(value().into()),
            "--only" => parsed.only = value().split(',').map(str::to_owned).collect(),
            "--conn" => parsed.conns = value().split(',').map(|c| c.parse().expect("--conn 6,26")).collect(),
            "--help" | "-h" => {
                println!(
                    "usage: ccl_bench DATA_DIR [--runs N] [--threads 1,2] [--json OUT] [--only a,b] [--conn 6,26]"
                );
                std::process::exit(0);
            }
            _ => parsed.data_dir = a.into(),
        }
    }
    assert!(parsed.data_dir.is_dir(), "usage: ccl_bench DATA_DIR (written by scripts/ccl/ccl_data.py)");
    parsed
}

fn checksum(labels: &[u32]) -> u64 {
    labels.iter().enumerate().fold(0u64, |h, (i, &l)| h.wrapping_add(u64::from(l).wrapping_mul(i as u64 + 1)))
}

/// Runs the benchmark; `allocator` names the global allocator of the binary, for the JSON.
pub fn run(allocator: &str) {
    let args = parse_args();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(args.data_dir.join("manifest.json")).expect("manifest.json"))
            .expect("manifest.json is JSON");
    let mut rows = Vec::new();
    for entry in manifest["volumes"].as_array().expect("volumes") {
        let name = entry["name"].as_str().unwrap();
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        let shape: Vec<usize> =
            entry["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let bytes = std::fs::read(args.data_dir.join(entry["file"].as_str().unwrap())).expect("volume file");
        let volume = ArrayD::from_shape_vec(IxDyn(&shape), bytes).expect("size matches the manifest");
        let mvox = volume.len() as f64 / 1e6;

        let mut out = ArrayD::<u32>::from_elem(volume.raw_dim(), 1);
        let src = volume.as_slice().unwrap();
        let floor = tmin(args.runs, || {
            let dst = out.as_slice_mut().unwrap();
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d = u32::from(s));
        });

        let conns: &[Connectivity] = if shape.len() == 2 {
            &[Connectivity::Four, Connectivity::Eight]
        } else {
            &[Connectivity::Six, Connectivity::Eighteen, Connectivity::TwentySix]
        };
        for &c in conns.iter().filter(|c| args.conns.is_empty() || args.conns.contains(&c.neighbours())) {
            let labeling = label(volume.view(), c).unwrap();
            let sum = checksum(labeling.labels.as_slice().unwrap());
            for &threads in &args.threads {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (t_label, t_into, faults_label, faults_into) = pool.install(|| {
                    let t_label = tmin(args.runs, || label(volume.view(), c).unwrap());
                    let t_into = tmin(args.runs, || label_into(volume.view(), c, out.view_mut()).unwrap());
                    let faults_label = faults_per_call(|| label(volume.view(), c).unwrap());
                    let faults_into = faults_per_call(|| label_into(volume.view(), c, out.view_mut()).unwrap());
                    (t_label, t_into, faults_label, faults_into)
                });
                assert_eq!(out, labeling.labels, "label_into and label agree");
                println!(
                    "{name:>14} conn {:>2} threads {threads}: {:>8} components, label {:>7.1} ms ({:>5.0} Mvox/s), \
                     label_into {:>7.1} ms, floor {:>6.1} ms, label/floor {:.2}, page faults {faults_label}/{faults_into}",
                    c.neighbours(),
                    labeling.count,
                    t_label * 1e3,
                    mvox / t_label,
                    t_into * 1e3,
                    floor * 1e3,
                    t_label / floor
                );
                rows.push(serde_json::json!({
                    "name": name, "shape": shape, "conn": c.neighbours(), "threads": threads,
                    "count": labeling.count, "checksum": sum.to_string(), "label_s": t_label,
                    "label_into_s": t_into, "floor_s": floor, "Mvox": mvox,
                    "label_faults": faults_label, "label_into_faults": faults_into,
                }));
            }
        }
    }
    if let Some(path) = args.json {
        let doc = serde_json::json!({ "rows": rows, "runs": args.runs, "allocator": allocator });
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).expect("write --json");
    }
}
