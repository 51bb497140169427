//! Connected-component labelling benchmark over the volumes of `scripts/ccl/ccl_data.py`.
//!
//! ```text
//! cargo run --release --example ccl_bench -- DATA_DIR [--runs N] [--threads 1,2] [--json OUT] [--only a,b] [--conn 6,26]
//! ```
//!
//! For every volume and connectivity it reports the minimum over `--runs` runs (after one warm-up)
//! of `label` (allocating, as cc3d does) and `label_into` (reused buffer), on a rayon pool of each
//! `--threads` size, plus the memory floor: one pass that reads the `u8` voxels and writes a `u32`
//! per voxel into a preallocated buffer. It also prints the component count and a checksum of the
//! labels, `sum(label[i] * (i + 1)) mod 2^64`, that `scripts/ccl_compare.py` checks against cc3d,
//! and the minor page faults of one call of each. `scripts/bench_ccl.sh` runs it side by side with
//! cc3d and scipy and writes the table.
//!
//! This binary uses the system allocator. With glibc, a block over 32 MiB is mapped anew by every
//! allocation and returned to the kernel when freed, so `label`'s fresh output faults in on every
//! call (in 2 MiB huge pages, which the crate asks for); `ccl_bench_mimalloc` is the same
//! benchmark with mimalloc, which keeps freed memory for the next allocation.

#[path = "common/timing.rs"]
mod timing;

#[path = "common/ccl_bench.rs"]
mod bench;

fn main() {
    bench::run("system");
}
