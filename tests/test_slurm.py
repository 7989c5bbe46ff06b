"""The Slurm job scripts (slurm/*.sh) under a real one-node Slurm cluster: `sbatch --wait` runs
slurm/preprocess.sh and slurm/precompute_all_snvs.sh with 2 tasks, whose MPI ranks srun starts
through PMIx; the SNV table they write is checked against naive scoring.

The cluster (tests/ref/slurm_cluster.py) is started by this test in its temporary directory:
munged + slurmctld + slurmd as root, a generated slurm.conf (MpiDefault=pmix, MinJobAge=5,
EnforcePartLimits=ALL), SLURM_CONF exported to the client commands, the daemons stopped by PID
when the test ends. The test is skipped (exit 0, a SKIP line) only when the Slurm daemons or
client commands are not installed (scripts/install-deps.sh installs them).

Fixtures (all in a fresh temporary directory; jobs are submitted from the repository root, as
the scripts expect, with --output into the temporary directory):
  * preprocess: `psynth --n_chroms 2 --chrom_length 20000 --n_tss 16 --n_tracks 1`, and
    slurm/preprocess.sh on it with CONFIG=config/demo.conf (windows 1024 / 512).
  * precompute: a genome of two chromosomes (chr1 400 bp, chr2 300 bp, random bases by
    harness.random_genome_seq, with a soft-masked lower-case run and a run of N inside TSS
    windows) and a TSS table of 6 rows on both strands: one TSS 10 bp from the start of chr1 and
    one 10 bp from the end of chr2 (windows cut by the chromosome ends), two transcripts of two
    genes at the same position and strand (one site, two row groups), two TSSs whose windows
    overlap; a random model (promoterai_ref.write_random_model: 6 blocks, so that the cone
    meets dilation 2 and two shortcut layers feed the head, model_dim 8, output_dims [3],
    output_length 16, input_length 16 + 2 * receptive radius (16) = 48, head_scale 10 so that
    raw scores reach ~0.2 and the printed score is not just tanh ~ raw); FLANK=20,
    EXTRA_ARGS=--raw. Windows near the chromosome ends are N-padded, as promoterai pads them.

Checks:
 1. Preprocess job: sbatch exit 0; the job log exists and shows the srun --mpi=pmix launch;
    both ranks logged a shard (rank 0 and rank 1 lines: srun started two MPI ranks, which
    agreed on the split); manifest.tsv lists one shard per chromosome and each file exists.
 2. Precompute job: sbatch exit 0; the job log exists and shows the srun --mpi=pmix launch and
    the script's row-count line; OUT and OUT.tbi exist; no OUT.parts is left.
 3. Header: `gene_id chrom pos ref alt strand gene transcript_id tss_pos strand_adj_dist_tss
    score raw` (one model, --raw).
 4. Row set, exact: the rows equal the independently computed set: for each TSS row, every pos
    in [tss_pos - FLANK, tss_pos + FLANK] inside the chromosome whose base, upper-cased, is
    A/C/G/T, with ref = that upper-case base and each of the 3 other bases as alt; gene_id,
    gene, transcript_id, tss_pos and strand copied from the TSS row (strand compared as a sign:
    1/+ and -1/-); strand_adj_dist_tss = (pos - tss_pos) * strand; no duplicate row.
 5. Scores against naive scoring: a variant table of the output rows (chrom pos ref alt strand)
    scored by `promoterai --raw` (two full forward passes per variant): raw within 1e-5
    absolute (harness.RAW_ATOL: a float32 cone and a float32 full pass differ only in summation
    order, ~1e-7 here); the score column equal to promoterai's, except one last-digit step where
    raw lies within 2e-6 of a rounding boundary (harness.BOUNDARY_RAW_TOL).
 6. tabix: `tabix OUT chr1:a-b` over a stretch covering two overlapping TSS windows returns
    exactly the table's rows with that chromosome and pos in [a, b] (as a multiset of lines).
 7. Requeue after the end: the same script run again (plain bash, same inputs) exits 0 at once,
    says there is nothing to do, and leaves OUT untouched (same inode and mtime).
 8. Without Slurm: `OVERWRITE=1 NP=2 bash slurm/precompute_all_snvs.sh` (no SLURM_* variables)
    launches `mpirun --oversubscribe -np 2`, exits 0, and rewrites OUT with the same content
    (decompressed bytes equal: each site's scores do not depend on which rank computed them).
 9. Without Slurm, a user's own inputs and no CONFIG: `bash slurm/preprocess.sh` must not apply
    the demo's config (the manifest has ppreprocess's windows 32768 / 16384, not 1024 / 512).
The whole script takes 8-15 s on the 2-core build machine (the cluster starts in ~1 s; each
job returns 2-4 s after submission, as sbatch --wait polls every 2 s).
Usage: /usr/bin/python3 tests/test_slurm.py --bin BUILD_DIR
"""

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import harness as H  # noqa: E402
import promoterai_ref as R  # noqa: E402
import slurm_cluster as S  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_BLOCKS, D, DIMS, O = 6, 8, [3], 16
L = O + 2 * R.receptive_radius(N_BLOCKS)               # 48
FLANK = 20
HEAD_SCALE = 10.0
JOB_TIMEOUT = 180               # s; a hung job is cancelled when the cluster stops
CHROMS = {"chr1": 400, "chr2": 300}
# gene_id, chrom, tss_pos (1-based), strand, gene, transcript_id
TSS_HEADER = ["gene_id", "chrom", "tss_pos", "strand", "gene", "transcript_id"]
TSS_ROWS = [
    ["G1", "chr1", "10", "+", "GENE1", "T1.1"],        # window cut by the chromosome start
    ["G2", "chr1", "200", "-", "GENE2", "T2.1"],
    ["G3", "chr1", "200", "-", "GENE3", "T3.1"],       # same site as T2.1, another gene
    ["G4", "chr1", "215", "+", "GENE4", "T4.1"],       # window overlaps T2.1's
    ["G5", "chr2", "120", "-", "GENE5", "T5.1"],       # N run and lower-case run in its window
    ["G6", "chr2", "291", "+", "GENE6", "T6.1"],       # window cut by the chromosome end
]
OUT_HEADER = ["gene_id", "chrom", "pos", "ref", "alt", "strand", "gene", "transcript_id",
              "tss_pos", "strand_adj_dist_tss", "score", "raw"]
TABIX_REGION = ("chr1", 185, 230)   # covers T2.1/T3.1's and T4.1's windows in part


def sign(strand):
    return {"1": 1, "+1": 1, "+": 1, "-1": -1, "-": -1}.get(strand.strip(), 0)


def sbatch(cluster, ck, label, script, log_pattern, env_extra, args=()):
    """`sbatch --parsable --wait` from the repository root; returns (exit code, log path)."""
    env = cluster.env(env_extra)
    cmd = [shutil.which("sbatch"), "--parsable", "--wait", "--ntasks=2", "--cpus-per-task=1",
           "--time=00:05:00", f"--output={log_pattern}", *args, script]
    print("$ " + " ".join(f"{k}={v}" for k, v in env_extra.items()) + " " + " ".join(cmd),
          flush=True)
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        ck.check(False, f"{label}: sbatch --wait returned within {JOB_TIMEOUT} s")
        print(cluster.log_tail())
        return None, None
    job = p.stdout.strip().split(";")[0]
    log = log_pattern.replace("%j", job)
    print(f"  job {job}: sbatch exit {p.returncode} after {time.time() - t0:.1f} s")
    for line in p.stderr.strip().splitlines()[-10:]:
        print("  stderr: " + line)
    if os.path.isfile(log):
        with open(log, errors="replace") as fh:
            text = fh.read()
        for line in text.splitlines()[-25:]:
            print("  log: " + line)
    ck.check(p.returncode == 0, f"{label}: sbatch --wait exit 0 (got {p.returncode})")
    if p.returncode != 0:
        print(cluster.log_tail(10))
    return p.returncode, log


def read_log(ck, label, log):
    ok = log is not None and os.path.isfile(log)
    ck.check(ok, f"{label}: job log {os.path.basename(log) if log else '?'} exists")
    if not ok:
        return ""
    with open(log, errors="replace") as fh:
        return fh.read()


# ----------------------------------------------------------------------------------------------
# 1. preprocess.sh
# ----------------------------------------------------------------------------------------------

def check_preprocess(cluster, ck, tmp, bin_dir):
    synth = os.path.join(tmp, "synth")
    p = H.run([os.path.join(bin_dir, "psynth"), "--out", synth, "--n_chroms", 2,
               "--chrom_length", 20000, "--n_tss", 16, "--n_tracks", 1])
    if not ck.check(p.returncode == 0, "preprocess: psynth fixture written"):
        return
    shards = os.path.join(tmp, "shards")
    env = {"BIN": bin_dir, "TSS_FILE": f"{synth}/tss.tsv", "FASTA_FILE": f"{synth}/genome.fa",
           "BIGWIG_FILES": f"{synth}/tracks.tsv", "H5_FOLDER": shards,
           "CONFIG": "config/demo.conf"}
    rc, log = sbatch(cluster, ck, "preprocess", "slurm/preprocess.sh",
                     os.path.join(tmp, "preprocess-%j.out"), env)
    text = read_log(ck, "preprocess", log)
    ck.check("+ srun --mpi=pmix" in text, "preprocess: the log shows the srun --mpi=pmix launch")
    ranks = sorted({line.split()[2] for line in text.splitlines()
                    if line.startswith("[I rank ") and "build_shard" in line})
    ck.check(ranks == ["0", "1"], f"preprocess: ranks 0 and 1 each built a shard (got {ranks})")
    man = os.path.join(shards, "manifest.tsv")
    if ck.check(os.path.isfile(man), "preprocess: manifest.tsv written"):
        _, header, rows = H.read_manifest(man)
        files = [r[header.index("file")] if "file" in header else r[0] for r in rows]
        chroms = sorted(r[header.index("chrom")] for r in rows) if "chrom" in header else []
        ck.check(chroms == ["chr1", "chr2"] and
                 all(os.path.isfile(os.path.join(shards, f)) for f in files),
                 f"preprocess: manifest lists chr1 and chr2 ({chroms}), files {files} exist")


# ----------------------------------------------------------------------------------------------
# 2-6. precompute_all_snvs.sh
# ----------------------------------------------------------------------------------------------

def make_precompute_fixture(tmp, rng):
    seqs = {}
    for name, n in CHROMS.items():
        if name == "chr2":
            # inside T5.1's window [100, 140]: N at 105..110, lower case at 125..134 (1-based)
            seqs[name] = H.random_genome_seq(rng, n, lower_runs=[(124, 134)], n_runs=[(104, 110)])
        else:
            seqs[name] = H.random_genome_seq(rng, n, lower_runs=[(190, 196)])
    fasta = os.path.join(tmp, "genome.fa")
    H.write_fasta(fasta, list(seqs.items()))
    tss = os.path.join(tmp, "tss.tsv")
    H.write_tsv(tss, TSS_HEADER, TSS_ROWS)
    model = os.path.join(tmp, "model")
    R.write_random_model(model, N_BLOCKS, D, DIMS, L, O, ["human"], seed=5, head_scale=HEAD_SCALE)
    return fasta, tss, model, seqs


def expected_rows(seqs):
    """The section 6 row set, from the TSS table and the genome alone (tuples of strings, sign
    for the strand)."""
    out = []
    for gene_id, chrom, tss_pos, strand, gene, tx in TSS_ROWS:
        t, s, n = int(tss_pos), sign(strand), len(seqs[chrom])
        for pos in range(max(1, t - FLANK), min(n, t + FLANK) + 1):
            base = seqs[chrom][pos - 1].upper()
            if base not in "ACGT":
                continue
            for alt in "ACGT":
                if alt != base:
                    out.append((gene_id, chrom, str(pos), base, alt, s, gene, tx, tss_pos,
                                str((pos - t) * s)))
    return out


def read_table(path):
    import gzip
    with gzip.open(path, "rt") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def check_precompute(cluster, ck, tmp, bin_dir, rng):
    fasta, tss, model, seqs = make_precompute_fixture(tmp, rng)
    out = os.path.join(tmp, "snvs.tsv.gz")
    env = {"BIN": bin_dir, "TSS_FILE": tss, "FASTA_FILE": fasta, "MODEL_FOLDERS": model,
           "OUT": out, "FLANK": str(FLANK), "EXTRA_ARGS": "--raw"}
    rc, log = sbatch(cluster, ck, "precompute", "slurm/precompute_all_snvs.sh",
                     os.path.join(tmp, "precompute-%j.out"), env)
    text = read_log(ck, "precompute", log)
    ck.check("+ srun --mpi=pmix" in text and "pprecompute" in text,
             "precompute: the log shows the srun --mpi=pmix pprecompute launch")
    ck.check(f"{out}: " in text and " SNV rows" in text,
             "precompute: the log has the script's row-count line")
    ck.check(os.path.isfile(out) and os.path.isfile(out + ".tbi"),
             "precompute: OUT and OUT.tbi exist")
    ck.check(not os.path.exists(out + ".parts"), "precompute: no OUT.parts left")
    if not os.path.isfile(out):
        return

    lines = read_table(out)
    header = lines[0].lstrip("#").split("\t") if lines else []
    ck.check(header == OUT_HEADER, f"precompute: header {OUT_HEADER} (got {header})")
    if header != OUT_HEADER:
        return
    rows = [line.split("\t") for line in lines[1:]]
    col = {c: i for i, c in enumerate(OUT_HEADER)}
    bad_width = [r for r in rows if len(r) != len(OUT_HEADER)]
    ck.check(not bad_width, f"precompute: every row has {len(OUT_HEADER)} fields "
                            f"({len(bad_width)} do not)")
    if bad_width:
        return

    # 4. row set
    def key(r):
        return (r[0], r[1], r[2], r[3], r[4], sign(r[5]), r[6], r[7], r[8], r[9])
    got = collections.Counter(key(r) for r in rows)
    want = collections.Counter(expected_rows(seqs))
    missing, extra = want - got, got - want
    dups = sum(c - 1 for c in got.values() if c > 1)
    for k in list(missing)[:5]:
        print(f"  missing row {k}")
    for k in list(extra)[:5]:
        print(f"  unexpected row {k}")
    ck.check(not missing and not extra and dups == 0,
             f"precompute: {len(rows)} rows = the expected {sum(want.values())} "
             f"(missing {sum(missing.values())}, unexpected {sum(extra.values())}, "
             f"duplicates {dups}); strands written as {sorted({r[5] for r in rows})}")

    # 5. naive scoring of the same rows
    var = os.path.join(tmp, "naive.tsv")
    H.write_tsv(var, ["chrom", "pos", "ref", "alt", "strand"],
                [[r[col["chrom"]], r[col["pos"]], r[col["ref"]], r[col["alt"]], r[col["strand"]]]
                 for r in rows])
    naive_out = os.path.join(tmp, "naive.scored.tsv")
    p = H.run([os.path.join(bin_dir, "promoterai"), "--model_folder", model, "--var_file", var,
               "--fasta_file", fasta, "--input_length", L, "--raw", "--quiet",
               "--output", naive_out, "--threads", 1])
    if not ck.check(p.returncode == 0 and os.path.isfile(naive_out),
                    "precompute: promoterai scored the same variants"):
        return
    naive = H.read_tsv_lines(naive_out)
    nh = naive[0]
    naive = naive[1:]
    if not ck.check(len(naive) == len(rows), f"precompute: promoterai wrote {len(rows)} rows "
                                             f"(got {len(naive)})"):
        return
    max_err, n_boundary, bad = 0.0, 0, []
    for k, (r, n) in enumerate(zip(rows, naive)):
        try:
            a, b = float(r[col["raw"]]), float(n[nh.index("raw")])
        except ValueError:
            bad.append(f"row {k + 1}: raw {r[col['raw']]!r} / {n[nh.index('raw')]!r}")
            continue
        err = abs(a - b) if np.isfinite(a) else float("inf")
        max_err = max(max_err, err)
        if not err <= H.RAW_ATOL:
            bad.append(f"row {k + 1} {r[:5]}: raw {a} vs naive {b} (err {err:.2e})")
        s_got, s_want = r[col["score"]], n[nh.index("score")]
        if s_got != s_want:
            near = R.score_near_boundary(b, H.BOUNDARY_RAW_TOL, H.BOUNDARY_PRINT_TOL)
            try:
                one = abs(round((float(s_got) - float(s_want)) * 1e4)) == 1
            except ValueError:
                one = False
            if near and one:
                n_boundary += 1
            else:
                bad.append(f"row {k + 1} {r[:5]}: score {s_got} vs naive {s_want} (raw {b})")
    for b in bad[:10]:
        print("  " + b)
    raws = np.array([abs(float(n[nh.index("raw")])) for n in naive])
    ck.check(not bad, f"precompute: raw within {H.RAW_ATOL} of naive scoring (max abs err "
                      f"{max_err:.2e}; |raw| up to {raws.max():.3f}) and score equal "
                      f"({n_boundary} one-digit step(s) at a rounding boundary)")

    # 6. tabix region query
    chrom, a, b = TABIX_REGION
    q = H.run(["tabix", out, f"{chrom}:{a}-{b}"])
    got_lines = collections.Counter(line for line in q.stdout.split("\n") if line)
    want_lines = collections.Counter("\t".join(r) for r in rows
                                     if r[col["chrom"]] == chrom and a <= int(r[col["pos"]]) <= b)
    ck.check(q.returncode == 0 and got_lines == want_lines and want_lines,
             f"precompute: tabix {chrom}:{a}-{b} returns exactly the {sum(want_lines.values())} "
             f"rows with pos in [{a}, {b}] (got {sum(got_lines.values())})")

    # 7. a rerun after the end (what a requeue does) keeps the finished table
    st = os.stat(out)
    p = bash_script("precompute_all_snvs.sh", env)
    st2 = os.stat(out)
    ck.check(p.returncode == 0 and "nothing to do" in p.stdout
             and (st.st_ino, st.st_mtime_ns) == (st2.st_ino, st2.st_mtime_ns),
             f"precompute: a rerun on the finished OUT exits 0 (got {p.returncode}), says "
             f"'nothing to do' and leaves OUT untouched")

    # 8. the same script without Slurm: mpirun, the same table
    before = "\n".join(lines)
    p = bash_script("precompute_all_snvs.sh", dict(env, OVERWRITE="1", NP="2"))
    after = "\n".join(read_table(out)) if os.path.isfile(out) else ""
    ck.check(p.returncode == 0 and "+ mpirun --oversubscribe -np 2 " in p.stdout
             and after == before and not os.path.exists(out + ".parts"),
             f"precompute: without Slurm (OVERWRITE=1 NP=2) mpirun -np 2 exits 0 (got "
             f"{p.returncode}) and rewrites the same table")


def bash_script(name, env_extra, timeout=120):
    """`bash slurm/NAME` outside any allocation (SLURM_* removed from the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(env_extra)
    cmd = ["bash", os.path.join("slurm", name)]
    print("$ " + " ".join(f"{k}={v}" for k, v in env_extra.items()) + " " + " ".join(cmd),
          flush=True)
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    for line in (p.stdout.strip().splitlines() + p.stderr.strip().splitlines())[-8:]:
        print("  " + line)
    return p


def check_config_default(ck, tmp, bin_dir):
    """slurm/preprocess.sh on a user's own inputs (not the demo's) and no CONFIG: the demo's
    config must not apply, so the shards get ppreprocess's own windows (32768 / 16384), not the
    demo's 1024 / 512, and the script says it passes no config."""
    synth = os.path.join(tmp, "synth")
    shards = os.path.join(tmp, "shards_own")
    env = {"BIN": bin_dir, "TSS_FILE": f"{synth}/tss.tsv", "FASTA_FILE": f"{synth}/genome.fa",
           "BIGWIG_FILES": f"{synth}/tracks.tsv", "H5_FOLDER": shards, "NP": "1"}
    p = bash_script("preprocess.sh", env)
    man = os.path.join(shards, "manifest.tsv")
    if not ck.check(p.returncode == 0 and os.path.isfile(man),
                    f"own inputs, no CONFIG: preprocess.sh exits 0 (got {p.returncode})"):
        return
    text = open(man).read()
    ck.check("# input_length = 32768" in text and "# output_length = 16384" in text,
             "own inputs, no CONFIG: ppreprocess's default windows, not the demo config's")
    ck.check("no config file" in p.stdout, "own inputs, no CONFIG: the script says so")


def main():
    pprecompute = H.exe_from_args(__doc__, "pprecompute")
    bin_dir = os.path.dirname(pprecompute)
    for name in ("promoterai", "psynth", "ppreprocess"):
        H.require_binary(bin_dir, name)
    ok, missing = S.installed()
    if not ok:
        print("SKIP Slurm is not installed (missing: " + " ".join(missing) +
              "); scripts/install-deps.sh installs it")
        return 0
    ck = H.Checker()
    rng = np.random.default_rng(11)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with S.SlurmCluster(os.path.join(tmp, "slurm")) as cluster:
                check_preprocess(cluster, ck, tmp, bin_dir)
                check_precompute(cluster, ck, tmp, bin_dir, rng)
        except S.ClusterError as e:
            ck.check(False, f"the test Slurm cluster runs: {e}")
        check_config_default(ck, tmp, bin_dir)
    print(f"test_slurm: {time.time() - t0:.1f} s")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
