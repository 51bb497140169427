#!/usr/bin/env python3
"""Merges the rounds of scripts/bench_loss.sh into one side-by-side table.

    loss_compare.py TORCH_ROUND.md... -- OURS_ROUND.md...

Every cell is the best (lowest) time of that side over the rounds; ratios are computed from them.
"""
import sys


def rows(path):
    """The table rows of one output: {(shape, K): [cells...]}."""
    out = {}
    for line in open(path):
        if line.startswith("| ["):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[(cells[0], cells[1])] = cells[2:]
    return out


def best(paths, column):
    result = {}
    for path in paths:
        for key, cells in rows(path).items():
            if cells[column] != "-":
                result[key] = min(result.get(key, float("inf")), float(cells[column]))
    return result


def main():
    split = sys.argv.index("--")
    torch_files, ours_files = sys.argv[1:split], sys.argv[split + 1:]
    torch_dice, torch_blob = best(torch_files, 0), best(torch_files, 1)
    # Columns of examples/loss_bench.rs: burn Dice, Dice only, blob, blob / Dice only, blob / burn
    # Dice, scatter, scatter / blob, naive, naive / blob.
    dice, ours_dice, blob = best(ours_files, 0), best(ours_files, 1), best(ours_files, 2)
    scatter, naive = best(ours_files, 5), best(ours_files, 7)
    print(f"best of {len(ours_files)} rounds per cell")
    print("| shape | K | torch Dice ms | torch vectorised blob ms | burn Dice ms | Dice only ms | blob loss ms "
          "| torch blob / ours | ours / Dice only | scatter ms | naive loop ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in blob:
        n = naive.get(key)
        naive_cell = f"{n:.1f}" if n else "-"
        print(f"| {key[0]} | {key[1]} | {torch_dice[key]:.2f} | {torch_blob[key]:.2f} | {dice[key]:.2f} "
              f"| {ours_dice[key]:.2f} | {blob[key]:.2f} | {torch_blob[key] / blob[key]:.2f} "
              f"| {blob[key] / ours_dice[key]:.2f} | {scatter[key]:.2f} | {naive_cell} |")


if __name__ == "__main__":
    main()
