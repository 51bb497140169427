#!/usr/bin/env python3
"""PyTorch peers of examples/loss_bench.rs, on the same inputs, forward + backward on the CPU.

    torch_blob_bench.py [--runs 5] [--shapes 2x1x64,2x1x128] [--instances 1,10,100,1000] [--threads 2]
                        [--device cpu|cuda]

- dice: the plain global soft Dice (per element, averaged).
- vectorised: blob loss (alpha 2, beta 1, soft Dice, the paper's Exclude semantics) with
  sigmoid + scatter_add_ into per-instance bins: the fastest way to write it in PyTorch.
Logits are [B, C, S, S, S] (--shapes BxCxS,...), K cubes of 27 voxels per element and channel.
Each figure is the minimum over --runs runs after a warm-up (fresh leaf, forward, backward, the
gradient read back to the host, as the Rust side does).
"""
import argparse
import time

import torch


def inputs(b, c, size, k):
    n = size ** 3
    i = torch.arange(b * c * n, dtype=torch.int64)
    logits = ((i * 2654435761) % 1000).to(torch.float32) / 125.0 - 4.0
    ids = torch.zeros(b * c * n, dtype=torch.int64)
    per_axis = 1
    while per_axis ** 3 < k:
        per_axis += 1
    step = size // per_axis
    vol = ids.view(b, c, size, size, size)
    for j in range(k):
        z, y, x = j // (per_axis * per_axis) * step, j // per_axis % per_axis * step, j % per_axis * step
        vol[:, :, z:z + 3, y:y + 3, x:x + 3] = j + 1
    return logits.view(b, c, size, size, size), ids.view(b, c, size, size, size)


def dice(x, ids):
    rows = x.shape[0] * x.shape[1]
    p = torch.sigmoid(x).reshape(rows, -1)
    t = (ids.reshape(rows, -1) > 0).to(p.dtype)
    tp = (p * t).sum(1)
    return (1 - (2 * tp + 1e-5) / (p.sum(1) + t.sum(1) + 1e-5)).mean()


def blob(x, ids, bins):
    b, c = x.shape[0], x.shape[1]
    rows = b * c
    p = torch.sigmoid(x).reshape(rows, -1)
    idf = ids.reshape(rows, -1)
    t = (idf > 0).to(p.dtype)
    tp = (p * t).sum(1)
    glob = (1 - (2 * tp + 1e-5) / (p.sum(1) + t.sum(1) + 1e-5)).mean()
    s = torch.zeros(rows, bins, dtype=p.dtype, device=p.device).scatter_add_(1, idf, p)
    g = torch.zeros(rows, bins, dtype=p.dtype, device=p.device).scatter_add_(1, idf, torch.ones_like(p))
    inst, size = s[:, 1:], g[:, 1:]
    d = 1 - (2 * inst + 1e-5) / (s[:, :1] + inst + size + 1e-5)
    present = (size > 0).to(p.dtype)
    n = present.sum(1)
    channel = ((d * present).sum(1) / n.clamp(min=1)).view(b, c)
    channel_has = (n > 0).to(p.dtype).view(b, c)
    nc = channel_has.sum(1)
    elem = (channel * channel_has).sum(1) / nc.clamp(min=1)
    has = (nc > 0).to(p.dtype)
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
    ap.add_argument("--shapes", default="2x1x64,2x1x128")
    ap.add_argument("--instances", default="1,10,100,1000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {a.device}, {where}")
    print("| shape | K | torch dice ms | torch vectorised blob ms |")
    print("|---|---|---|---|")
    for shape in a.shapes.split(","):
        b, c, size = map(int, shape.split("x"))
        for k in map(int, a.instances.split(",")):
            logits, ids = inputs(b, c, size, k)
            logits, ids = logits.to(device), ids.to(device)
            bins = int(ids.max()) + 1

            def step(loss):
                x = logits.clone().requires_grad_()
                loss(x).backward()
                # Read the gradient back, as the Rust side does (and wait for the device).
                return x.grad.cpu()

            td = tmin(a.runs, lambda: step(lambda x: dice(x, ids)))
            tb = tmin(a.runs, lambda: step(lambda x: blob(x, ids, bins)))
            print(f"| [{b}, {c}, {size}, {size}, {size}] | {k} | {td * 1e3:.2f} | {tb * 1e3:.2f} |", flush=True)


if __name__ == "__main__":
    main()
