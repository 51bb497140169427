#!/usr/bin/env python3
"""blob_loss::components::distance_transform against scipy.ndimage.distance_transform_edt.

    python scripts/edt_compare.py [--cases 40] [--seed 0] [--dir DIR]

Needs numpy, scipy and cargo. Writes random 2D and 3D masks (sparse and dense; unit spacing,
anisotropic spacing of powers of two, where squared distances are exact and ties between
nearest voxels are many, and anisotropic spacing with irrational ratios), runs
`examples/edt.rs cases` on them, and compares with
`distance_transform_edt(mask == 0, sampling=spacing, return_indices=True)`: distances to 1e-6
relative, and the nearest voxel: the same voxel as scipy's everywhere where the spacing is exact
(ties included: both take the one with the smallest last coordinate, then the one before), at
the same distance elsewhere (rounding may settle a near-tie either way). Prints one line per case
and exits 1 on any difference.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from scipy import ndimage


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=pathlib.Path)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    folder = args.dir or pathlib.Path(tempfile.mkdtemp(prefix="edt_cases_"))
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(args.cases):
        ndim = 2 if i % 2 == 0 else 3
        shape = tuple(int(s) for s in rng.integers(1, 48 if ndim == 2 else 20, size=ndim))
        density = float(rng.choice([0.002, 0.02, 0.2, 0.6]))
        mask = (rng.random(shape) < density).astype(np.uint8)
        exact = i % 4 != 3
        if i % 4 < 2:
            spacing = [1.0] * ndim
        elif exact:
            spacing = [float(s) for s in rng.choice([0.5, 1.0, 2.0, 4.0], size=ndim)]
        else:
            spacing = [float(s) for s in rng.uniform(0.4, 3.0, size=ndim)]
        name = f"case{i:03d}"
        (folder / f"{name}.json").write_text(json.dumps({"shape": list(shape), "spacing": spacing}))
        mask.tofile(folder / f"{name}.u8")
        cases.append((name, mask, spacing, exact))
    subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "edt", "--", "cases", str(folder)], check=True)
    failures = 0
    for name, mask, spacing, exact in cases:
        dist = np.fromfile(folder / f"{name}.dist.f64", dtype="<f8").reshape(mask.shape)
        index = np.fromfile(folder / f"{name}.index.u64", dtype="<u8").reshape(mask.shape)
        line = f"{name} {mask.shape} spacing {np.round(spacing, 3).tolist()} foreground {int(mask.sum())}: "
        if mask.sum() == 0:
            ok = bool(np.all(np.isinf(dist)))
            print(line + ("ok (no foreground: infinite)" if ok else "DIFFERENT"))
            failures += not ok
            continue
        want, indices = ndimage.distance_transform_edt(mask == 0, sampling=spacing, return_indices=True)
        close = np.allclose(dist, want, rtol=1e-6, atol=1e-9)
        # The named voxel: foreground, and at the right distance.
        coords = np.stack(np.unravel_index(index.astype(np.int64), mask.shape), axis=0)
        grid = np.indices(mask.shape)
        sp = np.asarray(spacing).reshape((-1,) + (1,) * mask.ndim)
        named = np.sqrt((((coords - grid) * sp) ** 2).sum(axis=0))
        named_ok = bool(np.all(mask.ravel()[index.ravel().astype(np.int64)] == 1)) and np.allclose(named, want, rtol=1e-6, atol=1e-9)
        # Where scipy's nearest voxel is a different voxel at a different distance: a real disagreement.
        scipy_index = np.ravel_multi_index(tuple(indices), mask.shape)
        ties = np.isclose(named, want, rtol=1e-12, atol=1e-12) & (scipy_index != index)
        same = (scipy_index == index).mean()
        ok = close and named_ok and (same == 1.0 or not exact)
        failures += not ok
        print(line + ("ok" if ok else "DIFFERENT") + f", same nearest voxel as scipy at {100 * same:.2f}%"
              + ("" if exact else f" (equidistant elsewhere: {int(ties.sum())})"))
    print(f"{len(cases) - failures} of {len(cases)} cases equal to scipy")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
