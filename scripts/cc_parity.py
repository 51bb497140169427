#!/usr/bin/env python3
"""blob-loss's CC family (`BiccLoss`) against the published code, run side by side.

    BICC_LOSS_DIR=... LOOK_CLOSER_DIR=... python scripts/cc_parity.py [--dir DIR] [--seeds 6]
    BICC_LOSS_DIR=... python scripts/cc_parity.py --bench [--size 64] [--lesions 100] [--runs 10]

Needs numpy, scipy, torch (the CPU wheel from PyPI is enough) and cargo, and a checkout of each
published repository, named by an environment variable (nothing of their code is in blob-loss):

- BICC_LOSS_DIR: TIO-IKIM/BiCC-Loss (https://github.com/TIO-IKIM/BiCC-Loss), the folder holding
  `src/bicc_loss/`. Its CPU path (scipy) runs unmodified.
- LOOK_CLOSER_DIR: ossner/Learning-to-Look-Closer
  (https://github.com/ossner/Learning-to-Look-Closer), the folder holding `nnunetv2/`. Its loss
  asserts CUDA tensors and labels with CuPy: this script lifts the three `is_cuda` asserts of
  `CCMetrics._validate_inputs` and gives `get_voronoi` the same construction on scipy (the
  3x3x3 structure, the EDT feature transform of `labels == 0`); the metric
  `_component_dice_ce_loss` is taken verbatim from its trainer file. Nothing else is changed.

Without a checkout it prints SKIPPED and compares nothing: it never falls back to formulas of
its own.

Parity: every case (elements without ground truth and without prediction, a false positive
touching ground truth only diagonally, a prediction cell holding a missed lesion, Voronoi ties,
components on image and cell borders, anisotropic spacing with a half-resolution output, logits
within 1e-7 of 0, |logit| >= 17, batches with unequal component counts, random 2D and 3D
batches) runs every configuration (BiCC's default, alpha 0 and 1, its SmoothedDice ablation,
modes dice and ce, `VectorizedCCLoss`, and Look-Closer's CC-DiceCE where the spacing is unit)
through the published code and through `examples/cc_parity.rs` twice: with the published
code's cells, then with blob-loss's own labelling and cells. Loss values must agree to 1e-5
relative, gradients to 1e-4 of the largest published entry, and blob-loss's own cells must equal
the published ones voxel for voxel. Prints one line per case and configuration, the totals, and
exits 1 on any difference.

--bench: BiCC (alpha 0.5, Dice + CE) forward and backward on the CPU, the published code (scipy
path, PyTorch; [2, 2, N^3] logits) and blob-loss (flex; the same batch as [2, 1, N^3] margins,
the ground truth's cells given) with the blob loss (Dice + BCE) beside it, in one run, K lesions
per element (3^3 cubes; the prediction finds each shifted by one voxel and adds K false
positives). Prints the fastest of R runs of each and the ratios.
"""
import argparse
import ast
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from scipy import ndimage

ROOT = pathlib.Path(__file__).resolve().parent.parent


def skipped(reason):
    banner = "=" * 78
    message = f"{banner}\nSKIPPED: {reason}\nNothing was compared.\n{banner}"
    print(message)
    print(message, file=sys.stderr)
    sys.exit(0)


def load_bicc():
    folder = os.environ.get("BICC_LOSS_DIR")
    if not folder or not (pathlib.Path(folder) / "src" / "bicc_loss").is_dir():
        skipped("set BICC_LOSS_DIR to a checkout of TIO-IKIM/BiCC-Loss (the folder holding src/bicc_loss)")
    sys.path.insert(0, str(pathlib.Path(folder) / "src"))
    import bicc_loss
    from bicc_loss.components import get_voronoi
    return bicc_loss, get_voronoi


def load_look_closer():
    folder = os.environ.get("LOOK_CLOSER_DIR")
    if not folder or not (pathlib.Path(folder) / "nnunetv2").is_dir():
        skipped("set LOOK_CLOSER_DIR to a checkout of ossner/Learning-to-Look-Closer (the folder holding nnunetv2)")
    sys.path.insert(0, folder)
    from nnunetv2.training.loss import instance_losses as il
    from nnunetv2.utilities.helpers import softmax_helper_dim1

    # The metric, verbatim from the trainer file (importing that file pulls the whole nnU-Net
    # trainer stack).
    trainer = pathlib.Path(folder) / "nnunetv2/training/nnUNetTrainer/variants/loss/nnUNetTrainerInstanceLosses.py"
    tree = ast.parse(trainer.read_text())
    wanted = {"_safe_mean", "_component_dice_ce_loss"}
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {n.name for n in nodes} == wanted, "the trainer file no longer defines the metric"
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(trainer), "exec"), namespace)

    def cpu_voronoi(y, do_bg):
        """The construction of compute_voronoi_cupy on scipy (no sampling)."""
        out = []
        for b in range(y.shape[0]):
            per = []
            for c in range(0 if do_bg else 1, y.shape[1]):
                labels, _ = ndimage.label((y[b, c] > 0).cpu().numpy(), structure=np.ones((3, 3, 3), dtype=bool))
                index = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
                per.append(torch.from_numpy(labels[tuple(index)]).to(torch.int64))
            out.append(torch.stack(per, 0))
        return torch.stack(out, 0)

    def validate_without_cuda(self, y_pred, y):
        assert y_pred.ndim == 5 and y_pred.shape[1] == 2
        assert list(y.shape) == [y_pred.shape[0], 1, *y_pred.shape[2:]]
        assert y.dtype == torch.int16

    il.get_voronoi = cpu_voronoi
    il.CCMetrics._validate_inputs = validate_without_cuda
    return lambda: il.CCMetrics(metric=namespace["_component_dice_ce_loss"], activation=softmax_helper_dim1)


# ----------------------------------------------------------------------------------------------
# Cases: logits [B, 2, spatial..] (channel 0 a base, channel 1 base + margin), masks [B, spatial..].

def background(i, j, level):
    return level + 0.1 * (((i + 2 * j) % 7) - 3)


def element_2d(margin, truth, size=16):
    l0 = np.zeros((size, size), np.float32)
    l1 = np.zeros((size, size), np.float32)
    t = np.zeros((size, size), np.int16)
    for i in range(size):
        for j in range(size):
            base = np.float32(0.25 * ((3 * i + 5 * j) % 4) - 0.25)
            l0[i, j] = base
            l1[i, j] = base + np.float32(margin(i, j))
            t[i, j] = truth(i, j)
    return np.stack([l0, l1]), t


def batch(elements):
    return np.stack([e[0] for e in elements]), np.stack([e[1] for e in elements])


def lesions_0(i, j):
    return int((2 <= i <= 4 and 2 <= j <= 4) or (3 <= i <= 4 and 11 <= j <= 13))


def case_main():
    def m0(i, j):
        if (i, j) == (4, 4):
            return -1.0
        if 2 <= i <= 4 and 2 <= j <= 4:
            return 2.0
        if i == 3 and 11 <= j <= 13:
            return 0.5
        if i == 4 and 11 <= j <= 13:
            return -0.5
        if 12 <= i <= 13 and 12 <= j <= 14:
            return 1.5
        if (i, j) == (14, 12):
            return 0.0
        return background(i, j, -3.0)

    def m1(i, j):
        if 6 <= i <= 8 and 6 <= j <= 7:
            return 1.0
        if (i, j) in ((1, 13), (2, 14)):
            return 0.2
        return background(i, j, -2.5)

    return batch([element_2d(m0, lesions_0), element_2d(m1, lambda i, j: 0)])


def case_nothing_predicted():
    m = lambda i, j: background(i, j, -4.0)  # noqa: E731
    return batch([element_2d(m, lesions_0), element_2d(m, lambda i, j: 0)])


def case_diagonal_false_positive():
    # A lesion found, and a false positive that touches it only at a corner: one predicted
    # component with 8-connectivity.
    truth = lambda i, j: int(4 <= i <= 6 and 4 <= j <= 6)  # noqa: E731

    def m(i, j):
        if 4 <= i <= 6 and 4 <= j <= 6:
            return 1.5
        if 7 <= i <= 8 and 7 <= j <= 8:
            return 1.0
        return background(i, j, -3.0)

    return batch([element_2d(m, truth)])


def case_cell_with_missed_lesion():
    # A false positive nearest to a lesion nobody predicted: its prediction cell holds ground
    # truth (normal Dice), another lesion is found.
    truth = lambda i, j: int((2 <= i <= 3 and 2 <= j <= 3) or (12 <= i <= 13 and 12 <= j <= 13))  # noqa: E731

    def m(i, j):
        if 2 <= i <= 3 and 2 <= j <= 3:
            return 2.0
        if 9 <= i <= 10 and 9 <= j <= 10:
            return 1.2
        return background(i, j, -3.0)

    return batch([element_2d(m, truth)])


def case_ties():
    # Symmetric components, ties everywhere on the bisectors: (0,2)/(2,0)-style diagonals,
    # opposite corners, a centred pair; in the ground truth and in the prediction.
    def truth0(i, j):
        return int((i, j) in ((0, 10), (10, 0), (15, 15)))

    def m0(i, j):
        if (i, j) in ((0, 0), (0, 14), (14, 0), (14, 14)):
            return 2.0
        return background(i, j, -3.0)

    def truth1(i, j):
        return int((i, j) in ((7, 3), (7, 11)))

    def m1(i, j):
        if (i, j) in ((3, 7), (11, 7), (7, 3)):
            return 2.0
        return background(i, j, -3.0)

    return batch([element_2d(m0, truth0), element_2d(m1, truth1)])


def case_borders():
    # Components on the image border and on cell borders.
    def truth(i, j):
        return int(j == 0 and i < 5 or i == 15 and j > 9 or (i, j) == (8, 8))

    def m(i, j):
        if j == 0 and 2 <= i < 7 or i == 15 and j > 11 or (i, j) in ((8, 8), (0, 15)):
            return 1.0
        return background(i, j, -3.0)

    return batch([element_2d(m, truth)])


def case_3d():
    d, h, w = 4, 6, 6
    t = np.zeros((d, h, w), np.int16)
    t[0:2, 0:2, 0:2] = 1
    t[2, 2, 2] = 1
    t[3, 5, 5] = 1
    margin = np.full((d, h, w), -2.0, np.float32)
    margin[0:2, 0:2, 1:3] = 1.25
    margin[0, 4:6, 0] = 0.75
    l0 = np.fromfunction(lambda a, b, c: 0.125 * ((a + 2 * b + 3 * c) % 5) - 0.25, (d, h, w)).astype(np.float32)
    return np.stack([l0, l0 + margin])[None], t[None]


def case_near_zero():
    # Margins within 1e-7 of 0 (the f32 softmax says exactly 0.5 below about 6e-8), on bases of
    # several sizes.
    margins = [0.0, 1e-8, -1e-8, 3e-8, -3e-8, 6e-8, -6e-8, 1e-7, -1e-7, 1.2e-7, 2e-7, -2e-7]
    size = 16
    l0 = np.zeros((size, size), np.float32)
    l1 = np.zeros((size, size), np.float32)
    t = np.zeros((size, size), np.int16)
    t[5:8, 5:8] = 1
    for i in range(size):
        for j in range(size):
            base = np.float32([0.0, 3.0, -7.25, 0.5][(i + j) % 4])
            l0[i, j] = base
            k = (i * size + j) % (len(margins) + 8)
            margin = margins[k] if k < len(margins) else -3.0
            l1[i, j] = np.float32(base + np.float32(margin)) if margin != -3.0 else base - np.float32(3.0)
    return np.stack([l0, l1])[None], t[None]


def case_clamp():
    t = np.zeros((4, 4), np.int16)
    t[1, 1] = 1
    t[2, 2] = 1
    margin = np.full((4, 4), -20.0, np.float32)
    margin[2, 2] = 3.0
    margin[0, 3] = 20.0
    margin[3, 0] = -17.0
    margin[3, 3] = 30.0
    margin[0, 0] = -25.0
    l0 = np.zeros((4, 4), np.float32)
    return np.stack([l0, l0 + margin])[None], t[None]


def random_batch(rng, shape, batch_size, lesions, dims):
    """Random blobs in the truth; the prediction finds most of them shifted, misses some, adds
    false positives; element 0 may be left without lesions."""
    logits, truths = [], []
    for b in range(batch_size):
        t = np.zeros(shape, np.int16)
        margin = rng.normal(-3.0, 1.0, shape).astype(np.float32)
        count = 0 if (b == 0 and rng.random() < 0.5) else int(rng.integers(1, lesions + 1))
        for _ in range(count):
            centre = [int(rng.integers(0, s)) for s in shape]
            radius = [int(rng.integers(0, 2)) for _ in shape]
            region = tuple(slice(max(c - r, 0), c + r + 1) for c, r in zip(centre, radius))
            t[region] = 1
            if rng.random() < 0.8:
                shifted = tuple(slice(max(s.start + int(rng.integers(-1, 2)), 0), max(s.stop + int(rng.integers(-1, 2)), 1))
                                for s in region)
                margin[shifted] = rng.normal(2.0, 1.0)
        for _ in range(int(rng.integers(0, 4))):
            centre = tuple(int(rng.integers(0, s)) for s in shape)
            margin[centre] = rng.normal(1.5, 0.5)
        l0 = rng.normal(0.0, 0.5, shape).astype(np.float32)
        logits.append(np.stack([l0, l0 + margin]))
        truths.append(t)
    return np.stack(logits), np.stack(truths)


def cases(seeds):
    out = [
        ("main", *case_main(), None, None),
        ("nothing_predicted", *case_nothing_predicted(), None, None),
        ("diagonal_false_positive", *case_diagonal_false_positive(), None, None),
        ("cell_with_missed_lesion", *case_cell_with_missed_lesion(), None, None),
        ("ties", *case_ties(), None, None),
        ("borders", *case_borders(), None, None),
        ("3d", *case_3d(), None, None),
        ("3d_half_resolution_anisotropic", *case_3d(), [2.0, 1.0, 1.0], [8, 6, 6]),
        ("near_zero", *case_near_zero(), None, None),
        ("clamp", *case_clamp(), None, None),
    ]
    # Unequal component counts: 0, 1 and 5 lesions.
    x0, t0 = case_nothing_predicted()
    x1, t1 = case_diagonal_false_positive()
    rng = np.random.default_rng(99)
    x2, t2 = random_batch(rng, (16, 16), 1, 5, 2)
    out.append(("unequal_counts", np.concatenate([x0[1:], x1, x2]), np.concatenate([t0[1:], t1, t2]), None, None))
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        if seed % 2 == 0:
            x, t = random_batch(rng, (24, 20), 3, 6, 2)
            out.append((f"random_2d_{seed}", x, t, None, None))
        else:
            x, t = random_batch(rng, (8, 12, 10), 2, 5, 3)
            spacing = [[1.0, 1.0, 1.0], [3.0, 1.0, 1.0], [2.0, 0.5, 0.5]][seed % 3]
            out.append((f"random_3d_{seed}", x, t, spacing, None))
    return out


CONFIGS = [
    ("BiCC", {}),
    ("BiCC alpha 0", {"alpha": 0.0}),
    ("BiCC alpha 1", {"alpha": 1.0}),
    ("BiCC SmoothedDice", {"empty_cell_loss": "dice", "prediction_dice_smooth": 1e-5}),
    ("BiCC mode dice", {"mode": "dice"}),
    ("BiCC mode ce", {"mode": "ce"}),
    ("VectorizedCCLoss", {"cc_loss": True}),
    ("CC-DiceCE (Look-Closer)", {"cc_dice_ce": True}),
]


def published(bicc, look_closer, name, options, spacing, patch):
    geometry = {"sampling": tuple(spacing), "patch_size": tuple(patch) if patch else None} if spacing else {}
    if options.get("cc_dice_ce"):
        return look_closer()
    if options.get("cc_loss"):
        return bicc.VectorizedCCLoss(**geometry)
    keys = {"alpha": "alpha", "empty_cell_loss": "empty_cell_loss", "prediction_dice_smooth": "pred_branch_dice_smooth",
            "mode": "mode"}
    return bicc.VectorizedBiCCLoss(**{keys[k]: v for k, v in options.items()}, **geometry)


def ours(options, spacing, patch):
    spec = dict(options)
    if spec.pop("cc_loss", False):
        spec["alpha"] = 0.0
    spec["mode"] = {"dice": "dice", "ce": "ce"}.get(spec.get("mode"), "dice_ce")
    spec["spacing"] = spacing
    spec["patch_size"] = patch
    return spec


def parity(args):
    bicc, get_voronoi = load_bicc()
    look_closer = load_look_closer()
    folder = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="cc_parity_"))
    folder.mkdir(parents=True, exist_ok=True)
    manifest, runs = [], []
    for name, x, t, spacing, patch in cases(args.seeds):
        # Published tensors: [B, 2, 1, H, W] for 2D (the published code takes 3D volumes only).
        x5 = torch.from_numpy(x if x.ndim == 5 else x[:, :, None].copy())
        t5 = torch.from_numpy((t if t.ndim == 4 else t[:, None]).astype(np.int16))[:, None]
        sampling = None
        if spacing:
            sampling = bicc.VectorizedBiCCLoss(sampling=tuple(spacing),
                                               patch_size=tuple(patch) if patch else None)._effective_sampling(x5.shape[2:])
        gt_cells = get_voronoi(t5 == 1, do_bg=True, sampling=sampling)[:, 0]
        pred_cells = get_voronoi(torch.softmax(x5, 1)[:, 1:2] > 0.5, do_bg=True, sampling=sampling)[:, 0]
        configs = [(label, options) for label, options in CONFIGS
                   if not (options.get("cc_dice_ce") and spacing and any(s != 1.0 for s in spacing))]
        results = []
        for label, options in configs:
            loss = published(bicc, look_closer, label, options, spacing, patch)
            xg = x5.clone().requires_grad_(True)
            value = loss(xg, t5)
            value.backward()
            grad = xg.grad.detach().numpy().reshape(x.shape)
            results.append((label, float(value.detach()), grad))
        shape = list(x.shape)
        (folder / f"{name}.logits.f32").write_bytes(x.astype("<f4").tobytes())
        (folder / f"{name}.mask.i32").write_bytes(t.astype("<i4").tobytes())
        cells_shape = (x.shape[0], *x.shape[2:])
        (folder / f"{name}.cells.i32").write_bytes(gt_cells.numpy().reshape(cells_shape).astype("<i4").tobytes())
        (folder / f"{name}.pred_cells.i32").write_bytes(pred_cells.numpy().reshape(cells_shape).astype("<i4").tobytes())
        manifest.append({"name": name, "shape": shape, "configs": [ours(o, spacing, patch) for _, o in configs]})
        runs.append((name, shape, gt_cells.numpy().reshape(cells_shape), pred_cells.numpy().reshape(cells_shape), results))
    (folder / "cases.json").write_text(json.dumps(manifest))
    subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "cc_parity", "--", str(folder)],
                   cwd=ROOT, check=True)

    failures, checks = 0, 0
    print(f"{'case':34s} {'loss':26s} {'published':>12s} {'given cells':>12s} {'own cells':>12s}  grad diff / max  result")
    for name, shape, gt_cells, pred_cells, results in runs:
        own_gt = np.frombuffer((folder / f"{name}.own_cells.i32").read_bytes(), "<i4").reshape(gt_cells.shape)
        own_pred = np.frombuffer((folder / f"{name}.own_pred_cells.i32").read_bytes(), "<i4").reshape(pred_cells.shape)
        differing = int((own_gt != gt_cells).sum() + (own_pred != pred_cells).sum())
        checks += 1
        if differing:
            failures += 1
        print(f"{name:34s} {'cells (ground truth, pred)':26s} {'':>12s} {'':>12s} {'':>12s}  "
              f"{differing} voxels differ  {'ok' if differing == 0 else 'DIFFERENT'}")
        for i, (label, value, grad) in enumerate(results):
            line = []
            ok = True
            for how in ("given", "own"):
                got = np.frombuffer((folder / f"{name}.{i}.{how}.loss.f64").read_bytes(), "<f8")[0]
                g = np.frombuffer((folder / f"{name}.{i}.{how}.grad.f32").read_bytes(), "<f4").reshape(shape)
                scale = float(np.abs(grad).max())
                diff = float(np.abs(g - grad).max())
                good = abs(got - value) <= 1e-5 * max(abs(value), 1e-12) and diff <= 1e-4 * max(scale, 1e-30)
                ok &= good
                line.append((got, diff, scale))
                checks += 1
                failures += int(not good)
            (given, dg, scale), (own, do, _) = line
            print(f"{name:34s} {label:26s} {value:12.9f} {given:12.9f} {own:12.9f}  "
                  f"{max(dg, do):.1e} / {scale:.1e}  {'ok' if ok else 'DIFFERENT'}")
    print(f"\n{checks - failures} of {checks} checks equal ({len(runs)} cases; per case: the cells, then every loss "
          f"with the published cells and with blob-loss's own; loss to 1e-5 relative, gradient to 1e-4 of the largest)")
    return 1 if failures else 0


def bench(args):
    bicc, _ = load_bicc()
    n, k, runs = args.size, args.lesions, args.runs
    rng = np.random.default_rng(12345)
    truth = np.zeros((2, 1, n, n, n), np.int16)
    margin = np.full((2, n, n, n), -4.0, np.float32)
    for b in range(2):
        for j in range(2 * k):
            z, y, x = (int(rng.integers(0, n - 4)) for _ in range(3))
            shift = 1 if j < k else 0
            if j < k:
                truth[b, 0, z:z + 3, y:y + 3, x:x + 3] = 1
            margin[b, z:z + 3, y:y + 3, x + shift:x + shift + 3] = 3.0
    logits = torch.from_numpy(np.stack([np.zeros_like(margin), margin], 1))
    target = torch.from_numpy(truth)
    loss = bicc.VectorizedBiCCLoss()
    best = float("inf")
    for _ in range(runs):
        x = logits.clone().requires_grad_(True)
        start = time.perf_counter()
        loss(x, target).backward()
        best = min(best, time.perf_counter() - start)
    torch_threads = torch.get_num_threads()
    out = subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "cc_parity", "--", "--bench",
                          str(n), str(k), str(runs)], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    ours_ms = json.loads(out.strip().splitlines()[-1])
    published_ms = best * 1e3
    print(f"[2, 2, {n}^3] logits for the published code, [2, 1, {n}^3] margins for ours, K = {k} per element, "
          f"fastest of {runs} (torch threads: {torch_threads})")
    print(f"| BiCC, published code (PyTorch, scipy) | {published_ms:.1f} ms |")
    print(f"| BiCC, blob-loss (flex) | {ours_ms['bicc_ms']:.1f} ms |")
    print(f"| blob loss, Dice + BCE, blob-loss (flex) | {ours_ms['blob_dice_bce_ms']:.1f} ms |")
    print(f"published / ours: {published_ms / ours_ms['bicc_ms']:.1f}x; "
          f"BiCC / blob loss (Dice + BCE): {ours_ms['bicc_ms'] / ours_ms['blob_dice_bce_ms']:.2f}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="where to write the cases (default: a new temporary folder)")
    parser.add_argument("--seeds", type=int, default=6, help="random 2D and 3D batches")
    parser.add_argument("--bench", action="store_true", help="time BiCC against the published code instead")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--lesions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    sys.exit(bench(args) if args.bench else parity(args))


if __name__ == "__main__":
    main()
