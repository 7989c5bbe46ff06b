#!/usr/bin/python3
"""Trainer-style reads from ppreprocess shards: random samples, each a centred crop shifted by a
random s (|s| <= 2 * floor(m / 4), as REFERENCE.md section 5 draws it), of L of the stored S_in
bases and O of the stored S_out target positions. Prints bytes per sample on disk and crop reads
per second (single process, h5py).

    /usr/bin/python3 bench/shard_read.py SHARD_FOLDER [--L 20480] [--O 4096] [--reads 200]"""
import argparse
import glob
import os
import time

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--L", type=int, default=20480)
    ap.add_argument("--O", type=int, default=4096)
    ap.add_argument("--reads", type=int, default=200)
    a = ap.parse_args()
    files = [h5py.File(p, "r") for p in sorted(glob.glob(os.path.join(a.folder, "*.h5")))]
    n = [f["x"].shape[0] for f in files]
    S_in, S_out = files[0]["x"].shape[1], files[0]["y"].shape[1]
    size = sum(os.path.getsize(f.filename) for f in files)
    m = min(S_in - a.L, S_out - a.O)
    std = m // 4
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(a.reads):
        k = int(rng.integers(len(files)))
        i = int(rng.integers(n[k]))
        s = int(np.clip(rng.normal(0, std), -2 * std, 2 * std)) if std else 0
        x0, y0 = (S_in - a.L) // 2 + s, (S_out - a.O) // 2 + s
        x = files[k]["x"][i, x0:x0 + a.L]
        y = files[k]["y"][i, y0:y0 + a.O, :]
        assert x.shape == (a.L,) and y.shape[0] == a.O
    dt = time.perf_counter() - t0
    y = files[0]["y"]
    print(f"{a.folder}: {size / sum(n):.0f} bytes/sample, chunks {y.chunks} {y.compression} "
          f"{y.compression_opts}; {a.reads / dt:.0f} crop reads/s (L {a.L}, O {a.O})")


if __name__ == "__main__":
    main()
