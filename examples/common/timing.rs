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

/// The minor page faults this process has taken so far (field 10 of `/proc/self/stat`), or 0
/// where that file is missing (not Linux).
pub fn minor_faults() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    // The command name (field 2) may hold spaces: count the fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    rest.split_whitespace().nth(7).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// The minor page faults one call of `f` takes, after one warm-up call.
pub fn faults_per_call<T>(mut f: impl FnMut() -> T) -> u64 {
    std::hint::black_box(f());
    let before = minor_faults();
    std::hint::black_box(f());
    minor_faults() - before
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
