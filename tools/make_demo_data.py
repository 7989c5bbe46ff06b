#!/usr/bin/env python3
"""Writes the bundled demo inputs: data/demo/genome.fa (two small random chromosomes with
soft-masked runs and an N gap) and data/demo/variants.tsv (the published example table format:
SNVs and indels on both strands, refs taken from the genome). Deterministic: rerunning writes the
same bytes. Standard library only."""
import os
import random

rng = random.Random(20250101)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo")
os.makedirs(out, exist_ok=True)

chroms = {}
for name, length in (("chr1", 16000), ("chr2", 9000)):
    seq = [rng.choice("ACGT") for _ in range(length)]
    for _ in range(4):                       # soft-masked repeats
        a = rng.randrange(length - 300)
        seq[a:a + 200] = [b.lower() for b in seq[a:a + 200]]
    chroms[name] = seq
chroms["chr2"][6000:6100] = ["N"] * 100     # an assembly gap

with open(os.path.join(out, "genome.fa"), "w") as f:
    for name, seq in chroms.items():
        f.write(f">{name}\n")
        s = "".join(seq)
        for i in range(0, len(s), 60):
            f.write(s[i:i + 60] + "\n")

def ref(chrom, pos, n):
    return "".join(chroms[chrom][pos - 1:pos - 1 + n]).upper()

def other(base):
    return rng.choice([b for b in "ACGT" if b != base])

rows = []
# (chrom, pos, kind, strand, gene)
for chrom, pos, kind, strand, gene in (
        ("chr1", 2100, "snv", 1, "GENEA"), ("chr1", 2150, "snv", 1, "GENEA"),
        ("chr1", 9000, "del", -1, "GENEB"), ("chr2", 3000, "ins", -1, "GENEC"),
        ("chr2", 3020, "snv", -1, "GENEC"), ("chr2", 7500, "del", 1, "GENED")):
    if kind == "snv":
        r = ref(chrom, pos, 1)
        a = other(r)
    elif kind == "del":
        r = ref(chrom, pos, 4)
        a = r[0]
    else:
        r = ref(chrom, pos, 1)
        a = r + "".join(rng.choice("ACGT") for _ in range(3))
    rows.append((chrom, pos, r, a, strand, gene))

with open(os.path.join(out, "variants.tsv"), "w") as f:
    f.write("chrom\tpos\tref\talt\tstrand\tgene\n")
    for r in rows:
        f.write("\t".join(map(str, r)) + "\n")
