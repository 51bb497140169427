#!/usr/bin/env python3
"""Merges the timings of ccl_bench.py (cc3d, scipy) and examples/ccl_bench.rs (blob-loss).

    ccl_compare.py DATA_DIR PEERS_JSON_OR_GLOB OURS_JSON_OR_GLOB [MIMALLOC_JSON_OR_GLOB]

Checks that blob-loss gives cc3d's labels exactly (same count and the same checksum
sum(label[i] * (i + 1)) mod 2^64 over the C-ordered labels), then prints a markdown table; with
the fourth argument (examples/ccl_bench_mimalloc.rs: the same with mimalloc as the global
allocator) a second table for that run. When the globs
hold several rounds of a volume (scripts/bench_ccl.sh ROUNDS), every time is the best round of its
side.
"""
import glob
import json
import os
import sys

import numpy as np
import cc3d


def checksum(labels):
    flat = np.ascontiguousarray(labels).ravel().astype(np.uint64)
    idx = np.arange(1, flat.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return int(np.sum(flat * idx, dtype=np.uint64))


def load(pattern, key):
    """The rows of the JSON files matching `pattern`, several rounds of a cell merged into their
    best (lowest) time per field."""
    docs = [json.load(open(p)) for p in sorted(glob.glob(pattern))]
    if not docs:
        sys.exit(f"no file matches {pattern}")
    merged = dict(docs[0])
    best = {}
    for r in (r for d in docs for r in d["rows"]):
        k = key(r)
        if k not in best:
            best[k] = dict(r)
        else:
            for field, value in r.items():
                if field.endswith("_s"):
                    best[k][field] = min(best[k][field], value)
    merged["rows"] = list(best.values())
    merged["cells"] = best
    merged["rounds"] = len(docs) // max(1, len({key(r)[0] for d in docs for r in d["rows"]}))
    return merged


def main(data_dir, peers_path, ours_path, mimalloc_path=None):
    peers = load(peers_path, lambda r: (r["name"], r["conn"]))
    key = lambda r: (r["name"], r["conn"], r["threads"])  # noqa: E731
    runs = [("with the system allocator (glibc)", load(ours_path, key))]
    if mimalloc_path:
        runs.append(("with mimalloc as the global allocator", load(mimalloc_path, key)))
    man = {e["name"]: e for e in json.load(open(os.path.join(data_dir, "manifest.json")))["volumes"]}
    expected = {}
    for p in peers["rows"]:
        e = man[p["name"]]
        vol = np.fromfile(os.path.join(data_dir, e["file"]), dtype=np.uint8).reshape(e["shape"])
        expected[(p["name"], p["conn"])] = checksum(cc3d.connected_components(vol, connectivity=p["conn"]))

    print(f"cc3d {peers['env']['cc3d']}, scipy {peers['env']['scipy']}, numpy {peers['env']['numpy']}; "
          f"cpu: {peers['env']['cpu']}; min of {peers['env']['runs']} (peers) / {runs[0][1]['runs']} (blob-loss) "
          f"runs, best of {runs[0][1]['rounds']} rounds")
    for title, ours in runs:
        mine = ours["cells"]
        print()
        print(f"blob-loss {title}:")
        print()
        print("| volume | conn | N | labels = cc3d | cc3d ms | scipy ms | floor ms | blob-loss 1 thread ms "
              "| Mvox/s | cc3d / ours (1 thr) | ours / floor | blob-loss 2 threads ms | cc3d / ours (2 thr) "
              "| label_into 1 thr ms | page faults per call |")
        print("|" + "---|" * 15)
        for p in peers["rows"]:
            name, conn = p["name"], p["conn"]
            one, two = mine.get((name, conn, 1)), mine.get((name, conn, 2))
            if one is None:
                continue
            same = int(one["checksum"]) == expected[(name, conn)] and one["count"] == p["n_cc3d"]
            floor = one["floor_s"]
            row = [name, conn, one["count"], "yes" if same else "NO",
                   f"{p['cc3d_s'] * 1e3:.1f}", f"{p['scipy_s'] * 1e3:.1f}", f"{floor * 1e3:.1f}",
                   f"{one['label_s'] * 1e3:.1f}", f"{one['Mvox'] / one['label_s']:.0f}",
                   f"{p['cc3d_s'] / one['label_s']:.2f}", f"{one['label_s'] / floor:.2f}"]
            if two:
                row += [f"{two['label_s'] * 1e3:.1f}", f"{p['cc3d_s'] / two['label_s']:.2f}"]
            else:
                row += ["-", "-"]
            row.append(f"{one['label_into_s'] * 1e3:.1f}")
            row.append(f"{one.get('label_faults', '-')} / {one.get('label_into_faults', '-')}")
            print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:5])
