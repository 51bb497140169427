"""CuPy's labelling and distance transform on the volumes of benches/device_components.rs.

    python scripts/cupy_components_bench.py [--runs N] [--check]

The other side of `scripts/gpu_bench.sh run` on a lent GPU: `cupyx.scipy.ndimage.label`
(26-connectivity) on "lesions 256³" and "noise 128³", and `distance_transform_edt` with
`return_indices=True` (the Voronoi cells of the 26-connected lesions of a 64³ volume, as
`voronoi_device` times them), each the minimum over N timed calls after one warm-up, synchronised
with the device. The volumes come from ports of `examples/common/rng.rs` (SplitMix64) and
`examples/common/lesions.rs`, voxel for voxel; every line prints the foreground voxels and the
component count, to compare with the Rust side's (`--check` also runs scipy on the host and
asserts CuPy's counts equal scipy's).

Without CuPy it prints SKIPPED and exits 0: there is nothing to fall back to.
"""

import argparse
import time

import numpy as np

MASK = (1 << 64) - 1


class Rng:
    """SplitMix64, as examples/common/rng.rs."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def unit(self):
        return (self.next_u64() >> 11) / float(1 << 53)


def lesions(size, count, seed):
    """examples/common/lesions.rs: `count` axis-aligned ellipsoids of radius 1 to 8."""
    rng = Rng(seed)
    volume = np.zeros((size, size, size), dtype=np.uint8)
    for _ in range(count):
        center = [rng.unit() * size for _ in range(3)]
        radii = []
        for _ in range(3):
            u = rng.unit()
            radii.append(1.0 + u * u * 7.0)
        lo = [max(np.floor(center[d] - radii[d]), 0.0) for d in range(3)]
        lo = [int(v) for v in lo]
        hi = [min(int(np.ceil(center[d] + radii[d])) + 1, size) for d in range(3)]
        if any(h <= l for l, h in zip(lo, hi)):
            continue
        grids = np.meshgrid(*[np.arange(lo[d], hi[d], dtype=np.float64) for d in range(3)], indexing="ij")
        q = np.zeros(grids[0].shape)
        for d in range(3):
            t = (grids[d] - center[d]) / radii[d]
            q = q + t * t
        box = volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        box[q <= 1.0] = 1
    return volume


def noise(size, seed):
    """benches/device_components.rs `noise`: one SplitMix64 draw per voxel, its lowest bit."""
    n = size**3
    with np.errstate(over="ignore"):
        state = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z & np.uint64(1)).astype(np.uint8).reshape(size, size, size)


def timed(f, runs, sync):
    f()
    sync()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        f()
        sync()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--check", action="store_true", help="assert CuPy's counts equal scipy's")
    args = parser.parse_args()
    try:
        import cupy as cp
        from cupyx.scipy import ndimage as cndi
    except ImportError as err:
        print(f"== CuPy: SKIPPED ({err}); install CuPy (cupy-cuda12x or cupy-cuda13x) to time it")
        return
    from scipy import ndimage as ndi

    sync = cp.cuda.Device().synchronize
    structure = np.ones((3, 3, 3), dtype=bool)
    print(f"== CuPy {cp.__version__}, {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    for name, volume in [("lesions 256³", lesions(256, 1200, 1)), ("noise 128³", noise(128, 2))]:
        on_device = cp.asarray(volume)
        _, count = cndi.label(on_device, structure=cp.asarray(structure))
        ms = timed(lambda: cndi.label(on_device, structure=cp.asarray(structure)), args.runs, sync)
        print(f"label_cupy {name}: {ms:.3f} ms ({int(volume.sum())} voxels, {int(count)} components)")
        if args.check:
            _, host_count = ndi.label(volume, structure=structure)
            assert host_count == int(count), f"{name}: cupy {int(count)} vs scipy {host_count}"
    labels, count = ndi.label(lesions(64, 100, 3), structure=structure)
    on_device = cp.asarray(labels)

    def cells():
        _, indices = cndi.distance_transform_edt(on_device == 0, return_indices=True)
        return on_device[tuple(indices)]

    ms = timed(cells, args.runs, sync)
    print(f"voronoi_cupy lesions 64³: {ms:.3f} ms ({int((labels > 0).sum())} voxels, {count} components)")


if __name__ == "__main__":
    main()
