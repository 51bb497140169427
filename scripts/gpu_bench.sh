#!/usr/bin/env bash
# blob-loss on a GPU through wgpu (Vulkan), side by side with its peers on CUDA, on a machine
# that has no Rust toolchain.
#
#   scripts/gpu_bench.sh prepare   # here: builds the benchmarks, fetches the Vulkan loader
#   scripts/gpu_bench.sh run       # there: runs them all (carry .gpu and .gl along)
#
# `prepare` builds `examples/loss_bench.rs` and `benches/device_components.rs` with
# `--features wgpu` (stripped) into `.gpu/` and downloads Debian's Vulkan loader and GL dispatch
# packages into `.gl/` (both git-ignored); the GPU machine brings the NVIDIA driver, PyTorch and
# CuPy. `run` unpacks the loader, points Vulkan at NVIDIA's ICD when none is found, and runs:
# 1. the blob loss on the GPU and scripts/torch_blob_bench.py on CUDA: `[2, 1, 128^3]` and
#    `[4, 2, 96^3]`, K = 100 (override with SHAPES, INSTANCES, RUNS). The first line of the Rust
#    output says whether the device adds f32 atomically (which path of the kernel ran);
# 2. the device components (`label_tensor` on "lesions 256³" and "noise 128³", `voronoi_tensor`
#    on 64³) and the BiCC and blob loss steps at `[2, 1, 128^3]` (STEP_SIZE), each against the
#    host path on the same machine, then scripts/cupy_components_bench.py: CuPy's `label` and
#    `distance_transform_edt` on the same volumes (SKIPPED when CuPy is missing).
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
    # The bench binary's path has a hash in it: cargo names it in its JSON messages.
    bench=$(cargo bench --no-run --features wgpu --bench device_components --message-format=json |
      python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "device_components" and m.get("executable"):
        print(m["executable"])')
    cp "$bench" .gpu/device_components
    strip .gpu/loss_bench .gpu/device_components
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
    echo "== blob-loss components on the device (wgpu) and on the host; loss steps at ${STEP_SIZE:-128}^3"
    STEP_SIZE=${STEP_SIZE:-128} .gpu/device_components --bench --sample-count 10 --sample-size 1
    echo "== CuPy, CUDA"
    python3 scripts/cupy_components_bench.py --runs "$RUNS" --check
    ;;
  *)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
