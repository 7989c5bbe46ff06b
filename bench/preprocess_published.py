#!/usr/bin/python3
"""A re-creation of the published preprocessing approach, for benchmarking ppreprocess against it.

Per sample, as the published Python tool does: pyfaidx reads the sequence window, which becomes a
float32 one-hot [S_in, 4] array; pyBigWig reads each track's window (the fwd file on + strand, the
rev file on - strand) as float32 values, the row's transform is applied (numpy), and the sample
(x, y float32) is serialised as one record of a ZLIB-compressed record file (TFRecord framing:
length, crc, payload, crc; zlib level 6 = TensorFlow's default; 256 samples per file; one series
of files per chromosome). Windows that leave the chromosome are written as all-zero samples, as
published. The transforms are looked up in a table of the published spellings (never eval'd).

    /usr/bin/python3 bench/preprocess_published.py --tss_file T --fasta_file F --bigwig_files B \
        --out DIR [--max_samples N] [--input_length 32768] [--output_length 16384]
prints samples/s and bytes/sample (single process, one core)."""
import argparse
import csv
import os
import struct
import time
import zlib

import numpy as np
import pyBigWig
import pyfaidx

XFORMS = {
    "lambda x: np.arcsinh(np.nan_to_num(x))": lambda x: np.arcsinh(np.nan_to_num(x)),
    "lambda x: np.arcsinh(1000 * np.nan_to_num(x))": lambda x: np.arcsinh(1000 * np.nan_to_num(x)),
}
LUT = np.zeros((256, 4), np.float32)
for i, b in enumerate("ACGT"):
    LUT[ord(b), i] = 1
    LUT[ord(b.lower()), i] = 1


def one_hot(seq):
    return LUT[np.frombuffer(seq.encode(), np.uint8)]


class RecordWriter:
    """TFRecord framing inside one zlib stream per file (what TFRecordWriter('ZLIB') writes)."""

    def __init__(self, path):
        self.f = open(path, "wb")
        self.z = zlib.compressobj(6)

    def write(self, payload):
        head = struct.pack("<Q", len(payload))
        rec = head + struct.pack("<I", zlib.crc32(head)) + payload + struct.pack("<I", zlib.crc32(payload))
        self.f.write(self.z.compress(rec))

    def close(self):
        self.f.write(self.z.flush())
        self.f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tss_file", required=True)
    ap.add_argument("--fasta_file", required=True)
    ap.add_argument("--bigwig_files", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--input_length", type=int, default=32768)
    ap.add_argument("--output_length", type=int, default=16384)
    ap.add_argument("--max_samples", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    base = os.path.dirname(os.path.abspath(a.bigwig_files))
    with open(a.bigwig_files) as f:
        tracks = list(csv.DictReader(f, delimiter="\t"))
    fwd = [pyBigWig.open(os.path.join(base, t["fwd"])) for t in tracks]
    rev = [pyBigWig.open(os.path.join(base, t["rev"])) for t in tracks]
    xf = [XFORMS[t["xform"]] for t in tracks]
    with open(a.tss_file) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if a.max_samples:
        rows = rows[: a.max_samples]
    fa = pyfaidx.Fasta(a.fasta_file, sequence_always_upper=True)
    S_in, S_out, T = a.input_length, a.output_length, len(tracks)
    t0 = time.time()
    writers, counts = {}, {}
    for r in rows:
        chrom, p, strand = r["chrom"], int(r["pos"]) - 1, int(r["strand"])
        n = len(fa[chrom])
        if p - S_in // 2 < 0 or p + S_in // 2 > n:
            x = np.zeros((S_in, 4), np.float32)
            y = np.zeros((S_out, T), np.float32)
        else:
            x = one_hot(fa[chrom][p - S_in // 2: p + S_in // 2].seq)
            files = fwd if strand == 1 else rev
            y = np.stack([xf[t](files[t].values(chrom, p - S_out // 2, p + S_out // 2, numpy=True))
                          for t in range(T)], axis=1).astype(np.float32)
            if strand == -1:
                x, y = x[::-1, ::-1], y[::-1]
        k = counts.get(chrom, 0)
        if k % 256 == 0:
            if chrom in writers:
                writers[chrom].close()
            writers[chrom] = RecordWriter(os.path.join(a.out, f"{chrom}_{k // 256}.tfrecord"))
        counts[chrom] = k + 1
        writers[chrom].write(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes())
    for w in writers.values():
        w.close()
    dt = time.time() - t0
    size = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    print(f"published approach: {len(rows)} samples in {dt:.1f} s = {len(rows) / dt:.2f} samples/s "
          f"(1 process); {size / len(rows):.0f} bytes/sample")


if __name__ == "__main__":
    main()
