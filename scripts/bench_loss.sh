#!/usr/bin/env bash
# Blob loss forward + backward: blob-loss (flex) and PyTorch (CPU) back to back, same inputs.
#
#   scripts/bench_loss.sh [RUNS]
#
# Needs python3 with venv and pip (torch is installed into $TORCH_VENV on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
VENV=${TORCH_VENV:-$HOME/.cache/blob-loss-torch-venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy torch
fi
cargo build --release --example loss_bench
"$VENV/bin/python" scripts/torch_blob_bench.py --runs "$RUNS" --threads 2
cargo run -q --release --example loss_bench -- --runs "$RUNS"
