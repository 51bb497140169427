#!/usr/bin/env bash
# Side-by-side CCL benchmark: blob-loss vs cc3d and scipy, in one run on one machine.
#
#   scripts/bench_ccl.sh [RUNS] [ROUNDS]
#
# Needs python3 with venv and pip (network on first use). Writes the volumes of
# scripts/ccl/ccl_data.py to $DATA_DIR (default ~/.cache/blob-loss-ccl-data), times
# cc3d/scipy with scripts/ccl/ccl_bench.py and blob-loss with examples/ccl_bench.rs, volume by
# volume in turn (peers first in odd rounds, blob-loss first in even ones), ROUNDS times (default
# 1; the best round of each side is kept per cell: the machine's speed drifts from minute to
# minute), and prints the markdown table of
# scripts/ccl_compare.py (also saved to target/ccl_table.md).
#
# blob-loss runs twice per volume: with the system allocator (examples/ccl_bench.rs) and with
# mimalloc as the global allocator (examples/ccl_bench_mimalloc.rs). Both back large outputs with
# transparent huge pages, as numpy does for cc3d's output; mimalloc also keeps freed memory for
# the next call (and so clears the output that `label` returns).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
ROUNDS=${2:-1}
BENCH=${BENCH_DIR:-scripts/ccl}
VENV=${VENV:-$HOME/.cache/blob-loss-bench-venv}
DATA_DIR=${DATA_DIR:-$HOME/.cache/blob-loss-ccl-data}
OUT=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy scipy scikit-image connected-components-3d fastremap
fi
[ -f "$DATA_DIR/manifest.json" ] || "$VENV/bin/python" "$BENCH/ccl_data.py" "$DATA_DIR"
cargo build --release --example ccl_bench --example ccl_bench_mimalloc
BIN="$OUT/release/examples/ccl_bench"
# Peers and blob-loss alternate volume by volume, so that both see the same machine state.
VOLUMES=$("$VENV/bin/python" -c 'import json,sys; print(" ".join(v["name"] for v in json.load(open(sys.argv[1]))["volumes"]))' "$DATA_DIR/manifest.json")
rm -f "$OUT"/ccl_peers_*.json "$OUT"/ccl_ours_*.json "$OUT"/ccl_mimalloc_*.json
peers() {
  "$VENV/bin/python" "$BENCH/ccl_bench.py" "$DATA_DIR" --runs "$RUNS" --no-skimage --only "$1" --json "$OUT/ccl_peers_${1}_$2.json" > "$OUT/ccl_peers_$1.log"
}
ours() {
  "$BIN" "$DATA_DIR" --runs "$RUNS" --threads 1,2 --only "$1" --json "$OUT/ccl_ours_${1}_$2.json"
  "${BIN}_mimalloc" "$DATA_DIR" --runs "$RUNS" --threads 1,2 --only "$1" --json "$OUT/ccl_mimalloc_${1}_$2.json"
}
for round in $(seq 1 "$ROUNDS"); do
  for v in $VOLUMES; do
    # The VM runs in slow and fast phases (up to 1.4x apart, lasting seconds to minutes): who goes
    # first alternates between rounds, so that a phase change does not always hit the same side.
    if [ $((round % 2)) -eq 1 ]; then peers "$v" "$round"; ours "$v" "$round"; else ours "$v" "$round"; peers "$v" "$round"; fi
  done
done
"$VENV/bin/python" scripts/ccl_compare.py "$DATA_DIR" "$OUT/ccl_peers_*.json" "$OUT/ccl_ours_*.json" "$OUT/ccl_mimalloc_*.json" | tee "$OUT/ccl_table.md"
