"""`psynth`'s expression-outlier table (outliers.tsv, tools/psynth.c, docs/training.md): the rows
the demo fine-tunes on must be what the documentation says, read back with pyfaidx.

Fixture: `psynth --n_chroms 3 --chrom_length 60000 --n_tss 90 --n_tracks 2 --seed 3`.
Checks (exact unless a band is given):
 1. Header `chrom pos ref alt strand z in_cds spliceai p_under p_over gene`; every row has 11
    fields; in_cds 0, spliceai 0.01; gene names a TSS of tss.tsv on the row's chromosome, and strand
    is that TSS's strand.
 2. ref is the genome base at pos (1-based) read with pyfaidx, upper-cased, one of A/C/G/T; alt is
    A/C/G/T and differs from ref.
 3. Planted rows (p_under 0.001, p_over 0.5): the base lies inside an occurrence, in the genome, of
    one of psynth's motifs (either orientation) within [-300 - 9, +100 + 9] of its TSS (the motifs
    are planted at offsets -300..+100 in transcript orientation, the longest is 9 bp); alt breaks
    every such occurrence covering the base. Others (p 0.5, 0.5) lie within [-300, +100] of the
    TSS in transcript orientation.
 4. Effect sizes, from z: planted rows in a TATA box (TATAAAAG) have mean -2, other planted rows
    -1, the rest 0, each within 5 standard errors (sd 0.25); and every group has >= 20 rows.
 5. Determinism: a second run with the same seed writes the same bytes.
Usage: /usr/bin/python3 tests/test_psynth.py --bin BUILD_DIR
"""
import csv
import filecmp
import os
import sys
import tempfile

import numpy as np
import pyfaidx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import harness as H  # noqa: E402

# The planted motifs, as docs/training.md and tools/psynth.c list them.
MOTIFS = ["TATAAAAG", "GGGGCGGGG", "GCCAATCA", "TGACTCAT", "CACGTGAC"]
COLS = ["chrom", "pos", "ref", "alt", "strand", "z", "in_cds", "spliceai", "p_under", "p_over",
        "gene"]
ARGS = ["--n_chroms", 3, "--chrom_length", 60000, "--n_tss", 90, "--n_tracks", 2, "--seed", 3]


def revcomp(s):
    return s[::-1].translate(str.maketrans("ACGT", "TGCA"))


def occurrences(seq, q, lo, hi):
    """(motif index, start) of motif occurrences in seq[lo:hi] (either orientation) covering q."""
    out = []
    for m, motif in enumerate(MOTIFS):
        for word in {motif, revcomp(motif)}:
            for s in range(max(lo, q - len(word) + 1), min(q, hi - len(word)) + 1):
                if seq[s:s + len(word)] == word:
                    out.append((m, s, word))
    return out


def main():
    psynth = H.exe_from_args(__doc__, "psynth")
    ck = H.Checker()
    with tempfile.TemporaryDirectory() as tmp:
        out, out2 = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        for o in (out, out2):
            p = H.run([psynth, "--out", o, *ARGS])
            if not ck.check(p.returncode == 0, f"psynth --out {o}: exit 0"):
                return ck.finish()
        with open(os.path.join(out, "outliers.tsv")) as f:
            rows = list(csv.reader(f, delimiter="\t"))
        with open(os.path.join(out, "tss.tsv")) as f:
            tss = {r["gene_id"]: r for r in csv.DictReader(f, delimiter="\t")}
        fa = pyfaidx.Fasta(os.path.join(out, "genome.fa"), sequence_always_upper=True)
        genome = {c: str(fa[c][:]) for c in fa.keys()}

        ck.check(rows[0] == COLS, f"1. header {rows[0]}")
        body = rows[1:]
        bad_shape = [r for r in body if len(r) != 11 or r[6] != "0" or r[7] != "0.01"]
        ck.check(not bad_shape, f"1. 11 fields, in_cds 0, spliceai 0.01 on all {len(body)} rows "
                                f"(bad: {bad_shape[:2]})")
        groups = {"tata": [], "motif": [], "other": []}
        errs = {2: [], 3: [], 1: []}
        for r in body:
            chrom, pos, ref, alt, strand, z, _, _, p_under, p_over, gene = r
            pos, strand = int(pos), int(strand)
            t = tss.get(gene)
            if t is None or t["chrom"] != chrom or int(t["strand"]) != strand:
                errs[1].append(r)
                continue
            seq, q = genome[chrom], pos - 1
            if ref != seq[q] or ref not in "ACGT" or alt not in "ACGT" or alt == ref:
                errs[2].append(r)
                continue
            tp = int(t["pos"]) - 1
            off = (q - tp) * strand                     # transcript orientation
            if (p_under, p_over) == ("0.001", "0.5"):
                lo, hi = (tp - 309, tp + 110) if strand > 0 else (tp - 110, tp + 309)
                occ = occurrences(seq, q, lo, hi)
                mutated = seq[:q] + alt + seq[q + 1:]
                broken = all(mutated[s:s + len(w)] != w for _, s, w in occ)
                if not occ or not broken:
                    errs[3].append(r)
                    continue
                groups["tata" if any(m == 0 for m, _, _ in occ) else "motif"].append(float(z))
            elif (p_under, p_over) == ("0.5", "0.5"):
                if not -300 <= off <= 100:
                    errs[3].append(r)
                    continue
                groups["other"].append(float(z))
            else:
                errs[3].append(r)
        ck.check(not errs[1], f"1. gene and strand match tss.tsv (bad: {errs[1][:2]})")
        ck.check(not errs[2], f"2. ref = genome base (pyfaidx), alt != ref (bad: {errs[2][:2]})")
        ck.check(not errs[3], f"3. planted rows break a motif near their TSS, others lie in "
                              f"[-300, +100] (bad: {errs[3][:2]})")
        for name, want in (("tata", -2.0), ("motif", -1.0), ("other", 0.0)):
            z = np.array(groups[name])
            se = 0.25 / np.sqrt(max(len(z), 1))
            ok = len(z) >= 20 and abs(z.mean() - want) <= 5 * se
            ck.check(ok, f"4. {name}: {len(z)} rows, mean z {z.mean() if len(z) else float('nan'):.3f}"
                         f" (want {want} +- {5 * se:.3f})")
        ck.check(filecmp.cmp(os.path.join(out, "outliers.tsv"), os.path.join(out2, "outliers.tsv"),
                             shallow=False), "5. same seed, same outliers.tsv bytes")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
