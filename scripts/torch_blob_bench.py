#!/usr/bin/env python3
"""PyTorch peers of examples/loss_bench.rs, on the same inputs, forward + backward on the CPU.

    torch_blob_bench.py [--runs 5] [--sizes 64,128] [--instances 1,10,100,1000] [--threads 2]

- dice: the plain global soft Dice (per element, averaged).
- vectorised: blob loss (alpha 2, beta 1, soft Dice, the paper's Exclude semantics) with
  sigmoid + scatter_add_ into per-instance bins: the fastest way to write it in PyTorch.
Each figure is the minimum over --runs runs after a warm-up (fresh leaf, forward, backward).
"""
import argparse
import time

import torch


def inputs(size, k):
    n = size ** 3
    i = torch.arange(2 * n, dtype=torch.int64)
    logits = ((i * 2654435761) % 1000).to(torch.float32) / 125.0 - 4.0
    ids = torch.zeros(2 * n, dtype=torch.int64)
    per_axis = 1
    while per_axis ** 3 < k:
        per_axis += 1
    step = size // per_axis
    vol = ids.view(2, size, size, size)
    for j in range(k):
        z, y, x = j // (per_axis * per_axis) * step, j // per_axis % per_axis * step, j % per_axis * step
        vol[:, z:z + 3, y:y + 3, x:x + 3] = j + 1
    return logits.view(2, 1, size, size, size), ids.view(2, 1, size, size, size)


def dice(x, ids):
    b = x.shape[0]
    p = torch.sigmoid(x).reshape(b, -1)
    t = (ids.reshape(b, -1) > 0).to(p.dtype)
    tp = (p * t).sum(1)
    return (1 - (2 * tp + 1e-5) / (p.sum(1) + t.sum(1) + 1e-5)).mean()


def blob(x, ids, bins):
    b = x.shape[0]
    p = torch.sigmoid(x).reshape(b, -1)
    idf = ids.reshape(b, -1)
    t = (idf > 0).to(p.dtype)
    tp = (p * t).sum(1)
    glob = (1 - (2 * tp + 1e-5) / (p.sum(1) + t.sum(1) + 1e-5)).mean()
    s = torch.zeros(b, bins, dtype=p.dtype).scatter_add_(1, idf, p)
    g = torch.stack([torch.bincount(idf[e], minlength=bins) for e in range(b)]).to(p.dtype)
    inst, size = s[:, 1:], g[:, 1:]
    d = 1 - (2 * inst + 1e-5) / (s[:, :1] + inst + size + 1e-5)
    present = (size > 0).to(p.dtype)
    n = present.sum(1)
    elem = (d * present).sum(1) / n.clamp(min=1)
    has = (n > 0).to(p.dtype)
    return 2 * glob + (elem * has).sum() / has.sum().clamp(min=1)


def tmin(runs, f):
    f()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--instances", default="1,10,100,1000")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| shape | K | torch dice ms | torch vectorised blob ms |")
    print("|---|---|---|---|")
    for size in map(int, a.sizes.split(",")):
        for k in map(int, a.instances.split(",")):
            logits, ids = inputs(size, k)
            bins = int(ids.max()) + 1

            def step(loss):
                x = logits.clone().requires_grad_()
                loss(x).backward()
                return x.grad

            td = tmin(a.runs, lambda: step(lambda x: dice(x, ids)))
            tb = tmin(a.runs, lambda: step(lambda x: blob(x, ids, bins)))
            print(f"| [2, 1, {size}, {size}, {size}] | {k} | {td * 1e3:.1f} | {tb * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
