#!/usr/bin/env bash
# The Euclidean distance transform: blob-loss against scipy and the `edt` package (seung-lab),
# on the same lesion-like volume, in one run.
#
#   scripts/bench_edt.sh [SIZE] [RUNS]
#
# examples/edt.rs draws SIZE³ (default 256) lesion-like ellipsoids, times blob-loss's
# distance_transform (with nearest-voxel indices) on 1 and 2 threads and writes the volume;
# then scipy.ndimage.distance_transform_edt (with and without return_indices) and
# edt.edt (distances only, 1 and 2 threads) are timed on it, each the minimum of RUNS (default 5)
# after a warm-up. Needs python3 with venv and pip (numpy, scipy and edt are installed into
# $EDT_VENV on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-256}
RUNS=${2:-5}
VENV=${EDT_VENV:-$HOME/.cache/blob-loss-edt-venv}
OUT=${CARGO_TARGET_DIR:-target}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy scipy edt
fi
mkdir -p "$OUT"
cargo run --quiet --release --example edt -- bench --size "$SIZE" --runs "$RUNS" --out "$OUT/edt_volume.u8"
"$VENV/bin/python" - "$OUT/edt_volume.u8" "$SIZE" "$RUNS" <<'PY'
import sys, time
import numpy as np
from scipy import ndimage
import edt, scipy
path, size, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
volume = np.fromfile(path, dtype=np.uint8).reshape((size,) * 3)
background = volume == 0
def best(f):
    f()
    times = []
    for _ in range(runs):
        start = time.perf_counter(); f(); times.append(time.perf_counter() - start)
    return min(times) * 1e3
print(f"scipy {scipy.__version__} distance_transform_edt, indices: {best(lambda: ndimage.distance_transform_edt(background, return_indices=True)):.1f} ms")
print(f"scipy {scipy.__version__} distance_transform_edt, distances only: {best(lambda: ndimage.distance_transform_edt(background)):.1f} ms")
for threads in (1, 2):
    print(f"edt {edt.__version__ if hasattr(edt, '__version__') else ''} edt.edt, distances only, {threads} thread(s): {best(lambda: edt.edt(background, parallel=threads)):.1f} ms")
PY
