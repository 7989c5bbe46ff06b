"""The released score table (`pprecompute`, REFERENCE.md section 6) end to end, against the naive
scorer (`promoterai --raw`, two full windows per variant), an expected table computed here in
Python from the FASTA and the TSS table, the float64 reference (tests/ref/promoterai_ref.py) on a
sample of rows, and Debian's `tabix`.

Fixture (fresh temporary directory): a FASTA written by
harness.write_fasta in the order chr2 (3000 bp), chr1 (2500 bp), chrS (70 bp), i.e. not sorted,
random bases with lower-case stretches, N runs (one covers a whole TSS window, another part of
one) and single IUPAC letters (R, y, n) inside TSS windows. Models (write_random_model; L =
input_length, O = output_length, radius = 2 * sum of the block dilations):
  m1: N 4,  D 8,  O 16, L 32  = O + 2 radius, one head of 2 tracks
  m2: N 8,  D 12, O 24, L 88  = O + 2 radius, one head of 3 tracks
  m3: N 10, D 16, O 32, L 160 = O + 2 radius, heads [3, 2] (only head 0 is scored)
  m5: N 6,  D 10, O 48, L 88  > O + 2 radius = 80 (a crop wider than the receptive radius)
  m6: N 8,  D 12, O 24, L 88, another seed
head_scale (40, m6 30) makes |raw| ~0.03..1, median ~0.2 (tanh and the 4-decimal rounding
matter; the test prints the spread). Two TSS tables:
  T1 (columns note, transcript_id, chrom, strand, gene, tss_pos, gene_id; rows shuffled, chr1
     before chr2): TSSs on both strands spelled +, -, 1, -1; within the flank of both ends of
     chr2 and chrS (positions clipped) and within L/2 of them (N-padded windows); three rows at
     one position (transcript ids ENST10 and ENST9 on +, ENST10 on -: ordered ENST10/-1,
     ENST10/1, ENST9/1 -- transcript_id compared as a string, then strand -1 before 1); two rows
     differing only in gene_id (G10 before G2); TSSs 10 bp apart (interleaved positions); a row
     with empty gene, gene_id and transcript_id; a TSS inside an N run (emits nothing); an exact
     duplicate of an earlier row; a row on chromosome chrUn, absent from the FASTA.
  T2 (columns chrom, pos, strand only: the `pos` spelling, every optional column missing).
Flank 20, except the resume fixture.

Checks and tolerances:
 1. Exactness (runs: m1 on T2 -np 1; m2 on T1 -np 2; m3 on T1 -np 1 and -np 2; m5 on T1;
    m2 + m5 on T1 -np 2; m2, m5, m6 on T2), all with --raw:
    (a) raw of every row vs `promoterai --raw` on the same variant (chrom, pos, ref, alt, the
        TSS's strand): |diff| <= harness.RAW_ATOL = 1e-5 absolute (the requirement for the
        precomputed table; both sides are float32 forward passes whose raws agree with the float64
        reference to ~1e-7 at these head scales, see harness.py, so 1e-5 is 100x headroom while a
        wrong window, strand, crop or track is off by ~1e-2 or more);
    (b) raw is printed %.9g (the text re-formats to itself);
    (c) each score column equals '%.4f' % tanh(round(own raw, 4)) computed here from the same
        row's printed raw, except a one-step difference where that raw lies within 1e-6 of a
        4th-decimal rounding tie or the tanh within 1e-6 of a printing tie (the program rounds its
        unprinted value; 9 significant digits are far finer than 1e-6). "-0.0000" and "0.0000"
        are taken as equal (the sign of a zero score carries nothing; promoterai prints 0.0000);
    (d) each score agrees with promoterai's printed score, except one step apart where the two
        raws round to different 4th decimals (they straddle a tie) or tanh sits within 1e-6 of a
        printing tie; for the run without --raw, where promoterai's raw lies within RAW_ATOL of
        a tie;
    (e) a sample of 24 distinct variants per model: raw vs the float64 reference within RAW_ATOL;
    (f) two models: `score` = (score_x + score_y) / 2 exactly, written with 5 decimals (decimal
        arithmetic on the printed values; 0.0012 and 0.0013 give 0.00125); three models: `score`
        within half a unit of its own last printed digit of the mean of the printed model scores
        (the contract fixes the mean, not its digits).
 2. Rows: header exact (`gene_id chrom pos ref alt strand gene transcript_id tss_pos
    strand_adj_dist_tss`, then score columns: `score`; `score_x score_y score`; `score_<folder
    basename>` x3 then `score`; then raw, raw_x raw_y or raw_<basename>); the first ten columns
    of every row equal, in order, the Python expectation (for each kept TSS row each pos in
    [tss_pos - 20, tss_pos + 20] on the chromosome with an A/C/G/T base, alts in A, C, G, T order
    other than ref; sorted by FASTA order, pos, tss_pos, transcript_id, strand, gene_id, gene,
    input line, alt). The fixture is checked to make the ambiguous readings (a missing id
    compared as '' or '.') give the same order. The summary line reports the skipped
    absent-chromosome rows, duplicate rows and non-ACGT positions with the expected counts, and a
    warning line names the table and line of the absent-chromosome row and of the duplicate.
    After each success the output folder holds exactly OUT and OUT.tbi (no OUT.parts).
 3. Ranks and models: m3 on T1 with -np 1 and -np 2 give byte-identical OUT and OUT.tbi, and
    -np 3 on a fresh copy of the FASTA without .fai (the ranks must index it) the same OUT; m1 on
    T2 with -np 2 and a bgzip-compressed FASTA the OUT of -np 1 with the plain FASTA; the
    -np 2 run without --raw gives the -np 1 table minus its raw column; the two-model run's
    score_x, score_y, raw_x, raw_y equal (as text) the single-model runs' score and raw.
 4. Format: OUT starts with a BGZF block and ends with the BGZF EOF block, python gzip reads
    it; `tabix -l` lists chr2, chr1, chrS; the OUT.tbi header says generic format, chrom column
    2, pos column 3 (end column 0 or 3), 1 line skipped; `tabix OUT chrom:a-b` returns exactly
    the rows with that chrom and a <= pos <= b, in file order, for seven ranges (clipped
    chromosome ends, a whole short chromosome, an empty N run, one base).
 5. Resume: a bigger job (N 12, D 32, O 64, L 320, 24 TSSs, flank 150, -np 2 --threads 1, a few
    seconds) is SIGKILLed in rank 1 (found through /proc among mpirun's session) as soon as some
    file under OUT.parts/ has grown since it was first seen (polled every 10 ms; a file written
    whole at once, such as a job description, is not finished work); mpirun must exit
    non-zero, no OUT may exist, and OUT.parts/ must still hold that work (what the rerun resumes
    from). Rerunning the same command exits 0 and gives OUT and OUT.tbi byte-identical to an
    uninterrupted run's, and OUT.parts/ is gone. A kill that comes after the job finished is a
    FAIL of the fixture, not a pass. (The kill may tear a record: the rerun must cope.) The
    rerun's line saying how much was already done, if any, is printed.
 6. Bad input (each in its own folder; -np 2 runs record every rank's exit status through a
    small shell wrapper, with Open MPI's orte_abort_on_non_zero_status off so that the first
    failing rank does not get the others killed before they exit on their own; the message is
    looked for in `[E ...]` error lines, the house style): models with different input_length
    (exit 1, stderr names a folder);
    a model with L < O + 2 radius (exit 1, names it and says input_length/radius); --out under a
    missing directory and under a regular file (exit 1, names the path; running as root, a
    read-only directory would not stop the write); TSS table without a strand column (exit 1,
    names `strand`); every TSS row on an absent chromosome (exit 1); an existing OUT without
    --overwrite (exit 2, OUT untouched) and with --overwrite (exit 0); OUT.parts left by a job
    with another --flank (exit 2, names --flank, its part file kept; with --overwrite: exit 0
    and the same table as a fresh run); --out naming a directory (exit 2); no --out (exit 2);
    --device cuda without a GPU (exit 2, message mentions cuda). No error leaves an OUT; every
    rank exits with the expected status (a rank killed before it exits, as by MPI_Abort, fails
    this). A leftover OUT.parts/ is only noted (the contract asks for none after success only).

Every C run gets --threads 1 and OMP_NUM_THREADS=1 (2-core machine). torch runs one thread.
The whole script takes ~20-30 s on the 2-core machine (two copies at once: ~28 s each).
Usage: /usr/bin/python3 tests/test_precompute.py --bin BUILD_DIR
"""

import gzip
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import harness as H  # noqa: E402
import promoterai_ref as R  # noqa: E402
from harness import MPI_ENV, RAW_ATOL, Checker, mpirun_prefix, run_group  # noqa: E402

FLANK = 20
ENV1 = {"OMP_NUM_THREADS": "1"}
KEY_COLS = ["gene_id", "chrom", "pos", "ref", "alt", "strand", "gene", "transcript_id",
            "tss_pos", "strand_adj_dist_tss"]
OWN_TIE_TOL = 1e-6
N_REF_SAMPLE = 24

# name -> (num_blocks, model_dim, output_length, output_dims, extra input length, head_scale,
#          seed)
MODELS = {
    "m1": (4, 8, 16, [2], 0, 40.0, 1),
    "m2": (8, 12, 24, [3], 0, 40.0, 2),
    "m3": (10, 16, 32, [3, 2], 0, 40.0, 3),
    "m5": (6, 10, 48, [3], 8, 40.0, 5),
    "m6": (8, 12, 24, [3], 0, 30.0, 6),
}
RESUME_MODEL = (12, 32, 64, [4], 0, 20.0, 12)
RESUME_FLANK = 150
RESUME_N_TSS = 24


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------

def make_genome(tmp, rng):
    """FASTA order chr2, chr1, chrS. Returns (path, {name: seq}, [names in FASTA order])."""
    chr2 = list(H.random_genome_seq(rng, 3000, lower_runs=[(1770, 1840), (2950, 3000)],
                                    n_runs=[(1190, 1198)]))
    for pos, letter in ((1205, "R"), (1210, "y"), (1212, "n"), (1805, "n"), (15, "K")):
        chr2[pos - 1] = letter                     # 1-based positions inside TSS windows
    chr1 = list(H.random_genome_seq(rng, 2500, lower_runs=[(250, 320)], n_runs=[(1470, 1530)]))
    chrs = list(H.random_genome_seq(rng, 70, lower_runs=[(40, 52)]))
    genome = {"chr2": "".join(chr2), "chr1": "".join(chr1), "chrS": "".join(chrs)}
    order = ["chr2", "chr1", "chrS"]
    path = os.path.join(tmp, "genome.fa")
    H.write_fasta(path, [(c, genome[c], "random test sequence") for c in order])
    return path, genome, order


T1_HEADER = ["note", "transcript_id", "chrom", "strand", "gene", "tss_pos", "gene_id"]


def t1_rows(rng):
    """TSS table T1 as dicts (see the module docstring), shuffled; the duplicate comes last but
    one and the absent-chromosome row somewhere in the middle."""
    def r(chrom, pos, strand, gene="", gene_id="", tx="", note="x"):
        return {"note": note, "transcript_id": tx, "chrom": chrom, "strand": strand,
                "gene": gene, "tss_pos": str(pos), "gene_id": gene_id}
    rows = [
        r("chr2", 8, "+", "GA", "ENSG01", "ENST01", "near start, clipped"),
        r("chr2", 60, "-", "GB", "ENSG02", "ENST02", "within L/2 of start"),
        r("chr2", 500, "+", "GC", "ENSG03", "ENST10", "same pos 1"),
        r("chr2", 500, "+", "GC", "ENSG03", "ENST9", "same pos 2"),
        r("chr2", 500, "-", "GC", "ENSG03", "ENST10", "same pos, other strand"),
        r("chr2", 510, "1", "GD", "ENSG04", "ENST04", "interleaved"),
        r("chr2", 1200, "-1", "GE", "ENSG05", "ENST05", "N run and IUPAC"),
        r("chr2", 1800, "+", "GF", "ENSG06", "ENST06", "lower case"),
        r("chr2", 2990, "-", "GG", "ENSG07", "ENST07", "near end, clipped"),
        r("chr2", 2940, "+", "GH", "ENSG08", "ENST08", "within L/2 of end"),
        r("chr1", 700, "-", "", "", "", "missing gene fields"),
        r("chr1", 300, "+", "GI", "G2", "T300", "gene_id tie 1"),
        r("chr1", 300, "+", "GI", "G10", "T300", "gene_id tie 2"),
        r("chr1", 2000, "-1", "GJ", "ENSG10", "ENST11", "plain"),
        r("chr1", 1500, "+", "GK", "ENSG11", "ENST12", "inside an N run"),
        r("chrS", 35, "+", "GL", "ENSG12", "ENST13", "short chromosome, both ends"),
        r("chrS", 3, "-", "GM", "ENSG13", "ENST14", "short chromosome start"),
    ]
    order = list(rng.permutation(len(rows)))
    # chr1 rows first in the file (FASTA order puts chr2 first).
    order.sort(key=lambda k: rows[k]["chrom"] != "chr1")
    rows = [rows[k] for k in order]
    absent = r("chrUn", 1000, "+", "GX", "ENSG99", "ENST99", "absent chromosome")
    rows.insert(len(rows) // 2, absent)
    dup_of = next(k for k, x in enumerate(rows) if x["transcript_id"] == "ENST04")
    rows.insert(len(rows) - 1, dict(rows[dup_of]))
    return rows


T2_HEADER = ["chrom", "pos", "strand"]


def t2_rows():
    def r(chrom, pos, strand):
        return {"chrom": chrom, "pos": str(pos), "strand": strand}
    return [r("chr1", 105, "-1"), r("chr1", 100, "+"), r("chrS", 60, "-"),
            r("chr2", 1500, "1"), r("chr2", 1500, "-"), r("chr2", 2300, "+")]


def write_table(path, header, rows):
    H.write_tsv(path, header, [[x[h] for h in header] for x in rows])


def strand_int(s):
    return {"+": 1, "1": 1, "-": -1, "-1": -1}[s.strip()]


def expected_table(genome, order, header, rows, flank, missing=""):
    """The expected rows (first ten columns, as text) in order, plus the counts of the rows
    skipped. missing: the sort key used for a missing id ('' or '.'; the fixture must not depend
    on it)."""
    pos_col = "tss_pos" if "tss_pos" in header else "pos"
    rank = {c: k for k, c in enumerate(order)}
    seen = set()
    n_absent = n_dup = n_nonacgt = n_offchrom = 0
    absent_lines, dup_lines = [], []
    items = []
    for k, row in enumerate(rows):
        line = k + 2                               # header is line 1
        fields = tuple(row[h] for h in header)
        if row["chrom"] not in genome:
            n_absent += 1
            absent_lines.append(line)
            continue
        if fields in seen:
            n_dup += 1
            dup_lines.append(line)
            continue
        seen.add(fields)
        seq = genome[row["chrom"]]
        tss = int(row[pos_col])
        s = strand_int(row["strand"])
        gid, gene, tx = (row.get(c, "") or "" for c in ("gene_id", "gene", "transcript_id"))
        for pos in range(tss - flank, tss + flank + 1):
            if pos < 1 or pos > len(seq):
                n_offchrom += 1
                continue
            ref = seq[pos - 1].upper()
            if ref not in "ACGT":
                n_nonacgt += 1
                continue
            for a_idx, alt in enumerate("ACGT"):
                if alt == ref:
                    continue
                key = (rank[row["chrom"]], pos, tss, tx or missing, s, gid or missing,
                       gene or missing, line, a_idx)
                cols = [gid or ".", row["chrom"], str(pos), ref, alt, str(s), gene or ".",
                        tx or ".", row[pos_col], str((pos - tss) * s)]
                items.append((key, cols))
    items.sort(key=lambda x: x[0])
    counts = {"absent": n_absent, "duplicate": n_dup, "nonacgt": n_nonacgt,
              "offchrom": n_offchrom, "absent_lines": absent_lines, "dup_lines": dup_lines}
    return [c for _, c in items], counts


def make_model(tmp, name, spec):
    N, D, O, dims, extra, scale, seed = spec
    L = O + 2 * R.receptive_radius(N) + extra
    folder = os.path.join(tmp, "models", name)
    R.write_random_model(folder, N, D, dims, L, O, [f"h{j}" for j in range(len(dims))],
                         seed=seed, head_scale=scale)
    return folder, L


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------

def session_procs(sid):
    """pids of the processes in session sid (a run_group/Popen child's session)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                st = fh.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if int(fields[3]) == sid and int(d) != sid:
            out.append(int(d))
    return out


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def proc_env(pid, name):
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            for item in fh.read().split(b"\0"):
                if item.startswith(name.encode() + b"="):
                    return item.split(b"=", 1)[1].decode()
    except OSError:
        pass
    return None


# The CPU unless a caller says otherwise (tests/test_gpu_precompute.py): on a machine with a GPU,
# pprecompute's default --device auto would pick it.
DEVICE_ARGS = ["--device", "cpu"]


class Runner:
    def __init__(self, exe, tmp):
        self.exe, self.tmp = exe, tmp
        self.wrapper = os.path.join(tmp, "rankrc.sh")
        with open(self.wrapper, "w") as fh:
            # Records each rank's exit status (Open MPI sets OMPI_COMM_WORLD_RANK).
            fh.write('#!/bin/sh\nrcdir="$1"; shift\n"$@"\nrc=$?\n'
                     'echo $rc > "$rcdir/rc.$OMPI_COMM_WORLD_RANK"\nexit $rc\n')
        os.chmod(self.wrapper, 0o755)

    def args(self, tss, fasta, models, out, extra=()):
        return [self.exe, "--tss_file", tss, "--fasta_file", fasta, "--model_folder", *models,
                "--out", out, "--threads", "1", *DEVICE_ARGS, *extra]

    def run(self, tss, fasta, models, out, extra=(), ranks=0, timeout=180, rank_codes=False,
            argv=None):
        """ranks 0: no mpirun. Returns a CompletedProcess with wall and rank_codes (a list, one
        per rank, None for a rank that recorded nothing) when rank_codes."""
        argv = argv if argv is not None else self.args(tss, fasta, models, out, extra)
        rcdir = None
        if ranks and rank_codes:
            rcdir = tempfile.mkdtemp(prefix="rc", dir=self.tmp)
            argv = [self.wrapper, rcdir] + argv
        cmd = (mpirun_prefix(ranks) if ranks else []) + argv
        env = dict(ENV1, **MPI_ENV) if ranks else dict(ENV1)
        if rcdir:
            # By default mpirun kills the other ranks as soon as one exits non-zero, before
            # they can record a status; with this off every rank runs to its own exit (and
            # mpirun's own status no longer reflects the ranks', so only the recorded ones count).
            env["OMPI_MCA_orte_abort_on_non_zero_status"] = "0"
        t0 = time.time()
        p = run_group(cmd, timeout=timeout, env_extra=env, quiet=True)
        p.wall = time.time() - t0
        if rcdir:
            codes = []
            for k in range(ranks):
                f = os.path.join(rcdir, f"rc.{k}")
                codes.append(int(open(f).read().strip()) if os.path.isfile(f) else None)
            p.rank_codes = codes
        return p


def show_err(p, n=14):
    for line in p.stderr.strip().splitlines()[-n:]:
        print("  stderr: " + line)


def last_err(p):
    lines = p.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def read_out(path):
    with gzip.open(path, "rt") as fh:
        text = fh.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return text, [ln.split("\t") for ln in lines]


def naive_scores(exe_promoterai, tmp, tag, folder, L, fasta, table_rows):
    """promoterai --raw on the distinct variants of the expected rows. Returns
    {(chrom, pos, alt, strand): (score text, raw float)}."""
    variants = {}
    for cols in table_rows:
        key = (cols[1], cols[2], cols[4], cols[5])
        variants.setdefault(key, [cols[1], cols[2], cols[3], cols[4], cols[5]])
    var = os.path.join(tmp, f"naive_{tag}.tsv")
    out = os.path.join(tmp, f"naive_{tag}.out.tsv")
    H.write_tsv(var, ["chrom", "pos", "ref", "alt", "strand"], list(variants.values()))
    p = run_group([exe_promoterai, "--model_folder", folder, "--var_file", var, "--fasta_file",
                   fasta, "--input_length", str(L), "--raw", "--output", out, "--threads", "1",
                   "--device", "cpu", "--quiet"], timeout=300, env_extra=ENV1, quiet=True)
    if p.returncode != 0:
        show_err(p)
        return None
    res = {}
    rows = H.read_tsv_lines(out)
    hdr = rows[0]
    ci, pi, ai, si = (hdr.index(c) for c in ("chrom", "pos", "alt", "strand"))
    sc, rc = hdr.index("score"), hdr.index("raw")
    for r in rows[1:]:
        res[(r[ci], r[pi], r[ai], r[si])] = (r[sc], float(r[rc]) if r[rc] else None)
    return res


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------

def score_text(raw):
    return "%.4f" % np.tanh(np.round(np.float64(raw), 4))


def zero_norm(s):
    return "0.0000" if s == "-0.0000" else s


def one_step(a, b):
    try:
        return abs(round((float(a) - float(b)) * 1e4)) == 1 and len(a.split(".")[-1]) == 4
    except ValueError:
        return False


def near_tie(raw, raw_tol, print_tol):
    return R.score_near_boundary(raw, raw_tol, print_tol)


def score_names(names):
    if len(names) == 1:
        return ["score"], ["raw"]
    if len(names) == 2:
        return ["score_x", "score_y"], ["raw_x", "raw_y"]
    return [f"score_{n}" for n in names], [f"raw_{n}" for n in names]


def want_header(names, with_raw):
    sc, rw = score_names(names)
    hdr = KEY_COLS + sc + (["score"] if len(names) > 1 else [])
    return hdr + (rw if with_raw else [])


def check_table(ck, label, out, names, exp_rows, naive, ref_models, genome, with_raw=True):
    """Checks 1 and 2 on one output table. names: model folder basenames; naive: per model
    {variant key: (score, raw)} or None; ref_models: per model RefModel (for the float64
    sample). Returns the parsed rows (or None)."""
    if not ck.check(os.path.isfile(out), f"{label}: OUT exists"):
        return None
    try:
        _, table = read_out(out)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        ck.check(False, f"{label}: python gzip reads OUT ({e})")
        return None
    header, body = table[0], table[1:]
    want = want_header(names, with_raw)
    ck.check(header == want, f"{label}: header {want} (got {header})")
    if header != want:
        return None
    n = len(names)
    sc_cols, raw_cols = score_names(names)
    width = len(want)
    got_keys = [r[:10] for r in body]
    bad_width = [k for k, r in enumerate(body) if len(r) != width]
    first_diff = next((k for k, (a, b) in enumerate(zip(got_keys, exp_rows)) if a != b), None)
    detail = ""
    if first_diff is not None:
        detail = f"; first difference at data row {first_diff + 1}: got {got_keys[first_diff]} " \
                 f"want {exp_rows[first_diff]}"
    ck.check(len(body) == len(exp_rows) and first_diff is None and not bad_width,
             f"2. {label}: {len(exp_rows)} rows, first ten columns equal the expected rows in "
             f"order (got {len(body)} rows, {len(bad_width)} with a width other than {width}"
             f"{detail})")
    if bad_width:
        return None
    # Per model columns.
    col = {h: i for i, h in enumerate(header)}
    for m in range(n):
        name, scn = names[m], sc_cols[m]
        raws = []
        fmt_bad, own_bad, naive_bad, raw_bad, naive_missing = [], [], [], [], []
        n_own_tie = n_naive_tie = 0
        max_err = 0.0
        for k, r in enumerate(body):
            score = r[col[scn]]
            raw_txt = r[col[raw_cols[m]]] if with_raw else None
            raw = None
            if with_raw:
                try:
                    raw = float(raw_txt)
                    if "%.9g" % raw != raw_txt:
                        fmt_bad.append((k + 1, raw_txt))
                except ValueError:
                    fmt_bad.append((k + 1, raw_txt))
                raws.append(raw if raw is not None else float("nan"))
            if raw is not None:
                want_s = score_text(raw)
                if zero_norm(score) != zero_norm(want_s):
                    if near_tie(raw, OWN_TIE_TOL, OWN_TIE_TOL) and one_step(score, want_s):
                        n_own_tie += 1
                    else:
                        own_bad.append(f"row {k + 1}: {scn} {score!r}, own raw {raw_txt} gives "
                                       f"{want_s!r}")
            if naive is not None and naive[m] is not None:
                key = (r[1], r[2], r[4], r[5])
                nv = naive[m].get(key)
                if nv is None or nv[1] is None:
                    naive_missing.append(f"row {k + 1}: promoterai gave no score for {key}")
                    continue
                n_score, n_raw = nv
                if raw is not None:
                    err = abs(raw - n_raw)
                    max_err = max(max_err, err)
                    if not err <= RAW_ATOL:
                        raw_bad.append(f"row {k + 1} {key}: raw {raw_txt} vs promoterai "
                                       f"{n_raw:.9g} (|diff| {err:.2e})")
                if zero_norm(score) != zero_norm(n_score):
                    # With the row's raw: the two raws must round differently (straddle a tie)
                    # or tanh sit at a printing tie; without it, promoterai's raw near a tie.
                    if raw is not None:
                        tie = (np.round(raw, 4) != np.round(n_raw, 4)
                               or near_tie(n_raw, 0.0, OWN_TIE_TOL))
                    else:
                        tie = near_tie(n_raw, RAW_ATOL, OWN_TIE_TOL)
                    if tie and one_step(score, n_score):
                        n_naive_tie += 1
                    else:
                        naive_bad.append(f"row {k + 1} {key}: {scn} {score!r} vs promoterai "
                                         f"{n_score!r} (raw {n_raw:.9g})")
        if with_raw:
            arr = np.abs(np.array(raws))
            rng_txt = (f"|raw| median {np.median(arr):.3g}, 90% {np.quantile(arr, 0.9):.3g}, "
                       f"max {arr.max():.3g}") if len(arr) else ""
            for b in fmt_bad[:3]:
                print(f"  raw not %.9g: row {b[0]} {b[1]!r}")
            ck.check(not fmt_bad, f"1b. {label} [{name}]: every raw printed %.9g "
                                  f"({len(fmt_bad)} not)")
            for b in own_bad[:5]:
                print("  " + b)
            ck.check(not own_bad, f"1c. {label} [{name}]: {scn} = '%.4f' % tanh(round(raw, 4)) "
                                  f"on all {len(body)} rows ({n_own_tie} one step apart within "
                                  f"{OWN_TIE_TOL} of a tie; {len(own_bad)} wrong; {rng_txt})")
        if naive is not None and naive[m] is not None:
            if with_raw:
                for b in (raw_bad + naive_missing)[:5]:
                    print("  " + b)
                ck.check(not raw_bad and not naive_missing,
                         f"1a. {label} [{name}]: raw vs promoterai --raw on all {len(body)} rows, "
                         f"max |diff| {max_err:.2e} (tol {RAW_ATOL}); {len(raw_bad)} out")
            for b in naive_bad[:5]:
                print("  " + b)
            ck.check(not naive_bad, f"1d. {label} [{name}]: {scn} equals promoterai's score "
                                    f"({n_naive_tie} one step apart at a tie; {len(naive_bad)} "
                                    f"wrong)")
        if with_raw and ref_models is not None and ref_models[m] is not None:
            check_ref_sample(ck, f"{label} [{name}]", body, raws, ref_models[m], genome)
    if n == 2:
        bad = []
        for k, r in enumerate(body):
            x, y, s = r[col["score_x"]], r[col["score_y"]], r[col["score"]]
            try:
                ok = (Decimal(s) == (Decimal(x) + Decimal(y)) / 2
                      and re.fullmatch(r"-?\d\.\d{5}", s) is not None)
            except ArithmeticError:
                ok = False
            if not ok:
                bad.append(f"row {k + 1}: score_x {x} score_y {y} score {s}")
        for b in bad[:5]:
            print("  " + b)
        ck.check(not bad, f"1f. {label}: score = (score_x + score_y) / 2 exactly, 5 decimals, "
                          f"on all rows ({len(bad)} not)")
    elif n > 2:
        bad = []
        for k, r in enumerate(body):
            vals = [Decimal(r[col[c]]) for c in sc_cols]
            s = r[col["score"]]
            try:
                d = len(s.split(".")[1]) if "." in s else 0
                ok = abs(Decimal(s) - sum(vals) / len(vals)) <= Decimal(5) / Decimal(10) ** (d + 1)
            except (ArithmeticError, IndexError):
                ok = False
            if not ok:
                bad.append(f"row {k + 1}: {[r[col[c]] for c in sc_cols]} -> score {s}")
        for b in bad[:5]:
            print("  " + b)
        ck.check(not bad, f"1f. {label}: score = mean of the {n} model scores to its printed "
                          f"precision on all rows ({len(bad)} not)")
    return body


def check_ref_sample(ck, label, body, raws, model, genome):
    """1e: a fixed sample of distinct variants vs the float64 reference."""
    rng = np.random.default_rng(len(body))
    seen, pick = set(), []
    for k in rng.permutation(len(body)):
        r = body[k]
        key = (r[1], r[2], r[4], r[5])
        if key in seen:
            continue
        seen.add(key)
        pick.append(k)
        if len(pick) == N_REF_SAMPLE:
            break
    variants = [{"chrom": body[k][1], "pos": body[k][2], "ref": body[k][3], "alt": body[k][4],
                 "strand": body[k][5]} for k in pick]
    res = R.twin_scores(model, genome, variants, model.input_length)
    errs = [abs(raws[k] - (r if r is not None else float("nan"))) for k, (r, _) in zip(pick, res)]
    worst = max(errs) if errs else float("nan")
    ck.check(bool(errs) and all(e <= RAW_ATOL for e in errs),
             f"1e. {label}: raw of {len(pick)} sampled variants vs the float64 reference, max "
             f"|diff| {worst:.2e} (tol {RAW_ATOL})")


def summary_counts(stderr):
    """The last stderr/stdout line that reports skips, parsed into {category: number}."""
    cats = {"absent": r"absent|not in the fasta|unknown chrom|missing chrom",
            "duplicate": r"duplicat",
            "nonacgt": r"non-acgt|not a/c/g/t|non acgt|n bases|ambiguous"}
    lines = [ln for ln in stderr.splitlines() if re.search(r"dupl", ln, re.I)]
    if not lines:
        return None, None
    line = lines[-1]
    got = {}
    for part in re.split(r"[,;]", line):
        for cat, pat in cats.items():
            if re.search(pat, part, re.I):
                nums = re.findall(r"(?<![\w.])(\d+)(?![\w.])", part)
                if nums:
                    got[cat] = int(nums[0])
    return line, got


def check_summary(ck, label, p, counts, tss_name):
    line, got = summary_counts(p.stderr + "\n" + p.stdout)
    want = {k: counts[k] for k in ("absent", "duplicate", "nonacgt")}
    ck.check(got is not None and all(got.get(k) == v for k, v in want.items()),
             f"2. {label}: summary line counts {want} (line: {line!r}; parsed {got})")
    lines = p.stderr.splitlines()

    def names_line(n):
        pat = re.compile(r"(?<![0-9])" + str(n) + r"(?![0-9])")
        return any(tss_name in ln and pat.search(ln.replace(tss_name, "")) for ln in lines)
    for what, key in (("absent-chromosome", "absent_lines"), ("duplicate", "dup_lines")):
        for n in counts[key]:
            ck.check(names_line(n), f"2. {label}: a stderr line names {tss_name} and line {n} "
                                    f"(the {what} row)")


def check_clean_success(ck, label, p, out):
    ok = ck.check(p.returncode == 0 and not p.timed_out,
                  f"{label}: exit 0 (rc {p.returncode}, {p.wall:.1f} s)")
    if not ok:
        show_err(p)
        return False
    folder = os.path.dirname(out)
    left = sorted(os.listdir(folder))
    want = sorted([os.path.basename(out), os.path.basename(out) + ".tbi"])
    ck.check(left == want, f"{label}: the output folder holds exactly {want} (got {left})")
    return True


def check_format_and_tabix(ck, out, table, order):
    """Check 4 on one successful OUT (parsed table incl. header)."""
    with open(out, "rb") as fh:
        data = fh.read()
    eof = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
    ck.check(data[:4] == b"\x1f\x8b\x08\x04" and data[12:16] == b"BC\x02\x00"
             and data.endswith(eof),
             "4. OUT is BGZF (first block has the BC extra field, ends with the EOF block)")
    p = run_group(["tabix", "-l", out], timeout=30, quiet=True)
    ck.check(p.returncode == 0 and p.stdout.split() == order,
             f"4. tabix -l lists {order} (got {p.stdout.split()}, rc {p.returncode})")
    try:
        with gzip.open(out + ".tbi", "rb") as fh:
            tbi = struct.unpack("<4s8i", fh.read(36))
    except (OSError, EOFError, struct.error) as e:
        tbi = (repr(e),)
    # magic, n_ref, format (0 generic), col_seq, col_beg, col_end (0: = col_beg), meta, skip
    ck.check(tbi[0] == b"TBI\x01" and tbi[1] == len(order) and tbi[2] == 0 and tbi[3:5] == (2, 3)
             and tbi[5] in (0, 3) and tbi[7] == 1,
             f"4. OUT.tbi: {len(order)} sequences, generic format, chrom column 2, pos column 3, "
             f"1 header line skipped (got magic/n_ref/format/seq/beg/end/meta/skip {tbi})")
    body = table[1:]
    ranges = [("chr2", 485, 515), ("chr2", 1, 10), ("chr2", 2975, 3000), ("chrS", 1, 70),
              ("chr1", 1460, 1540), ("chr2", 2950, 2950), ("chr1", 280, 320)]
    for chrom, a, b in ranges:
        want = ["\t".join(r) for r in body if r[1] == chrom and a <= int(r[2]) <= b]
        p = run_group(["tabix", out, f"{chrom}:{a}-{b}"], timeout=30, quiet=True)
        got = p.stdout.split("\n")[:-1] if p.stdout else []
        ck.check(p.returncode == 0 and got == want,
                 f"4. tabix {chrom}:{a}-{b}: {len(want)} rows expected, got {len(got)} "
                 f"(rc {p.returncode}{'; differ' if got != want else ''})")


# ----------------------------------------------------------------------------------------------
# Check 5: resume
# ----------------------------------------------------------------------------------------------

def grew(seen, sizes):
    """Some file of OUT.parts/ is larger now than when it was first seen (seen: name -> size at
    first sight). A file written whole at once (a job description) never counts."""
    return any(v > seen[f] for f, v in sizes.items() if f in seen)


def check_resume(ck, run, tmp, fasta, genome, order, rng):
    folder, L = make_model(tmp, "resume_model", RESUME_MODEL)
    rows = []
    chroms = ["chr2", "chr1"]
    for k in range(RESUME_N_TSS):
        c = chroms[k % 2]
        rows.append({"chrom": c, "pos": str(int(rng.integers(1, len(genome[c]) + 1))),
                     "strand": ["+", "-"][(k // 2) % 2]})
    tss = os.path.join(tmp, "resume_tss.tsv")
    write_table(tss, T2_HEADER, rows)
    extra = ["--flank", str(RESUME_FLANK)]
    d_ref, d_crash = os.path.join(tmp, "resume_ref"), os.path.join(tmp, "resume_crash")
    os.makedirs(d_ref)
    os.makedirs(d_crash)
    out_ref, out = os.path.join(d_ref, "scores.tsv.gz"), os.path.join(d_crash, "scores.tsv.gz")
    p = run.run(tss, fasta, [folder], out_ref, extra, ranks=2, timeout=300)
    if not check_clean_success(ck, f"5. uninterrupted resume fixture (-np 2, {RESUME_N_TSS} TSSs, "
                                   f"flank {RESUME_FLANK}, L {L})", p, out_ref):
        return
    full_wall = p.wall

    cmd = mpirun_prefix(2) + run.args(tss, fasta, [folder], out, extra)
    env = dict(os.environ, **ENV1, **MPI_ENV)
    print("$ " + " ".join(cmd) + "   (to be killed)", flush=True)
    t0 = time.time()
    log_path = os.path.join(tmp, "resume_killed.log")
    log = open(log_path, "w")                       # a file, not a pipe nobody reads meanwhile
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    parts = out + ".parts"
    killed, victim, t_kill, sizes, seen = False, None, None, {}, {}
    try:
        while time.time() - t0 < 120 and proc.poll() is None:
            try:
                sizes = {f: os.path.getsize(os.path.join(parts, f)) for f in os.listdir(parts)}
            except OSError:
                sizes = {}
            # A file may be written whole at the start (a job description); finished TSSs
            # show as a work file growing after it was first seen.
            for f, v in sizes.items():
                seen.setdefault(f, v)
            if grew(seen, sizes):
                ranks = [q for q in session_procs(proc.pid)
                         if run.exe.encode() in proc_cmdline(q)[:2]]
                by_rank = {proc_env(q, "OMPI_COMM_WORLD_RANK"): q for q in ranks}
                victim = by_rank.get("1") or (ranks[-1] if ranks else None)
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
                    killed, t_kill = True, time.time() - t0
                break
            time.sleep(0.01)
        note = ""
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            note = "\n(mpirun did not exit within 60 s of the kill)"
    finally:
        log.close()
        for q in session_procs(proc.pid):           # nothing of ours may outlive the test
            try:
                os.kill(q, signal.SIGKILL)
            except ProcessLookupError:
                pass
    rc = proc.returncode
    with open(log_path) as fh:
        err = fh.read() + note
    print(f"  killed rank pid {victim} at {t_kill if t_kill is None else round(t_kill, 2)} s "
          f"(uninterrupted run {full_wall:.1f} s); part sizes then {sizes}; mpirun rc {rc}")
    if not ck.check(killed and rc != 0 and not os.path.exists(out),
                    f"5. fixture: a rank was SIGKILLed while the job ran (killed {killed}, mpirun "
                    f"rc {rc}, OUT exists {os.path.exists(out)})"):
        for line in err.strip().splitlines()[-6:]:
            print("  stderr: " + line)
        return
    try:
        left = {f: os.path.getsize(os.path.join(parts, f)) for f in os.listdir(parts)}
    except OSError:
        left = {}
    ck.check(grew(seen, left),
             f"5. after the crash OUT.parts/ holds work: some file grew after it was first seen "
             f"(first seen {seen}, now {left})")
    p = run.run(tss, fasta, [folder], out, extra, ranks=2, timeout=300)
    if not check_clean_success(ck, "5. rerun of the same command after the crash", p, out):
        return
    m = re.search(r"(\d+) (?:TSS|site|row)\S* already done", p.stderr + p.stdout)
    print(f"  rerun reports: {m.group(0) if m else '(no line saying what was already done)'}")
    same = open(out, "rb").read() == open(out_ref, "rb").read()
    same_tbi = open(out + ".tbi", "rb").read() == open(out_ref + ".tbi", "rb").read()
    ck.check(same and same_tbi, f"5. resumed OUT (and OUT.tbi) byte-identical to the "
                                f"uninterrupted run's (OUT {same}, tbi {same_tbi}; rerun "
                                f"{p.wall:.1f} s vs {full_wall:.1f} s)")
    if not same:
        _, a = read_out(out)
        _, b = read_out(out_ref)
        k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"  {len(a)} vs {len(b)} lines; first difference at line {k + 1}: "
              f"{a[k] if k < len(a) else None} / {b[k] if k < len(b) else None}")


# ----------------------------------------------------------------------------------------------
# Check 6: bad input
# ----------------------------------------------------------------------------------------------

def check_errors(ck, run, tmp, fasta, genome, models, t1_path):
    base = os.path.join(tmp, "errors")
    os.makedirs(base)

    def case(name, want_rc, pattern, models_, tss=t1_path, out=None, extra=(), ranks=2,
             argv=None, keep_out=False):
        d = os.path.join(base, name)
        os.makedirs(d, exist_ok=True)
        out = out or os.path.join(d, "out.tsv.gz")
        p = run.run(tss, fasta, models_, out, ["--flank", "3", *extra], ranks=ranks,
                    timeout=120, rank_codes=True, argv=argv)
        msg = [ln for ln in p.stderr.splitlines()
               if ln.startswith("[E") and re.search(pattern, ln, re.I)]
        no_out = keep_out or not os.path.exists(out)
        codes = getattr(p, "rank_codes", None)
        got = codes if codes is not None else [p.returncode]
        ok = (all(c == want_rc for c in got) and not p.timed_out and bool(msg) and no_out)
        ck.check(ok, f"6. {name}: exit {want_rc} on every rank (status per rank {got}; None: "
                     f"killed before exiting), a stderr line matches /{pattern}/ "
                     f"({(msg or [last_err(p)])[0]!r}), no OUT ({no_out})")
        parts = out + ".parts"
        if os.path.exists(parts):
            print(f"  note: {name} left {parts} behind")
        return p

    m1, m3 = models["m1"][0], models["m3"][0]
    case("models with different input_length", 1, re.escape(os.path.basename(m3)) + "|"
         + re.escape(os.path.basename(m1)), [m1, m3])
    # L < O + 2 radius: N 4 needs L >= 16 + 16 = 32.
    short = os.path.join(tmp, "models", "short_window")
    R.write_random_model(short, 4, 8, [2], 30, 16, ["h0"], seed=9)
    case("model with input_length < output_length + 2 radius", 1,
         r"short_window.*(radius|receptive|input_length)|(radius|receptive|input_length).*"
         r"short_window", [short])
    missing_dir = os.path.join(base, "no_such_dir", "out.tsv.gz")
    case("--out in a missing directory", 1, re.escape(os.path.dirname(missing_dir)), [m1],
         out=missing_dir)
    afile = os.path.join(base, "a_regular_file")
    open(afile, "w").close()
    case("--out under a regular file", 1, re.escape(afile), [m1],
         out=os.path.join(afile, "out.tsv.gz"))
    nostrand = os.path.join(base, "no_strand.tsv")
    H.write_tsv(nostrand, ["chrom", "tss_pos", "gene"], [["chr1", "300", "A"]])
    case("TSS table without a strand column", 1, r"strand", [m1], tss=nostrand)
    allabsent = os.path.join(base, "all_absent.tsv")
    H.write_tsv(allabsent, ["chrom", "tss_pos", "strand"], [["chrUn", "300", "+"],
                                                            ["chr9", "10", "-"]])
    case("every TSS row on an absent chromosome", 1, r".", [m1], tss=allabsent)
    # Existing OUT: refused without --overwrite (and left as it was), replaced with it.
    d = os.path.join(base, "existing")
    os.makedirs(d)
    out = os.path.join(d, "out.tsv.gz")
    with open(out, "wb") as fh:
        fh.write(b"precious")
    case("existing OUT without --overwrite", 2, r"out\.tsv\.gz|exist|overwrite", [m1], out=out,
         keep_out=True)
    ck.check(open(out, "rb").read() == b"precious", "6. the refused run left OUT as it was")
    p = run.run(t1_path, fasta, [m1], out, ["--flank", "3", "--overwrite"], ranks=2,
                timeout=120)
    ok = p.returncode == 0 and open(out, "rb").read()[:2] == b"\x1f\x8b" \
        and os.path.isfile(out + ".tbi")
    ck.check(ok, f"6. existing OUT with --overwrite: exit 0 and OUT replaced by the table "
                 f"(rc {p.returncode})")
    if not ok:
        show_err(p)
    # OUT.parts of a job with other inputs (here another --flank): refused, naming what
    # changed, with its part files left alone; --overwrite discards them and gives the table
    # of an uninterrupted run (the one just written above, same inputs).
    d = os.path.join(base, "stale_parts")
    os.makedirs(os.path.join(d, "out.tsv.gz.parts"))
    stale = os.path.join(d, "out.tsv.gz")
    with open(os.path.join(stale + ".parts", "job.tsv"), "w") as fh:
        fh.write("format\t1\nflank\t4\nn_models\t1\n")
    stale_part = os.path.join(stale + ".parts", "part-0.bin")
    with open(stale_part, "wb") as fh:
        fh.write(b"records of the other job")
    case("OUT.parts of a job with another --flank", 2, r"--flank.*changed.*--overwrite", [m1],
         out=stale)
    ck.check(os.path.exists(stale_part), "6. the refused run left the other job's part file")
    p = run.run(t1_path, fasta, [m1], stale, ["--flank", "3", "--overwrite"], ranks=2,
                timeout=120)
    ok = p.returncode == 0 and os.path.exists(stale) and \
        gzip.open(stale, "rb").read() == gzip.open(out, "rb").read()
    ck.check(ok, f"6. --overwrite over another job's OUT.parts: exit 0, the same table as a "
                 f"fresh run (rc {p.returncode})")
    if not ok:
        show_err(p)
    adir = os.path.join(base, "out_is_a_directory")
    os.makedirs(adir)
    case("--out is a directory", 2, r"directory", [m1], out=adir, keep_out=True)
    argv = [run.exe, "--tss_file", t1_path, "--fasta_file", fasta, "--model_folder", m1,
            "--threads", "1"]
    case("no --out", 2, r"out", [m1], argv=argv, ranks=0)
    gpu = shutil.which("nvidia-smi") is not None
    if gpu:
        print("  note: nvidia-smi present; --device cuda case skipped")
    else:
        case("--device cuda without a GPU", 2, r"cuda", [m1], extra=["--device", "cuda"])


# ----------------------------------------------------------------------------------------------

def main():
    exe = H.exe_from_args(__doc__, "pprecompute")
    promoterai = H.require_binary(os.path.dirname(exe), "promoterai")
    torch.set_num_threads(1)
    ck = Checker()
    t_start = time.time()
    rng = np.random.default_rng(20251)
    with tempfile.TemporaryDirectory() as tmp:
        run = Runner(exe, tmp)
        fasta, genome, order = make_genome(tmp, rng)
        models = {name: make_model(tmp, name, spec) for name, spec in MODELS.items()}
        refs = {name: R.load_model(f) for name, (f, _) in models.items()}
        t1 = os.path.join(tmp, "tss_t1.tsv")
        rows1 = t1_rows(rng)
        write_table(t1, T1_HEADER, rows1)
        t2 = os.path.join(tmp, "tss_t2.tsv")
        rows2 = t2_rows()
        write_table(t2, T2_HEADER, rows2)
        exp1, cnt1 = expected_table(genome, order, T1_HEADER, rows1, FLANK)
        exp1b, _ = expected_table(genome, order, T1_HEADER, rows1, FLANK, missing=".")
        exp2, cnt2 = expected_table(genome, order, T2_HEADER, rows2, FLANK)
        exp2b, _ = expected_table(genome, order, T2_HEADER, rows2, FLANK, missing=".")
        ck.check(exp1 == exp1b and exp2 == exp2b,
                 "fixture: the expected order does not depend on how a missing id sorts")
        ck.check(cnt1["absent"] == 1 and cnt1["duplicate"] == 1 and cnt1["nonacgt"] > 3
                 and cnt1["offchrom"] > 10,
                 f"fixture: T1 has 1 absent-chromosome row, 1 duplicate, non-ACGT and clipped "
                 f"positions ({cnt1}); {len(exp1)} expected rows; T2 {len(exp2)} rows")
        print("--- models: " + ", ".join(f"{n} L={L}" for n, (_, L) in models.items()))

        # Naive scores: (model, table) -> map.
        t0 = time.time()
        naive = {}
        for name, table, exp in (("m1", "t2", exp2), ("m2", "t1", exp1), ("m3", "t1", exp1),
                                 ("m5", "t1", exp1), ("m2", "t2", exp2), ("m5", "t2", exp2),
                                 ("m6", "t2", exp2)):
            folder, L = models[name]
            naive[(name, table)] = naive_scores(promoterai, tmp, f"{name}_{table}", folder, L,
                                                fasta, exp)
        ck.check(all(v is not None for v in naive.values()),
                 f"fixture: promoterai scored the 7 naive variant sets ({time.time() - t0:.1f} s)")

        def out_in(name):
            d = os.path.join(tmp, "runs", name)
            os.makedirs(d)
            return os.path.join(d, "scores.tsv.gz")

        def single(label, name, table, tss, exp, counts, ranks, with_raw=True):
            out = out_in(label)
            extra = ["--flank", str(FLANK)] + (["--raw"] if with_raw else [])
            p = run.run(tss, fasta, [models[name][0]], out, extra, ranks=ranks)
            tag = f"{name} on {table.upper()} -np {max(ranks, 1)}{'' if with_raw else ' no --raw'}"
            if not check_clean_success(ck, tag, p, out):
                return out, None
            body = check_table(ck, tag, out, [name], exp, [naive.get((name, table))],
                               [refs[name]] if with_raw else None, genome, with_raw)
            check_summary(ck, tag, p, counts, os.path.basename(tss))
            return out, body

        out_a, body_a = single("A", "m1", "t2", t2, exp2, cnt2, 0)
        out_b, body_b = single("B", "m2", "t1", t1, exp1, cnt1, 2)
        out_b2, body_b2 = single("B2", "m5", "t1", t1, exp1, cnt1, 0)
        out_c, body_c = single("C", "m3", "t1", t1, exp1, cnt1, 0)
        out_c2, body_c2 = single("C2", "m3", "t1", t1, exp1, cnt1, 2)
        out_c3, body_c3 = single("C3", "m3", "t1", t1, exp1, cnt1, 2, with_raw=False)

        # 3. ranks
        if body_c is not None and body_c2 is not None:
            a, b = open(out_c, "rb").read(), open(out_c2, "rb").read()
            ta, tb = open(out_c + ".tbi", "rb").read(), open(out_c2 + ".tbi", "rb").read()
            ck.check(a == b and ta == tb, f"3. m3 on T1: -np 1 and -np 2 OUT byte-identical "
                                          f"({len(a)} / {len(b)} bytes; tbi equal {ta == tb})")
            ck.check(read_out(out_c)[0] == read_out(out_c2)[0],
                     "3. m3 on T1: -np 1 and -np 2 decompressed text identical")
        # The same with 3 ranks on a fresh copy of the FASTA (no .fai: the ranks index it), and
        # m1 on T2 with a bgzip-compressed FASTA.
        fresh = os.path.join(tmp, "fresh")
        os.makedirs(fresh)
        fasta_copy = os.path.join(fresh, "genome.fa")
        shutil.copyfile(fasta, fasta_copy)
        out_c4 = out_in("C4")
        p = run.run(t1, fasta_copy, [models["m3"][0]], out_c4, ["--flank", str(FLANK), "--raw"],
                    ranks=3)
        if check_clean_success(ck, "m3 on T1 -np 3, unindexed FASTA copy", p, out_c4) \
                and body_c is not None:
            ck.check(open(out_c4, "rb").read() == open(out_c, "rb").read(),
                     "3. m3 on T1: -np 3 (unindexed FASTA copy) OUT byte-identical to -np 1")
        fasta_gz = os.path.join(fresh, "genome.fa.gz")
        with open(fasta_gz, "wb") as fh:
            subprocess.run(["bgzip", "-c", fasta], stdout=fh, check=True)
        out_a2 = out_in("A2")
        p = run.run(t2, fasta_gz, [models["m1"][0]], out_a2, ["--flank", str(FLANK), "--raw"],
                    ranks=2)
        if check_clean_success(ck, "m1 on T2 -np 2, bgzip FASTA", p, out_a2) \
                and body_a is not None:
            ck.check(open(out_a2, "rb").read() == open(out_a, "rb").read(),
                     "3. m1 on T2: -np 2 with the bgzip-compressed FASTA gives the OUT bytes of "
                     "-np 1 with the plain one")
        if body_c is not None and body_c3 is not None:
            ck.check([r[:-1] for r in body_c] == body_c3,
                     "3. m3 on T1 without --raw (-np 2): the --raw table minus its raw column")
        if body_c is not None:
            check_format_and_tabix(ck, out_c, read_out(out_c)[1], order)

        # Two models.
        out_d = out_in("D")
        p = run.run(t1, fasta, [models["m2"][0], models["m5"][0]], out_d,
                    ["--flank", str(FLANK), "--raw"], ranks=2)
        if check_clean_success(ck, "m2 + m5 on T1 -np 2", p, out_d):
            body_d = check_table(ck, "m2 + m5 on T1 -np 2", out_d, ["m2", "m5"], exp1,
                                 [naive[("m2", "t1")], naive[("m5", "t1")]], None, genome)
            if body_d is not None and body_b is not None and body_b2 is not None:
                same = all(d[10] == x[10] and d[11] == y[10] and d[13] == x[11]
                           and d[14] == y[11] for d, x, y in zip(body_d, body_b, body_b2))
                ck.check(same and len(body_d) == len(body_b) == len(body_b2),
                         "3. two-model run: score_x, score_y, raw_x, raw_y equal the single-"
                         "model runs' score and raw (text)")

        # Three models, folder basenames in the header.
        out_e = out_in("E")
        names3 = ["m2", "m5", "m6"]
        p = run.run(t2, fasta, [models[n][0] for n in names3], out_e,
                    ["--flank", str(FLANK), "--raw"], ranks=0)
        if check_clean_success(ck, "m2, m5, m6 on T2", p, out_e):
            check_table(ck, "m2, m5, m6 on T2", out_e, names3, exp2,
                        [naive[(n, "t2")] for n in names3], [refs[n] for n in names3], genome)
        print(f"--- checks 1-4 done at {time.time() - t_start:.1f} s")

        check_resume(ck, run, tmp, fasta, genome, order, np.random.default_rng(7))
        print(f"--- check 5 done at {time.time() - t_start:.1f} s")
        check_errors(ck, run, tmp, fasta, genome, models, t1)
    print(f"--- total {time.time() - t_start:.1f} s")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
