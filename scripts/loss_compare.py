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
    dice, blob, naive = best(ours_files, 0), best(ours_files, 1), best(ours_files, 3)
    print(f"best of {len(ours_files)} rounds per cell")
    print("| shape | K | torch Dice ms | torch vectorised blob ms | burn Dice ms | blob loss ms "
          "| torch blob / ours | ours / burn Dice | naive loop ms | naive / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in blob:
        n = naive.get(key)
        naive_cells = f"{n:.1f} | {n / blob[key]:.1f}" if n else "- | -"
        print(f"| {key[0]} | {key[1]} | {torch_dice[key]:.1f} | {torch_blob[key]:.1f} | {dice[key]:.1f} "
              f"| {blob[key]:.1f} | {torch_blob[key] / blob[key]:.2f} | {blob[key] / dice[key]:.2f} | {naive_cells} |")


if __name__ == "__main__":
    main()
