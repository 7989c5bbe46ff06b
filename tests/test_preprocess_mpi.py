"""`ppreprocess` under MPI: the work split, the manifest, and resuming (docs/preprocess.md).

Fixture: chrA 30 kb with 40 TSSs, chrB 8, chrC 5, chrD 3 (M = 56, rows interleaved in the table),
three tracks, S_in 512 / S_out 256. The same command runs with `mpirun -np 1`, `-np 2` and `-np 3`
into separate folders. For each: exit 0; the shard names and part counts follow the documented
split (share = ceil(M/R); a chromosome with n > share TSSs is cut into ceil(n/share) parts of
near-equal size: -np 2 cuts chrA in 2, -np 3 in 3; one rank cuts nothing); manifest.tsv lists
every shard with its chrom, part, n_parts and n_samples, every listed file exists, no other .h5
or .tmp file exists; the `part`/`n_parts` attributes agree; concatenating part0, part1, ... of
each chromosome gives the -np 1 shard byte for byte (x, y, pos, strand, line); no sample is lost
or duplicated (the /line values are exactly the table's data lines); the -np 1 shards match the
reference (x exactly, y within 1e-3*|ref| + 1e-6, float16).
Resume (in the -np 2 folder, each step with the same -np 2 command unless said):
  1. rerun unchanged: no shard rewritten (st_ino and st_mtime_ns of every shard unchanged);
  2. one shard deleted: exactly that shard recreated, equal to what it was; others untouched;
  3. one shard truncated (unreadable): exactly that shard rebuilt; leftover shard temporaries
     (chrA.part0.h5.tmp, and chrA.part2.h5.tmp as a killed 3-rank run would leave) removed;
  4. one chrC TSS row changed in place: only chrC's shard rebuilt (the fingerprint covers a
     shard's own TSS rows; the TSS file itself is not among the documented inputs of it);
  5. a bigWig's modification time changed: every shard rebuilt (stale fingerprints), same data;
  6. --force: every shard rewritten, same data;
  7. -np 1 into the same folder: the parts named in the previous manifest are removed, the
     folder holds exactly the -np 1 shards;
  8. -np 1 with --y_dtype float32: every shard rebuilt (y_dtype is part of the fingerprint).
Usage: /usr/bin/python3 tests/test_preprocess_mpi.py --bin BUILD_DIR
"""

import os
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import preprocess_ref as P  # noqa: E402
from harness import (MPI_ENV, Checker, attr_str, mpirun_prefix, random_genome_seq,  # noqa: E402
                     random_intervals, read_manifest, exe_from_args, run_group, tree_stat,
                     write_bigwig, write_fasta)

S_IN, S_OUT = 512, 256
CHROMS = [("chrA", 30000), ("chrB", 10000), ("chrC", 5000), ("chrD", 2000)]
N_TSS = {"chrA": 40, "chrB": 8, "chrC": 5, "chrD": 3}
XFORMS = ["lambda x: np.arcsinh(np.nan_to_num(x))",
          "lambda x: np.arcsinh(1000 * np.nan_to_num(x))",
          "np.log1p(np.nan_to_num(x))"]
DATASETS = ("x", "y", "pos", "strand", "line")


def make_inputs(tmp, rng):
    genome = {c: random_genome_seq(rng, n, lower_runs=[(100, 400)], n_runs=[(n // 2, n // 2 + 50)],
                                   n_iupac=10) for c, n in CHROMS}
    fasta = os.path.join(tmp, "genome.fa")
    write_fasta(fasta, [(c, genome[c]) for c, _ in CHROMS])
    bw_dir = os.path.join(tmp, "bw")
    os.makedirs(bw_dir)
    rows = []
    for k in range(len(XFORMS)):
        for side in ("fwd", "rev"):
            iv = {c: random_intervals(rng, 0, n, lambda r: float(10 ** r.uniform(-4, 4)),
                                      gap_prob=0.3) for c, n in CHROMS}
            write_bigwig(os.path.join(bw_dir, f"trk{k}.{side}.bw"), CHROMS, iv)
        rows.append([f"bw/trk{k}.fwd.bw", f"bw/trk{k}.rev.bw", XFORMS[k], f"assay{k}"])
    tracks = os.path.join(tmp, "tracks.tsv")
    with open(tracks, "w") as fh:
        fh.write("fwd\trev\txform\tname\n")
        for r in rows:
            fh.write("\t".join(r) + "\n")
    tss = []
    for c, n in CHROMS:
        for p in rng.integers(1, n + 1, N_TSS[c]):
            tss.append((c, int(p), str(rng.choice(["1", "-1", "+", "-"]))))
    tss[3] = ("chrA", 1, "-")                      # windows off the start
    rng.shuffle(tss)
    tss_path = os.path.join(tmp, "tss.tsv")
    write_tss(tss_path, tss)
    return fasta, tracks, tss_path, tss


def write_tss(path, tss):
    with open(path, "w") as fh:
        fh.write("chrom\tpos\tstrand\tgene\n")
        for k, (c, p, s) in enumerate(tss):
            fh.write(f"{c}\t{p}\t{s}\tg{k}\n")


def read_shard(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][...] for k in DATASETS}
        attrs = {k: f.attrs[k] for k in f.attrs}
    return data, attrs


def same_arrays(a, b):
    return all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
               and a[k].tobytes() == b[k].tobytes() for k in DATASETS)


def check_folder(ck, label, out, counts, ranks, table_lines):
    """Shard names, manifest and attributes for a run with `ranks` ranks. Returns
    {chrom: concatenated data} or None."""
    want_parts = P.expected_split(counts, ranks)
    want_files = {}
    for c, k in want_parts.items():
        if k == 1:
            want_files[f"{c}.h5"] = (c, 0, 1)
        else:
            for i in range(k):
                want_files[f"{c}.part{i}.h5"] = (c, i, k)
    h5s = sorted(n for n in os.listdir(out) if n.endswith(".h5"))
    tmps = sorted(n for n in os.listdir(out) if n.endswith(".tmp"))
    ck.check(h5s == sorted(want_files) and not tmps,
             f"{label}: shards {sorted(want_files)} (split {want_parts}), no *.tmp (got {h5s}, "
             f"{tmps})")
    man = os.path.join(out, "manifest.tsv")
    if not ck.check(os.path.isfile(man), f"{label}: manifest.tsv exists"):
        return None
    params, header, rows = read_manifest(man)
    ck.check(header == ["file", "chrom", "part", "n_parts", "n_samples"]
             and params.get("ranks") == str(ranks),
             f"{label}: manifest header {header}, '# ranks = {params.get('ranks')}' ({ranks})")
    listed = {r[0]: r for r in rows}
    missing = [n for n in listed if not os.path.isfile(os.path.join(out, n))]
    unlisted = [n for n in h5s if n not in listed]
    ck.check(not missing and not unlisted and len(listed) == len(rows),
             f"{label}: every manifest file exists ({missing} missing) and every .h5 is listed "
             f"({unlisted} not)")
    data, bad = {}, []
    for name in sorted(want_files, key=lambda n: want_files[n]):
        c, i, k = want_files[name]
        path = os.path.join(out, name)
        if not os.path.isfile(path):
            continue
        d, a = read_shard(path)
        n = d["x"].shape[0]
        row = listed.get(name)
        if row != [name, c, str(i), str(k), str(n)]:
            bad.append(f"manifest row {row} for {name} (want {[name, c, str(i), str(k), str(n)]})")
        if (attr_str(a.get("chrom", "")) != c or int(a.get("part", -1)) != i
                or int(a.get("n_parts", -1)) != k):
            bad.append(f"{name}: attributes chrom {a.get('chrom')} part {a.get('part')} n_parts "
                       f"{a.get('n_parts')}")
        data.setdefault(c, []).append(d)
    for b in bad:
        print("  " + b)
    ck.check(not bad, f"{label}: manifest rows and part/n_parts attributes agree with the files")
    sizes = {c: [d["x"].shape[0] for d in parts] for c, parts in data.items()}
    near = all(max(s) - min(s) <= 1 and sum(s) == counts[c] for c, s in sizes.items())
    ck.check(near and set(sizes) == set(counts),
             f"{label}: part sizes {sizes} sum to the chromosome's TSS count and differ by <= 1")
    cat = {c: {k: np.concatenate([d[k] for d in parts]) for k in DATASETS}
           for c, parts in data.items()}
    lines = sorted(int(v) for c in cat for v in cat[c]["line"])
    ck.check(lines == sorted(table_lines),
             f"{label}: every TSS row appears exactly once ({len(lines)} samples, "
             f"{len(table_lines)} rows)")
    return cat


def main():
    exe = exe_from_args(__doc__, "ppreprocess")
    ck = Checker()
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory() as tmp:
        fasta, tracks, tss_path, tss = make_inputs(tmp, rng)
        counts = dict(N_TSS)
        table_lines = list(range(2, 2 + len(tss)))

        def cmd(ranks, out, *extra):
            return mpirun_prefix(ranks) + [exe, "--h5_folder", out, "--tss_file", tss_path,
                                           "--fasta_file", fasta, "--bigwig_files", tracks,
                                           "--input_length", S_IN, "--output_length", S_OUT,
                                           "--chunk_positions", 64, "--quiet", *extra]

        def launch(ranks, out, *extra):
            return run_group(cmd(ranks, out, *extra), cwd=tmp, timeout=180, env_extra=MPI_ENV)

        outs, cats = {}, {}
        for ranks in (1, 2, 3):
            out = os.path.join(tmp, f"np{ranks}")
            outs[ranks] = out
            proc = launch(ranks, out)
            if not ck.check(proc.returncode == 0 and not proc.timed_out,
                            f"-np {ranks}: exit status 0 (got {proc.returncode})"):
                continue
            cats[ranks] = check_folder(ck, f"-np {ranks}", out, counts, ranks, table_lines)
        if cats.get(1):
            exp = P.expected_samples(tss_path, P.open_fasta(write_ref_copy(tmp, fasta)), tracks,
                                     S_IN, S_OUT, cwd=tmp, out_dtype=np.float64)
            bad = []
            for c, samples in exp.items():
                got = cats[1].get(c)
                if got is None:
                    bad.append(f"{c} missing")
                    continue
                ref_x = np.stack([s["x"] for s in samples])
                ref_y = np.stack([s["y"] for s in samples])
                ref_line = np.array([s["line"] for s in samples])
                if got["x"].shape != ref_x.shape or not np.array_equal(got["x"], ref_x):
                    bad.append(f"{c}: x differs")
                if not np.array_equal(got["line"], ref_line):
                    bad.append(f"{c}: line {got['line']} vs {ref_line}")
                if got["y"].shape != ref_y.shape:
                    bad.append(f"{c}: y shape {got['y'].shape} vs {ref_y.shape}")
                    continue
                yg = got["y"].astype(np.float64)
                okm = (np.abs(yg - ref_y) <= 1e-6 + 1e-3 * np.abs(ref_y)) | (np.isnan(yg)
                                                                              & np.isnan(ref_y))
                if not okm.all():
                    bad.append(f"{c}: {int((~okm).sum())} y values outside 1e-3*|ref| + 1e-6")
            for b in bad:
                print("  " + b)
            ck.check(not bad, "-np 1: shards equal the reference (x exact, y float16 within "
                              "1e-3*|ref| + 1e-6, line numbers)")
        for ranks in (2, 3):
            if cats.get(ranks) and cats.get(1):
                diff = [f"{c}/{k}" for c in cats[1] for k in DATASETS
                        if c not in cats[ranks]
                        or cats[ranks][c][k].dtype != cats[1][c][k].dtype
                        or cats[ranks][c][k].shape != cats[1][c][k].shape
                        or cats[ranks][c][k].tobytes() != cats[1][c][k].tobytes()]
                ck.check(not diff, f"-np {ranks}: part0, part1, ... concatenated equal the "
                                   f"-np 1 shards byte for byte (x, y, pos, strand, line; "
                                   f"differ: {diff})")

        if 2 not in cats or not cats[2]:
            return ck.finish()
        out = outs[2]

        def snapshot():
            return {n: read_shard(os.path.join(out, n)) for n in os.listdir(out)
                    if n.endswith(".h5")}

        def rerun(label, *extra, ranks=2):
            time.sleep(0.05)
            before = tree_stat(out)
            proc = launch(ranks, out, *extra)
            ok = ck.check(proc.returncode == 0 and not proc.timed_out,
                          f"resume {label}: exit status 0 (got {proc.returncode})")
            after = tree_stat(out)
            changed = sorted(n for n in after if before.get(n) != after[n])
            return ok, before, after, changed

        shards0 = snapshot()
        # 1. unchanged rerun
        ok, before, after, changed = rerun("unchanged")
        if ok:
            ck.check(not changed and sorted(after) == sorted(before),
                     f"resume unchanged: no shard rewritten (rewritten: {changed})")
        # 2. one shard deleted
        victim = "chrA.part1.h5"
        os.remove(os.path.join(out, victim))
        ok, before, after, changed = rerun(f"{victim} deleted")
        if ok:
            ck.check(changed == [victim] and sorted(after) == sorted(shards0),
                     f"resume {victim} deleted: exactly it was recreated (rewritten {changed})")
            if os.path.isfile(os.path.join(out, victim)):
                d, a = read_shard(os.path.join(out, victim))
                ck.check(same_arrays(d, shards0[victim][0])
                         and attr_str(a.get("fingerprint")) ==
                         attr_str(shards0[victim][1].get("fingerprint")),
                         f"resume {victim} deleted: recreated shard equals the old one "
                         f"(datasets and fingerprint)")
        # 3. one shard truncated (unreadable) + stray .tmp files
        victim = "chrB.h5"
        vpath = os.path.join(out, victim)
        with open(vpath, "r+b") as fh:
            fh.truncate(os.path.getsize(vpath) // 2)
        for junk in ("chrA.part0.h5.tmp", "chrA.part2.h5.tmp"):   # the latter from a 3-rank plan
            with open(os.path.join(out, junk), "w") as fh:
                fh.write("junk")
        ok, before, after, changed = rerun(f"{victim} truncated")
        if ok:
            ck.check(changed == [victim], f"resume {victim} truncated: exactly it was rebuilt "
                                          f"(rewritten {changed})")
            tmps = [n for n in os.listdir(out) if n.endswith(".tmp")]
            ck.check(not tmps, f"resume: leftover *.tmp files deleted (left: {tmps})")
            d, _ = read_shard(vpath)
            ck.check(same_arrays(d, shards0[victim][0]),
                     f"resume {victim} truncated: rebuilt shard equals the old one")
        # 4. one chrC row changed in place (same line count, same split)
        rows = list(tss)
        k = next(i for i, r in enumerate(rows) if r[0] == "chrC")
        c, p, s = rows[k]
        rows[k] = (c, p + 1 if p < 5000 else p - 1, s)
        write_tss(tss_path, rows)
        ok, before, after, changed = rerun("chrC row changed")
        if ok:
            ck.check(changed == ["chrC.h5"], f"resume chrC row changed: only chrC.h5 rebuilt "
                                             f"(rewritten {changed})")
            d, _ = read_shard(os.path.join(out, "chrC.h5"))
            i = list(d["line"]).index(k + 2) if (k + 2) in list(d["line"]) else None
            ck.check(i is not None and int(d["pos"][i]) == rows[k][1],
                     f"resume chrC row changed: the shard holds the new pos {rows[k][1]}")
        write_tss(tss_path, tss)
        ok, before, after, changed = rerun("chrC row restored")
        if ok:
            ck.check(changed == ["chrC.h5"], f"resume chrC row restored: only chrC.h5 rebuilt "
                                             f"(rewritten {changed})")
        # 5. a bigWig's modification time changed
        bw = os.path.join(tmp, "bw", "trk1.rev.bw")
        st = os.stat(bw)
        os.utime(bw, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        ok, before, after, changed = rerun("bigWig touched")
        if ok:
            ck.check(changed == sorted(after),
                     f"resume bigWig touched: every shard rebuilt ({len(changed)} of "
                     f"{len(after)})")
            now = snapshot()
            ck.check(sorted(now) == sorted(shards0)
                     and all(same_arrays(now[n][0], shards0[n][0]) for n in now),
                     "resume bigWig touched: same data")
        # 6. --force
        ok, before, after, changed = rerun("--force", "--force")
        if ok:
            ck.check(changed == sorted(after) and sorted(after) == sorted(shards0),
                     f"resume --force: every shard rewritten ({len(changed)} of {len(after)})")
            now = snapshot()
            ck.check(all(same_arrays(now[n][0], shards0[n][0]) for n in now),
                     "resume --force: same data")
        # 7. rank count changed: -np 1 into the -np 2 folder
        ok, before, after, changed = rerun("-np 1 into the -np 2 folder", ranks=1)
        if ok:
            cat = check_folder(ck, "-np 1 into the -np 2 folder", out, counts, 1, table_lines)
            if cat and cats.get(1):
                ck.check(all(cat[c][k].tobytes() == cats[1][c][k].tobytes()
                             for c in cats[1] for k in DATASETS),
                         "-np 1 into the -np 2 folder: shards equal the -np 1 run's")
        # 8. another y_dtype: every fingerprint is stale
        ok, before, after, changed = rerun("--y_dtype float32", "--y_dtype", "float32", ranks=1)
        if ok:
            now = snapshot()
            ck.check(changed == sorted(after) and sorted(after) == sorted(before)
                     and all(now[n][0]["y"].dtype == np.float32 for n in now),
                     f"resume --y_dtype float32: every shard rebuilt with float32 /y "
                     f"({len(changed)} of {len(after)})")
        f32 = ("--y_dtype", "float32")
        # 9. a metadata column added to the track table: names and transforms unchanged, but the
        #    table text is stored in every shard, so every shard is stale
        with open(tracks) as fh:
            lines = fh.read().splitlines()
        with open(tracks, "w") as fh:
            fh.write("\n".join(ln + ("\tcell" if i == 0 else f"\tK{i}")
                               for i, ln in enumerate(lines)) + "\n")
        ok, before, after, changed = rerun("track table metadata changed", *f32, ranks=1)
        if ok:
            now = snapshot()
            ck.check(changed == sorted(after) and sorted(after) == sorted(before)
                     and all("\tcell" in attr_str(now[n][1].get("track_table")) for n in now),
                     f"resume track metadata changed: every shard rebuilt with the new "
                     f"track_table ({len(changed)} of {len(after)})")
        # 10. --chrom chrC: the other chromosomes' shards are kept, and stay in the manifest
        man = os.path.join(out, "manifest.tsv")
        rows_before = sorted(map(tuple, read_manifest(man)[2]))
        ok, before, after, changed = rerun("--chrom chrC", *f32, "--chrom", "chrC", ranks=1)
        if ok:
            rows_after = sorted(map(tuple, read_manifest(man)[2]))
            ck.check(sorted(after) == sorted(before) and not changed
                     and rows_after == rows_before,
                     f"resume --chrom chrC: no shard removed or rewritten, and the manifest still "
                     f"lists every shard ({len(rows_after)} rows; rewritten {changed})")
        # 11. an unfinished run of another plan: its part files and no manifest
        os.remove(man)
        stray = os.path.join(out, "chrA.part7.h5")
        with open(stray, "w") as fh:
            fh.write("a part file of an unfinished run")
        ok, before, after, changed = rerun("stray part, no manifest", *f32, ranks=1)
        if ok:
            ck.check(not os.path.exists(stray) and os.path.isfile(man),
                     "resume stray part: chrA.part7.h5 (not in the plan) removed, manifest written")
            check_folder(ck, "resume stray part", out, counts, 1, table_lines)
    return ck.finish()


def write_ref_copy(tmp, fasta):
    """The reference reads its own copy of the FASTA (with its own .fai)."""
    import shutil
    d = os.path.join(tmp, "refcopy")
    os.makedirs(d, exist_ok=True)
    dst = os.path.join(d, os.path.basename(fasta))
    shutil.copy(fasta, dst)
    return dst


if __name__ == "__main__":
    sys.exit(main())
