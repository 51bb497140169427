#!/usr/bin/env python3
"""Side-by-side check of blob_loss::metrics against panoptica on random 2D and 3D cases.

    python scripts/panoptica_compare.py [--cases 60] [--seed 0] [--dir DIR]

Needs numpy and panoptica (pip install panoptica) and cargo. It writes random ground-truth and
prediction instance maps (2D and 3D: dropped, shifted, eroded, split, merged and spurious
instances, prediction ids shuffled), runs examples/metrics_cases.rs on them, evaluates the same
cases with panoptica (NaiveThresholdMatching IoU 0.5 and DSC 0.1, MaxBipartiteMatching IoU 0.5)
and compares tp, fp, fn, precision, recall, F1 (RQ), SQ and PQ. Exits 1 on any difference.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from panoptica import InputType, MaxBipartiteMatching, Metric, NaiveThresholdMatching, Panoptica_Evaluator
from panoptica.utils.logger import set_log_level  # noqa: F401 (quiet below)


def blobs(rng, shape, count):
    """Instance map of `count` random ellipsoids (later ones overwrite earlier ones)."""
    grid = np.indices(shape).astype(float)
    out = np.zeros(shape, np.uint32)
    for k in range(1, count + 1):
        c = [rng.uniform(0, s) for s in shape]
        r = [rng.uniform(1.0, max(1.5, s / 6)) for s in shape]
        q = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, r))
        out[q <= 1.0] = k
    return out


def perturb(rng, gt):
    pred = np.zeros_like(gt)
    ids = [i for i in np.unique(gt) if i != 0]
    next_id = 1
    for i in ids:
        m = gt == i
        u = rng.random()
        if u < 0.15:
            continue  # missed
        if u < 0.35:
            m = np.roll(m, int(rng.integers(1, 3)), axis=int(rng.integers(0, gt.ndim)))  # shifted
        elif u < 0.45:
            cut = np.median(np.nonzero(m)[-1]) if m.any() else 0
            half = m & (np.indices(gt.shape)[-1] < cut)
            pred[half] = next_id
            next_id += 1
            m = m & ~half  # split in two
        elif u < 0.55:
            inner = m.copy()
            for ax in range(gt.ndim):
                inner &= np.roll(m, 1, axis=ax) & np.roll(m, -1, axis=ax)
            m = inner if inner.any() else m  # eroded
        pred[m & (pred == 0)] = next_id
        next_id += 1
    if len(ids) >= 2 and rng.random() < 0.3:  # merge two ground truths into one prediction
        a, b = rng.choice(ids, 2, replace=False)
        pred[(gt == a) | (gt == b)] = next_id
        next_id += 1
    for _ in range(int(rng.integers(0, 3))):  # spurious
        extra = blobs(rng, gt.shape, 1)
        pred[(extra > 0) & (pred == 0)] = next_id
        next_id += 1
    # Shuffle the prediction ids: panoptica's "unmatched" input.
    labels = np.unique(pred)
    labels = labels[labels != 0]
    perm = rng.permutation(len(labels)) + 1
    out = np.zeros_like(pred)
    for lab, new in zip(labels, perm):
        out[pred == lab] = new
    return out


MATCHERS = {
    "naive_iou_0.5": lambda: NaiveThresholdMatching(matching_metric=Metric.IOU, matching_threshold=0.5),
    "naive_dsc_0.1": lambda: NaiveThresholdMatching(matching_metric=Metric.DSC, matching_threshold=0.1),
    "bipartite_iou_0.5": lambda: MaxBipartiteMatching(matching_metric=Metric.IOU, matching_threshold=0.5),
}
FIELDS = [("tp", "tp"), ("fp", "fp"), ("fn", "fn"), ("precision", "prec"), ("recall", "rec"),
          ("f1", "rq"), ("sq", "sq"), ("pq", "pq")]


def same(a, b):
    a = float("nan") if a is None else float(a)
    b = float("nan") if b is None else float(b)
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default="")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    work = a.dir or tempfile.mkdtemp(prefix="panoptica-compare-")
    os.makedirs(work, exist_ok=True)
    cases = []
    arrays = {}
    for n in range(a.cases):
        shape = (48, 48) if n % 2 == 0 else (16, 24, 24)
        gt = blobs(rng, shape, int(rng.integers(0, 9)))
        pred = perturb(rng, gt)
        name = f"case{n:03d}"
        gt.astype("<u4").tofile(os.path.join(work, name + "_gt.raw"))
        pred.astype("<u4").tofile(os.path.join(work, name + "_pred.raw"))
        cases.append({"name": name, "shape": list(shape), "gt": name + "_gt.raw", "pred": name + "_pred.raw"})
        arrays[name] = (pred, gt)
    with open(os.path.join(work, "cases.json"), "w") as f:
        json.dump(cases, f)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["cargo", "run", "-q", "--release", "--example", "metrics_cases", "--", work], cwd=root, check=True)
    ours = {(r["case"], r["matching"]): r for r in json.load(open(os.path.join(work, "ours.json")))}

    mismatches = 0
    compared = 0
    for matching, make in MATCHERS.items():
        evaluator = Panoptica_Evaluator(expected_input=InputType.UNMATCHED_INSTANCE, instance_matcher=make(),
                                        verbose=False)
        for name, (pred, gt) in arrays.items():
            result = evaluator.evaluate(pred, gt, verbose=False)["ungrouped"]
            mine = ours[(name, matching)]
            for ours_key, theirs_key in FIELDS:
                try:
                    theirs = getattr(result, theirs_key)
                except ZeroDivisionError:  # panoptica's precision/recall with a zero denominator
                    theirs = float("nan")
                compared += 1
                if not same(mine[ours_key], theirs):
                    mismatches += 1
                    print(f"DIFF {name} {matching} {ours_key}: ours {mine[ours_key]} panoptica {theirs}")
    n_inst = sum(len(np.unique(g)) - 1 for _, g in arrays.values())
    print(f"{len(arrays)} cases ({n_inst} ground-truth instances), 3 matchings, {compared} values compared, "
          f"{mismatches} differences")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
