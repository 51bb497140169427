#!/usr/bin/env bash
# Paired timing of one cell, blob-loss against cc3d, for a VM whose speed moves in phases.
#
#   scripts/ccl_paired.sh VOLUME CONN [ROUNDS] [RUNS]
#
# Each round times cc3d (scripts/cc3d_time.py) and blob-loss's `label` on one thread
# (examples/ccl_bench.rs, system allocator) on the same volume and connectivity, each the best of
# RUNS calls (default 7), one right after the other, who goes first alternating; it prints the
# ratio cc3d / blob-loss of every round and their median (default 10 rounds). Two processes a
# second or so apart mostly see the same phase of the machine, so the ratios of a round compare
# like with like, where the best of each side over a full run (scripts/bench_ccl.sh) may pair a
# fast phase of one side with a slow phase of the other. Uses the venv and volumes of
# scripts/bench_ccl.sh (run that first).
set -euo pipefail
cd "$(dirname "$0")/.."
VOLUME=$1
CONN=$2
ROUNDS=${3:-10}
RUNS=${4:-7}
VENV=${VENV:-$HOME/.cache/blob-loss-bench-venv}
DATA_DIR=${DATA_DIR:-$HOME/.cache/blob-loss-ccl-data}
OUT=${CARGO_TARGET_DIR:-target}
cargo build --release --example ccl_bench
ours() {
  "$OUT/release/examples/ccl_bench" "$DATA_DIR" --runs "$RUNS" --threads 1 --only "$VOLUME" --conn "$CONN" |
    sed -n 's/.* label *\([0-9.]*\) ms.*/\1/p'
}
peer() { "$VENV/bin/python" scripts/cc3d_time.py "$DATA_DIR" "$VOLUME" "$CONN" "$RUNS"; }
ratios=()
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then c=$(peer); o=$(ours); else o=$(ours); c=$(peer); fi
  ratio=$(python3 -c "print(f'{$c / $o:.2f}')")
  ratios+=("$ratio")
  echo "round $round: cc3d $c ms, blob-loss $o ms, cc3d / blob-loss $ratio"
done
python3 -c "
import statistics, sys
r = sorted(float(x) for x in sys.argv[1:])
print(f'$VOLUME conn $CONN: cc3d / blob-loss per round {r[0]:.2f} to {r[-1]:.2f}, median {statistics.median(r):.2f} ({len(r)} rounds of best-of-$RUNS)')
" "${ratios[@]}"
