"""End-to-end scoring of a variant table in the published README's format.

The table has exactly the README's columns (chrom pos ref alt strand) and six rows in its style:
two + strand SNVs on chr16, two - strand SNVs on chr2, a + strand deletion and a - strand
insertion. The genome is synthetic (chr16 and chr2, a few kb each, random bases with the refs
planted at those positions); the model is random (12 blocks, D 16, two heads -- human 4 tracks
and mouse 3 -- so the score must come from head 0 only; outputs scaled to ~10). `promoterai`
output is checked against the float64 reference of REFERENCE.md section 3 exactly as in
test_score_ref.py: rows and columns kept in order plus score (and raw with --raw), raw within
harness.RAW_ATOL, printed score equal except one-digit differences at a rounding boundary;
then the default output name <var stem>.<model folder name><suffix> next to the variant file
with only `score` added.
Usage: /usr/bin/python3 tests/test_example.py --bin BUILD_DIR
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref as R  # noqa: E402
from harness import (Checker, check_scored_table, reference_results, binary_from_args,  # noqa: E402
                     run, write_fasta, write_tsv)

N_BLOCKS, MODEL_DIM, OUTPUT_LENGTH = 12, 16, 64
INPUT_LENGTH = OUTPUT_LENGTH + 2 * R.receptive_radius(N_BLOCKS)   # 320
HEADER = ["chrom", "pos", "ref", "alt", "strand"]
# README-style rows on the synthetic genome (positions scaled down to fit it).
ROWS = [
    ["chr16", "1214", "G", "T", "1"],
    ["chr16", "1333", "G", "C", "1"],
    ["chr2", "1249", "T", "G", "-1"],
    ["chr2", "1374", "C", "T", "-1"],
    ["chr16", "1602", "GCA", "G", "1"],
    ["chr2", "1711", "A", "ATTG", "-1"],
]


def make_genome(rng):
    genome = {"chr16": list("".join(rng.choice(list("ACGT"), 2600))),
              "chr2": list("".join(rng.choice(list("ACGT"), 2400)))}
    for chrom, pos, ref, _, _ in ROWS:
        p = int(pos) - 1
        genome[chrom][p:p + len(ref)] = list(ref)
    return {k: "".join(v) for k, v in genome.items()}


def main():
    exe = binary_from_args(__doc__, "promoterai")
    ck = Checker()
    rng = np.random.default_rng(16)
    with tempfile.TemporaryDirectory() as tmp:
        genome = make_genome(rng)
        fasta = os.path.join(tmp, "genome.fa")
        write_fasta(fasta, [("chr2", genome["chr2"]), ("chr16", genome["chr16"])], width=70)
        model_dir = os.path.join(tmp, "promoterai_model")
        R.write_random_model(model_dir, N_BLOCKS, MODEL_DIM, [4, 3], INPUT_LENGTH, OUTPUT_LENGTH,
                             ["human", "mouse"], seed=5, head_scale=10.0)
        model = R.load_model(model_dir)
        var_file = os.path.join(tmp, "example.tsv")
        write_tsv(var_file, HEADER, ROWS)
        ref = reference_results(model, fasta, HEADER, ROWS, INPUT_LENGTH)
        for row, (raw, why) in zip(ROWS, ref):
            print("  reference " + " ".join(row) + (f"  raw {raw:+.6f}  score "
                  f"{R.format_score(R.score_from_raw(raw))}" if raw is not None else f"  {why}"))
        ck.check(all(r[0] is not None and abs(r[0]) > 1e-3 for r in ref),
                 "fixture: all six rows scorable with clearly non-zero raw")

        out1 = os.path.join(tmp, "example_scored.tsv")
        proc = run([exe, "--model_folder", model_dir, "--var_file", var_file, "--fasta_file",
                    fasta, "--input_length", INPUT_LENGTH, "--output", out1, "--raw",
                    "--threads", "2"])
        if ck.check(proc.returncode == 0, f"--raw run exit status 0 (got {proc.returncode})"):
            check_scored_table(ck, out1, HEADER, ROWS, ref, True, "--raw run")

        proc = run([exe, "--model_folder", model_dir, "--var_file", var_file, "--fasta_file",
                    fasta, "--input_length", INPUT_LENGTH])
        expected = os.path.join(tmp, "example.promoterai_model.tsv")
        if ck.check(proc.returncode == 0, f"default run exit status 0 (got {proc.returncode})"):
            check_scored_table(ck, expected, HEADER, ROWS, ref, False, "default run")

        # The same genome bgzip-compressed (htslib builds .fai and .gzi beside it): the scored
        # table must be byte-identical to the plain-FASTA run.
        bgz = os.path.join(tmp, "genome_bgz.fa.gz")
        with open(fasta, "rb") as src, open(bgz, "wb") as dst:
            subprocess.run(["bgzip", "-c"], stdin=src, stdout=dst, check=True)
        out3 = os.path.join(tmp, "example_scored_bgzip.tsv")
        proc = run([exe, "--model_folder", model_dir, "--var_file", var_file, "--fasta_file",
                    bgz, "--input_length", INPUT_LENGTH, "--output", out3, "--raw"])
        if ck.check(proc.returncode == 0, f"bgzip FASTA run exit status 0 (got {proc.returncode})"):
            with open(out1, "rb") as a, open(out3, "rb") as b:
                ck.check(a.read() == b.read(), "bgzip FASTA: output identical to the plain FASTA's")
            ck.check(os.path.exists(bgz + ".fai") and os.path.exists(bgz + ".gzi"),
                     "bgzip FASTA: .fai and .gzi indexes built")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
