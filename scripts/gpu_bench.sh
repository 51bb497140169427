#!/usr/bin/env bash
# The blob loss on a GPU through wgpu (Vulkan), side by side with the same loss in vectorised
# PyTorch on CUDA, on a machine that has no Rust toolchain.
#
#   scripts/gpu_bench.sh prepare   # here: builds the benchmark, fetches the Vulkan loader
#   scripts/gpu_bench.sh run       # there: runs both (carry .gpu and .gl along)
#
# `prepare` builds `examples/loss_bench.rs` with `--features wgpu` (stripped) into `.gpu/` and
# downloads Debian's Vulkan loader and GL dispatch packages into `.gl/` (both git-ignored); the
# GPU machine brings the NVIDIA driver and PyTorch. `run` unpacks the loader, points Vulkan at
# NVIDIA's ICD when none is found, runs the Rust benchmark on the GPU, then
# scripts/torch_blob_bench.py on CUDA: `[2, 1, 128^3]` and `[4, 2, 96^3]`, K = 100 (override with
# SHAPES, INSTANCES, RUNS). The first line of the Rust output says whether the device adds f32
# atomically (which path of the kernel ran).
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPES=${SHAPES:-2x1x128,4x2x96}
INSTANCES=${INSTANCES:-100}
RUNS=${RUNS:-20}
case "${1:-}" in
  prepare)
    cargo build --release --example loss_bench --features wgpu
    mkdir -p .gpu .gl
    cp "${CARGO_TARGET_DIR:-target}/release/examples/loss_bench" .gpu/loss_bench
    strip .gpu/loss_bench
    if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
      mkdir -p /tmp/amd64/partial
      o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
      # shellcheck disable=SC2086
      apt-get $o update -q >/dev/null
      # shellcheck disable=SC2086
      (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    ls -la .gpu .gl
    ;;
  run)
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$icd; fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    echo "== blob-loss, wgpu (Vulkan)"
    .gpu/loss_bench --backend wgpu --shapes "$SHAPES" --instances "$INSTANCES" --runs "$RUNS" --naive-max 0
    echo "== PyTorch, CUDA"
    python3 scripts/torch_blob_bench.py --device cuda --shapes "$SHAPES" --instances "$INSTANCES" --runs "$RUNS"
    ;;
  *)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
