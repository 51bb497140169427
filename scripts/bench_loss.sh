#!/usr/bin/env bash
# Blob loss forward + backward: blob-loss (flex) and PyTorch (CPU) back to back, same inputs.
#
#   scripts/bench_loss.sh [RUNS] [ROUNDS]
#
# Each round runs the PyTorch peers, then blob-loss (the naive loop in the first round only);
# scripts/loss_compare.py then keeps, for every cell, the best round of each side and prints the
# side-by-side table. The machine's state drifts from minute to minute, so several rounds give
# both sides the same chances. Needs python3 with venv and pip (torch is installed into
# $TORCH_VENV on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
ROUNDS=${2:-3}
VENV=${TORCH_VENV:-$HOME/.cache/blob-loss-torch-venv}
OUT=${CARGO_TARGET_DIR:-target}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy torch
fi
cargo build --release --example loss_bench
mkdir -p "$OUT"
rm -f "$OUT"/loss_torch_*.md "$OUT"/loss_ours_*.md
for round in $(seq 1 "$ROUNDS"); do
  naive=$([ "$round" = 1 ] && echo 100 || echo 0)
  "$VENV/bin/python" scripts/torch_blob_bench.py --runs "$RUNS" --threads 2 > "$OUT/loss_torch_$round.md"
  cargo run -q --release --example loss_bench -- --runs "$RUNS" --naive-max "$naive" > "$OUT/loss_ours_$round.md"
done
head -1 "$OUT/loss_torch_1.md"
python3 scripts/loss_compare.py "$OUT"/loss_torch_*.md -- "$OUT"/loss_ours_*.md | tee "$OUT/loss_table.md"
