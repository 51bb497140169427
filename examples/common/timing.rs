//! Timing and argument helpers shared by the benchmark examples.
#![allow(dead_code)]

use std::time::Instant;

/// The minimum wall time in seconds of `f` over `runs` runs, after one warm-up run.
pub fn min_time<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    std::hint::black_box(f());
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The value after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default.to_owned(), Clone::clone)
}

/// A comma-separated list of numbers after `--name`, or `default`.
pub fn list(name: &str, default: &str) -> Vec<usize> {
    arg(name, default).split(',').map(|v| v.parse().expect("a comma-separated list of numbers")).collect()
}
