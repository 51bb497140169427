#!/usr/bin/env python3
"""blob-loss's CC loss and false-positive term against PyTorch versions of the published code.

    python scripts/cc_loss_compare.py [--cases 24] [--seed 0] [--dir DIR]

Needs numpy, scipy, torch and cargo. Writes random 2D and 3D cases (batches of logits and
ground-truth masks with several components, some elements empty), labels the ground truth and
builds its Voronoi cells with scipy (26/8-connectivity, `distance_transform_edt(..., return_indices=True)`
as CC-Metrics and BiCC do), finds the false-positive components of the prediction (sigmoid > 0.5,
touching no ground truth), runs `examples/cc_loss.rs` on them and compares with:

- the CC loss of "Learning to Look Closer" (ossner/Learning-to-Look-Closer,
  `instance_losses.py::_component_dice_ce_loss`): per cell `1 - 2 I / (P + G)` on the foreground
  probability plus the cell's mean cross-entropy, the mean over cells, then over the images that
  have ground truth (here: a sigmoid output, the two-class softmax with logits (0, x));
- the empty-cell term of BiCC (TIO-IKIM/BiCC-Loss, `voronoi.py`): `sum(p * p.detach()) /
  sum(p).detach()` per false-positive component, the mean over components, then over images.

Values must agree to 1e-5 relative, gradients to 1e-4 of the largest; prints one line per case
and exits 1 on any difference.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import torch
from scipy import ndimage


def cells_of(labels):
    if labels.max() == 0:
        return np.zeros_like(labels)
    _, index = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    return labels[tuple(index)]


def cc_loss(x, labels, cells):
    """Look-Closer's per-cell Dice + CE, averaged over cells and images with components."""
    images = []
    for b in range(x.shape[0]):
        p = torch.sigmoid(x[b, 0])
        ce_map = torch.nn.functional.binary_cross_entropy_with_logits(
            x[b, 0], torch.from_numpy((labels[b, 0] > 0).astype(np.float32)), reduction="none")
        scores = []
        for k in range(1, int(labels[b, 0].max()) + 1):
            cell = torch.from_numpy(cells[b, 0] == k)
            truth = torch.from_numpy(labels[b, 0] == k).float()
            intersection = (p * truth)[cell].sum()
            denominator = (p[cell].sum() + truth[cell].sum()).clamp_min(1e-7)
            scores.append(1.0 - 2.0 * intersection / denominator + ce_map[cell].mean())
        if scores:
            images.append(torch.stack(scores).mean())
    return torch.stack(images).mean() if images else x.sum() * 0.0


def fp_term(x, fp):
    """BiCC's empty-cell term on each false-positive component."""
    images = []
    for b in range(x.shape[0]):
        p = torch.sigmoid(x[b, 0])
        terms = []
        for j in range(1, int(fp[b, 0].max()) + 1):
            q = p[torch.from_numpy(fp[b, 0] == j)]
            terms.append((q * q.detach()).sum() / q.detach().sum().clamp_min(1e-8))
        if terms:
            images.append(torch.stack(terms).mean())
    return torch.stack(images).mean() if images else x.sum() * 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=pathlib.Path)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    folder = args.dir or pathlib.Path(tempfile.mkdtemp(prefix="cc_loss_cases_"))
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(args.cases):
        ndim = 2 if i % 2 == 0 else 3
        spatial = tuple(int(s) for s in rng.integers(8, 40 if ndim == 2 else 14, size=ndim))
        shape = (3, 1) + spatial
        # Blobby ground truth: smoothed noise, thresholded; element 1 stays empty.
        noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(0, 0) + (1.2,) * ndim)
        masks = noise > np.quantile(noise, 0.85)
        masks[1] = False
        structure = ndimage.generate_binary_structure(ndim, ndim)
        labels = np.zeros(shape, dtype=np.int32)
        cells = np.zeros(shape, dtype=np.int32)
        fp = np.zeros(shape, dtype=np.int32)
        logits = (rng.standard_normal(shape) * 2.0 + np.where(masks, 1.5, -1.5)).astype(np.float32)
        for b in range(shape[0]):
            labels[b, 0], _ = ndimage.label(masks[b, 0], structure=structure)
            cells[b, 0] = cells_of(labels[b, 0])
            predicted, count = ndimage.label(logits[b, 0] > 0, structure=structure)
            next_id = 0
            for j in range(1, count + 1):
                component = predicted == j
                if not (labels[b, 0][component] > 0).any():
                    next_id += 1
                    fp[b, 0][component] = next_id
        for loss in ("cc", "fp"):
            name = f"case{i:03d}_{loss}"
            (folder / f"{name}.json").write_text(json.dumps({"shape": list(shape), "loss": loss}))
            logits.astype("<f4").tofile(folder / f"{name}.logits.f32")
            labels.astype("<i4").tofile(folder / f"{name}.instances.i32")
            cells.astype("<i4").tofile(folder / f"{name}.cells.i32")
            fp.astype("<i4").tofile(folder / f"{name}.fp.i32")
            cases.append((name, loss, logits, labels, cells, fp))
    subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "cc_loss", "--", str(folder)], check=True)
    failures = 0
    for name, loss, logits, labels, cells, fp in cases:
        x = torch.from_numpy(logits.astype(np.float64)).requires_grad_(True)
        reference = cc_loss(x, labels, cells) if loss == "cc" else fp_term(x, fp)
        reference.backward()
        expected_grad = x.grad.numpy().astype(np.float32)
        ours = float(np.fromfile(folder / f"{name}.loss.f64", dtype="<f8")[0])
        grad = np.fromfile(folder / f"{name}.grad.f32", dtype="<f4").reshape(logits.shape)
        value_error = abs(ours - float(reference)) / max(abs(float(reference)), 1e-3)
        scale = max(float(np.abs(expected_grad).max()), 1e-6)
        grad_error = float(np.abs(grad - expected_grad).max()) / scale
        parts = int(labels.max()) if loss == "cc" else int(fp.max())
        ok = value_error <= 1e-5 and grad_error <= 1e-4
        failures += not ok
        print(f"{name} {logits.shape} {loss}: regions {parts}, ours {ours:.6f} reference {float(reference):.6f}, "
              f"value error {value_error:.1e}, gradient error {grad_error:.1e} {'ok' if ok else 'DIFFERENT'}")
    print(f"{len(cases) - failures} of {len(cases)} equal")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
