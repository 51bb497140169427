//! The connected-component labelling benchmark of `ccl_bench`, with mimalloc as the global allocator.
//!
//! ```text
//! cargo run --release --example ccl_bench_mimalloc -- DATA_DIR [--runs N] [--threads 1,2] [--json OUT]
//! ```
//!
//! With glibc's malloc, every `label` call maps its output anew and faults it in; mimalloc keeps
//! freed memory for the next allocation (and so clears the output that `label` returns). Users
//! choose the allocator of their own binary the same way, with these two lines.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/timing.rs"]
mod timing;

#[path = "common/ccl_bench.rs"]
mod bench;

fn main() {
    bench::run("mimalloc");
}
