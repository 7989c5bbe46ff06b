"""Variant scoring (`promoterai`) against the independent reference of REFERENCE.md section 3.

Builds a small synthetic genome (chrA 3000 bp, chrB 1500 bp, chrC 70 bp -- shorter than the
input window -- with lower-case runs and an N run) and a random model (8 blocks, D 16, output
32, input 32 + 2*radius; two heads, so only head 0 may be used; head outputs scaled to ~10 so
raws reach ~0.2 and tanh visibly matters). 46 variants: SNVs, deletions (one of 30 bp, whose N
right-padding reaches the outputs), insertions, MNVs, on strands spelled 1, -1, +, -, some
within L/2 of chromosome ends (N-padded windows), lower-case refs/alts, plus unscorable rows
(ref mismatch, alt N, alt '-', empty alt, ref '-', chromosome absent from the FASTA, ref
running past the chromosome end). Extra columns sit before and between the required ones.
Run 1: `promoterai --raw --output OUT`: same rows/columns in order plus score and raw; raw vs
the float64 reference within harness.RAW_ATOL; printed score equal to the reference's except
one-digit differences at a rounding boundary; unscorable rows have empty score and raw, and a
stderr warning names each of them (by its pos, row number or line number).
Run 2: no --raw, no --output, relative paths and a model folder given with a trailing slash:
output lands at <dir of var file>/<stem>.<model folder name><suffix> with only `score` added.
Usage: /usr/bin/python3 tests/test_score_ref.py --bin BUILD_DIR
"""

import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref as R  # noqa: E402
from harness import (RAW_ATOL, Checker, check_scored_table, check_warnings,  # noqa: E402
                     reference_results, binary_from_args, run, write_fasta, write_tsv)

N_BLOCKS, MODEL_DIM, OUTPUT_LENGTH = 8, 16, 32
INPUT_LENGTH = OUTPUT_LENGTH + 2 * R.receptive_radius(N_BLOCKS)   # 96
HEADER = ["gene", "chrom", "pos", "var_id", "strand", "ref", "alt", "note"]


def make_genome(rng):
    def rand(n):
        return "".join(rng.choice(list("ACGT"), n))
    a = list(rand(3000))
    a[500:700] = list("".join(a[500:700]).lower())
    a[1200:1260] = ["N"] * 60
    b = list(rand(1500))
    b[100:200] = list("".join(b[100:200]).lower())
    b[1450:1500] = list("".join(b[1450:1500]).lower())
    c = rand(70)
    return {"chrA": "".join(a), "chrB": "".join(b), "chrC": c}


def make_variants(rng, genome):
    """Rows as lists of strings in HEADER order."""
    strands = ["1", "-1", "+", "-"]
    rows = []

    def other_base(base):
        return str(rng.choice([x for x in "ACGT" if x != base.upper()]))

    def add(chrom, pos, ref, alt, strand=None, note="ok"):
        strand = strand if strand is not None else strands[len(rows) % 4]
        rows.append([f"G{len(rows) % 5}", chrom, str(pos), f"v{len(rows)}", strand, ref, alt,
                     note])

    def g(chrom, pos, n=1):
        return genome[chrom][pos - 1:pos - 1 + n]

    def rand_pos(chrom, lo=60, margin=60):
        while True:
            p = int(rng.integers(lo, len(genome[chrom]) - margin))
            if "N" not in genome[chrom][p - 10:p + 10]:
                return p

    # SNVs anywhere, ref in genome case or upper case.
    for k in range(10):
        chrom = "chrA" if k % 2 == 0 else "chrB"
        p = rand_pos(chrom)
        ref = g(chrom, p)
        add(chrom, p, ref if k % 3 else ref.upper(), other_base(ref), note="snv")
    # SNVs inside lower-case runs, ref given upper case, alt lower case.
    add("chrA", 600, g("chrA", 600).upper(), other_base(g("chrA", 600)).lower(), note="lower run")
    add("chrB", 150, g("chrB", 150).upper(), other_base(g("chrB", 150)), note="lower run")
    # Next to the N run.
    add("chrA", 1199, g("chrA", 1199), other_base(g("chrA", 1199)), note="before N run")
    add("chrA", 1261, g("chrA", 1261), other_base(g("chrA", 1261)), note="after N run")
    # Deletions (ref longer).
    for k, n in enumerate((2, 3, 5, 8, 31)):
        chrom = "chrA" if k % 2 else "chrB"
        p = rand_pos(chrom)
        ref = g(chrom, p, n)
        add(chrom, p, ref, ref[0], note=f"del{n - 1}")
    # Insertions (alt longer).
    for k, n in enumerate((1, 2, 6, 30)):
        chrom = "chrB" if k % 2 else "chrA"
        p = rand_pos(chrom)
        ref = g(chrom, p)
        add(chrom, p, ref, ref + "".join(rng.choice(list("ACGT"), n)), note=f"ins{n}")
    # MNVs.
    for n in (2, 3):
        p = rand_pos("chrA")
        ref = g("chrA", p, n)
        add("chrA", p, ref, "".join(other_base(c) for c in ref), note=f"mnv{n}")
    # Near chromosome ends (within L/2 = 48): N-padded windows.
    for p in (1, 2, 20, 47, 48, 49):
        add("chrA", p, g("chrA", p), other_base(g("chrA", p)), note="start")
    for p in (1500, 1499, 1480, 1453):
        add("chrB", p, g("chrB", p), other_base(g("chrB", p)), note="end")
    add("chrB", 1496, g("chrB", 1496, 5), g("chrB", 1496), note="del at end")
    add("chrA", 3, g("chrA", 3), g("chrA", 3) + "GATTACA", note="ins at start")
    # Chromosome shorter than the window: padded on both sides.
    add("chrC", 35, g("chrC", 35), other_base(g("chrC", 35)), "1", note="short chrom")
    add("chrC", 10, g("chrC", 10, 3), g("chrC", 10), "-1", note="short chrom del")
    # Unscorable rows.
    p = rand_pos("chrA")
    add("chrA", p, other_base(g("chrA", p)), g("chrA", p), note="ref mismatch")
    p = rand_pos("chrB")
    add("chrB", p, g("chrB", p), "N", note="alt N")
    p = rand_pos("chrA")
    add("chrA", p, g("chrA", p), "-", note="alt dash")
    p = rand_pos("chrB")
    add("chrB", p, g("chrB", p), "", note="alt empty")
    p = rand_pos("chrA")
    add("chrA", p, "-", "ACG", note="ref dash")
    add("chrZ", 100, "A", "C", note="chrom absent")
    add("chrB", 1499, g("chrB", 1499, 2) + "A", g("chrB", 1499), note="ref past end")
    return rows


def main():
    exe = binary_from_args(__doc__, "promoterai")
    ck = Checker()
    rng = np.random.default_rng(2024)
    with tempfile.TemporaryDirectory() as tmp:
        genome = make_genome(rng)
        fasta = os.path.join(tmp, "genome.fa")
        write_fasta(fasta, [("chrA", genome["chrA"], "synthetic A"), ("chrB", genome["chrB"]),
                            ("chrC", genome["chrC"])])
        model_dir = os.path.join(tmp, "mymodel")
        R.write_random_model(model_dir, N_BLOCKS, MODEL_DIM, [4, 3], INPUT_LENGTH, OUTPUT_LENGTH,
                             ["human", "mouse"], seed=31, head_scale=10.0)
        model = R.load_model(model_dir)
        rows = make_variants(rng, genome)
        os.makedirs(os.path.join(tmp, "subdir"))
        var_file = os.path.join(tmp, "subdir", "vars.tsv")
        write_tsv(var_file, HEADER, rows)
        ref = reference_results(model, fasta, HEADER, rows, INPUT_LENGTH)
        n_bad = sum(r[0] is None for r in ref)
        raws = [abs(r[0]) for r in ref if r[0] is not None]
        print(f"{len(rows)} variants, {n_bad} unscorable by the reference; |raw| range "
              f"{min(raws):.2e}..{max(raws):.2e}")
        ck.check(n_bad == 7 and min(raws) > 10 * RAW_ATOL,
                 "fixture: 7 unscorable rows and every scorable |raw| > 10 x RAW_ATOL")
        n_tanh = sum(R.format_score(R.score_from_raw(r)) != R.format_score(float(np.round(r, 4)))
                     for r in raws)
        ck.check(n_tanh >= 5, f"fixture: tanh changes the printed score of {n_tanh} rows "
                              "(so a missing tanh would be caught)")

        # Run 1: --raw and --output, absolute paths, batch smaller than the row count.
        out1 = os.path.join(tmp, "scored_raw.tsv")
        proc = run([exe, "--model_folder", model_dir, "--var_file", var_file, "--fasta_file",
                    fasta, "--input_length", INPUT_LENGTH, "--output", out1, "--raw",
                    "--threads", "2", "--batch_size", "4"])
        if ck.check(proc.returncode == 0, f"run 1 exit status 0 (got {proc.returncode})"):
            check_scored_table(ck, out1, HEADER, rows, ref, True, "run 1 (--raw)")
            check_warnings(ck, proc.stderr, HEADER, rows, ref, "run 1")

        # Run 2: default output path, relative paths, model folder with a trailing slash.
        proc = run([exe, "--model_folder", "mymodel/", "--var_file",
                    os.path.join("subdir", "vars.tsv"), "--fasta_file", "genome.fa",
                    "--input_length", INPUT_LENGTH, "--threads", "2"], cwd=tmp)
        expected = os.path.join(tmp, "subdir", "vars.mymodel.tsv")
        if ck.check(proc.returncode == 0, f"run 2 exit status 0 (got {proc.returncode})"):
            ck.check(os.path.isfile(expected),
                     "run 2 default output path subdir/vars.mymodel.tsv "
                     f"(subdir now holds {sorted(os.listdir(os.path.join(tmp, 'subdir')))})")
            check_scored_table(ck, expected, HEADER, rows, ref, False, "run 2 (default path)")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
