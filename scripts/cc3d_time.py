"""Times cc3d on one volume of scripts/ccl/ccl_data.py with one connectivity.

    python scripts/cc3d_time.py DATA_DIR VOLUME CONN RUNS

Prints the minimum wall time in ms over RUNS calls of cc3d.connected_components, after one
warm-up call: the cc3d side of scripts/ccl_paired.sh.
"""

import json
import os
import sys
import time

import cc3d
import numpy as np


def main():
    data_dir, name, conn, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    manifest = json.load(open(os.path.join(data_dir, "manifest.json")))
    entry = next(v for v in manifest["volumes"] if v["name"] == name)
    volume = np.fromfile(os.path.join(data_dir, entry["file"]), dtype=np.uint8).reshape(entry["shape"])
    cc3d.connected_components(volume, connectivity=conn)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        cc3d.connected_components(volume, connectivity=conn)
        best = min(best, time.perf_counter() - start)
    print(f"{best * 1e3:.2f}")


if __name__ == "__main__":
    main()
