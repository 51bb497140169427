#!/usr/bin/env bash
# Runs the tests of the crate's `unsafe` code under miri (nightly toolchain, `miri` and `rust-src`
# components): the label buffers' `madvise` (src/components/buffer.rs), with the call handed to
# the kernel through a one-symbol C library built here, and the SSE2 comparisons of the scan
# (src/components/bits.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
shim_dir="${CARGO_TARGET_DIR:-target}/miri-shim"
mkdir -p "$shim_dir"
cc -shared -fPIC -O2 -o "$shim_dir/libmadvise.so" scripts/miri/madvise.c
MIRIFLAGS="-Zmiri-native-lib=$(realpath "$shim_dir/libmadvise.so")" \
  cargo +nightly miri test --lib -- components::buffer components::bits
