#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer, address sanitizer, nightly toolchain).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
#
# Runs each target of fuzz/ (default: label metrics loss bicc instances) for SECONDS (default 60) and
# prints, per target, the executions, the corpus size and the result. The corpora live in
# $FUZZ_CORPUS/TARGET (default ~/.cache/blob-loss-fuzz-corpus), kept between runs, so that long
# runs build on short ones; the fuzz build goes to $FUZZ_TARGET_DIR (default
# ~/.cache/blob-loss-fuzz-target). A crash stops that target with its input saved under
# fuzz/artifacts/TARGET/ (reproduce it with `cargo +nightly fuzz run TARGET FILE`) and makes the
# script exit 1 after the other targets have run. Installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
shift || true
TARGETS=${*:-label metrics loss bicc instances}
CORPUS=${FUZZ_CORPUS:-$HOME/.cache/blob-loss-fuzz-corpus}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/blob-loss-fuzz-target}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build --release 2>&1 | tail -n 3
failed=0
printf '| target | seconds | executions | executions/s | corpus inputs | result |\n|---|---|---|---|---|---|\n' > "$CARGO_TARGET_DIR/fuzz_table.md"
for target in $TARGETS; do
  mkdir -p "$CORPUS/$target"
  log="$CARGO_TARGET_DIR/fuzz_$target.log"
  if cargo +nightly fuzz run --release "$target" "$CORPUS/$target" -- \
      -max_total_time="$DURATION" -print_final_stats=1 -max_len=4096 > "$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log and fuzz/artifacts/$target)"
    failed=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  inputs=$(find "$CORPUS/$target" -type f | wc -l)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$target" "$DURATION" "${execs:-?}" "${rate:-?}" "$inputs" "$result" \
    >> "$CARGO_TARGET_DIR/fuzz_table.md"
done
cat "$CARGO_TARGET_DIR/fuzz_table.md"
exit "$failed"
