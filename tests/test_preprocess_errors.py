"""`ppreprocess` on bad input (docs/preprocess.md: exit 1 for bad input on every rank, 2 for a bad
command line; one error line naming the file, line and field, or the option).

Table-driven: each case changes one thing in a small valid fixture (chrA 3000 bp, chrB 2000 bp,
two tracks, S_in 256 / S_out 128) and runs `ppreprocess` directly or under `mpirun -np 2` (more
than half the cases; each rank runs inside `sh -c` that reports its exit status, so a rank
exiting 0 is caught even though mpirun's own status reflects only a failing one). Each case must:
exit with the documented status (1, or 2 for usage errors) within 60 s (no hang; the whole
process group is killed at the timeout); under mpirun, no rank may report status 0; print a
stderr line naming the input file by its base name (and, for TSS row errors, the line number as
`:N` or `line N`, and the field; for a rejected transform, the row or line number and the text)
or the option; leave no final shard (*.h5) in the output folder. The transform
`lambda x: __import__('os').system('touch PWNED')` must be rejected without creating PWNED.
Cases: TSS table without strand column; without pos and tss_pos; pos not an integer (12x, 12.5);
pos 0; strand x; chromosome absent from the FASTA; pos past the chromosome end; bigWig path that
does not exist; transforms outside the grammar (__import__, x + 1, np.exp(x), two variables);
track table without xform column; unreadable FASTA; --chrom naming a chromosome not in the FASTA;
a float16 overflow (1000 * x without arcsinh, values up to 1e4: names the track, suggests
float32); usage: odd --input_length, odd --output_length, missing --tss_file, --y_dtype float64,
--deflate 10, an unknown option.
Warning case: a bigWig lacking chrB: exit 0, a stderr warning naming the file and chrB, zeros in
that track for the samples that read it (and data in the other track).
Usage: /usr/bin/python3 tests/test_preprocess_errors.py --bin BUILD_DIR
"""

import glob
import os
import re
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from harness import (MPI_ENV, Checker, mpirun_prefix, random_genome_seq,  # noqa: E402
                     random_intervals, exe_from_args, run_group, write_bigwig, write_fasta)

S_IN, S_OUT = 256, 128
CHROMS = [("chrA", 3000), ("chrB", 2000)]
TIMEOUT = 60
GOOD_TSS = [("chrA", 1, "+"), ("chrA", 1500, "-1"), ("chrB", 700, "1"), ("chrA", 2999, "-"),
            ("chrB", 2000, "-"), ("chrB", 10, "+")]
GOOD_XFORMS = ["lambda x: np.arcsinh(np.nan_to_num(x))",
               "lambda x: np.arcsinh(1000 * np.nan_to_num(x))"]


def write_lines(path, lines):
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def tss_lines(header=("chrom", "pos", "strand", "gene"), rows=GOOD_TSS, edit=None):
    """Text lines of a TSS table; edit: (data row index, column name, new value)."""
    out = ["\t".join(header)]
    for k, (c, p, s) in enumerate(rows):
        vals = {"chrom": c, "pos": str(p), "tss_pos": str(p), "strand": s, "gene": f"g{k}",
                "start": str(p)}
        if edit and edit[0] == k:
            vals[edit[1]] = edit[2]
        out.append("\t".join(vals[h] for h in header))
    return out


def track_lines(bw_dir, xforms=GOOD_XFORMS, header=("name", "fwd", "rev", "xform"), files=None):
    out = ["\t".join(header)]
    for k, xf in enumerate(xforms):
        fwd, rev = files[k] if files else (f"{bw_dir}/t{k}.fwd.bw", f"{bw_dir}/t{k}.rev.bw")
        vals = {"name": f"track{k}", "fwd": fwd, "rev": rev, "xform": xf}
        out.append("\t".join(vals[h] for h in header))
    return out


def line_re(n):
    return re.compile(rf"(:{n}(?![0-9])|line {n}(?![0-9])|row {n}(?![0-9]))")


def make_fixture(tmp, rng):
    fasta = os.path.join(tmp, "genome.fa")
    write_fasta(fasta, [(c, random_genome_seq(rng, n, n_iupac=5)) for c, n in CHROMS])
    bw_dir = os.path.join(tmp, "bw")
    os.makedirs(bw_dir)
    for k in range(2):
        for side in ("fwd", "rev"):
            iv = {c: random_intervals(rng, 0, n, lambda r: float(10 ** r.uniform(-3, 4)))
                  for c, n in CHROMS}
            write_bigwig(os.path.join(bw_dir, f"t{k}.{side}.bw"), CHROMS, iv)
    # a bigWig without chrB, for the warning case
    iv = {"chrA": random_intervals(rng, 0, 3000, lambda r: float(r.uniform(1, 100)))}
    write_bigwig(os.path.join(bw_dir, "noB.rev.bw"), [("chrA", 3000)], iv)
    # a valid bigWig with a header and no data at all (pyBigWig reads NaN everywhere)
    write_bigwig(os.path.join(bw_dir, "empty.fwd.bw"), CHROMS, {})
    return fasta, bw_dir


def cases(bw_dir):
    """(name, ranks, tss lines or None, track lines or None, extra args / overrides, expected
    status, stderr requirements). Requirements: dict with 'file' (base name that must appear on
    one line), 'line' (line number on that same line), 'field' (word on that same line),
    'text' (string anywhere in stderr), 'any' (alternatives, one must appear)."""
    T = "tss.tsv"
    K = "tracks.tsv"
    pwned = "lambda x: __import__('os').system('touch PWNED')"
    return [
        ("TSS table without strand column", 2, tss_lines(header=("chrom", "pos", "gene")), None,
         {}, 1, {"file": T, "line": 1, "field": "strand"}),
        ("TSS table without pos and tss_pos", 1, tss_lines(header=("chrom", "start", "strand")),
         None, {}, 1, {"file": T, "line": 1, "field": "pos"}),
        ("pos not an integer (12x)", 2, tss_lines(edit=(2, "pos", "12x")), None, {}, 1,
         {"file": T, "line": 4, "field": "pos"}),
        ("pos not an integer (12.5)", 1, tss_lines(edit=(4, "pos", "12.5")), None, {}, 1,
         {"file": T, "line": 6, "field": "pos"}),
        ("pos 0", 2, tss_lines(edit=(1, "pos", "0")), None, {}, 1,
         {"file": T, "line": 3, "field": "pos"}),
        ("strand x", 1, tss_lines(edit=(3, "strand", "x")), None, {}, 1,
         {"file": T, "line": 5, "field": "strand"}),
        ("chromosome absent from the FASTA", 2, tss_lines(edit=(1, "chrom", "chrZ")), None, {},
         1, {"file": T, "line": 3, "field": "chrZ"}),
        ("pos past the chromosome end", 1, tss_lines(edit=(4, "pos", "2001")), None, {}, 1,
         {"file": T, "line": 6, "field": "pos"}),
        ("pos past the chromosome end, tss_pos column", 1,
         tss_lines(header=("chrom", "tss_pos", "strand"), edit=(0, "tss_pos", "3001")), None,
         {}, 1, {"file": T, "line": 2}),
        ("bigWig path that does not exist", 2, None,
         track_lines(bw_dir, files=[(f"{bw_dir}/t0.fwd.bw", f"{bw_dir}/t0.rev.bw"),
                                    (f"{bw_dir}/nope.fwd.bw", f"{bw_dir}/t1.rev.bw")]),
         {}, 1, {"file": "nope.fwd.bw"}),
        ("transform __import__ (code injection)", 2, None,
         track_lines(bw_dir, xforms=[GOOD_XFORMS[0], pwned]), {}, 1,
         {"file": K, "line": (2, 3), "text": "__import__"}),
        ("transform x + 1", 1, None, track_lines(bw_dir, xforms=["lambda x: x + 1",
                                                                 GOOD_XFORMS[1]]), {}, 1,
         {"file": K, "line": (1, 2), "text": "x + 1"}),
        ("transform np.exp(x)", 2, None, track_lines(bw_dir, xforms=[GOOD_XFORMS[0],
                                                                     "np.exp(x)"]), {}, 1,
         {"file": K, "line": (2, 3), "text": "np.exp(x)"}),
        ("transform with a second variable", 1, None,
         track_lines(bw_dir, xforms=["lambda x: np.arcsinh(y)", GOOD_XFORMS[1]]), {}, 1,
         {"file": K, "line": (1, 2), "text": "arcsinh(y)"}),
        ("track table without xform column", 1, None,
         track_lines(bw_dir, header=("name", "fwd", "rev")), {}, 1,
         {"file": K, "field": "xform"}),
        ("unreadable FASTA path", 2, None, None, {"--fasta_file": "missing_genome.fa"}, 1,
         {"file": "missing_genome.fa"}),
        ("--chrom naming a chromosome not in the FASTA", 2, None, None, {"--chrom": ["chrQ"]},
         1, {"any": ["chrQ"]}),
        ("float16 overflow (1000 * x, values up to 1e4)", 2, None,
         track_lines(bw_dir, xforms=[GOOD_XFORMS[0], "lambda x: 1000 * np.nan_to_num(x)"]),
         {}, 1, {"any": ["track1"], "text": "float32"}),
        ("odd --input_length", 2, None, None, {"--input_length": "255"}, 2,
         {"any": ["input_length"]}),
        ("odd --output_length", 1, None, None, {"--output_length": "127"}, 2,
         {"any": ["output_length"]}),
        ("missing --tss_file", 2, None, None, {"--tss_file": None}, 2, {"any": ["tss_file"]}),
        ("--y_dtype float64", 1, None, None, {"--y_dtype": "float64"}, 2, {"any": ["y_dtype"]}),
        ("--deflate 10", 1, None, None, {"--deflate": "10"}, 2, {"any": ["deflate"]}),
        ("unknown option", 1, None, None, {"--bogus_option": "1"}, 2,
         {"any": ["bogus_option"]}),
    ]


def build_args(case_dir, fasta, tss_path, track_path, overrides):
    opts = {"--h5_folder": os.path.join(case_dir, "out"), "--tss_file": tss_path,
            "--fasta_file": fasta, "--bigwig_files": track_path, "--input_length": str(S_IN),
            "--output_length": str(S_OUT)}
    for k, v in overrides.items():
        if v is None:
            opts.pop(k, None)
        else:
            opts[k] = v
    args = []
    for k, v in opts.items():
        args.append(k)
        args.extend(v if isinstance(v, list) else [v])
    return args


def launch(exe, ranks, args, cwd):
    """Run directly (ranks 1) or under mpirun -np ranks with each rank reporting its status.
    Returns (proc, per-rank statuses or None)."""
    if ranks == 1:
        return run_group([exe] + args, cwd=cwd, timeout=TIMEOUT), None
    wrapper = ('"$0" "$@"; rc=$?; echo "RANK_STATUS ${OMPI_COMM_WORLD_RANK:-?} $rc" >&2; '
               'exit $rc')
    proc = run_group(mpirun_prefix(ranks) + ["sh", "-c", wrapper, exe] + args, cwd=cwd,
                     timeout=TIMEOUT, env_extra=MPI_ENV)
    statuses = [int(m.group(1)) for m in re.finditer(r"RANK_STATUS \S+ (\d+)", proc.stderr)]
    return proc, statuses


def check_stderr(stderr, req):
    """Returns (ok, what was looked for)."""
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("RANK_STATUS")]
    what = []
    ok = True
    if "file" in req:
        cand = [ln for ln in lines if req["file"] in ln]
        what.append(f"a line naming {req['file']}")
        if "line" in req:
            nums = req["line"] if isinstance(req["line"], tuple) else (req["line"],)
            cand = [ln for ln in cand if any(line_re(n).search(ln) for n in nums)]
            what.append("with line " + " or ".join(str(n) for n in nums))
        if "field" in req:
            cand = [ln for ln in cand if req["field"] in ln]
            what.append(f"and {req['field']!r}")
        ok = ok and bool(cand)
    if "any" in req:
        ok = ok and any(any(a in ln for a in req["any"]) for ln in lines)
        what.append(f"a line naming {' or '.join(req['any'])}")
    if "text" in req:
        ok = ok and req["text"] in stderr
        what.append(f"the text {req['text']!r}")
    return ok, ", ".join(what)


def main():
    exe = exe_from_args(__doc__, "ppreprocess")
    ck = Checker()
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        fasta, bw_dir = make_fixture(tmp, rng)
        n_mpi = 0
        all_cases = cases(bw_dir)
        for k, (name, ranks, tss, trk, overrides, want_rc, req) in enumerate(all_cases):
            case_dir = os.path.join(tmp, f"case{k:02d}")
            os.makedirs(case_dir)
            tss_path = os.path.join(case_dir, "tss.tsv")
            track_path = os.path.join(case_dir, "tracks.tsv")
            write_lines(tss_path, tss if tss is not None else tss_lines())
            write_lines(track_path, trk if trk is not None else track_lines(bw_dir))
            ov = dict(overrides)
            if "--fasta_file" in ov and ov["--fasta_file"]:
                ov["--fasta_file"] = os.path.join(case_dir, ov["--fasta_file"])
            argv = build_args(case_dir, fasta, tss_path, track_path, ov)
            print(f"--- case {k}: {name} ({'mpirun -np 2' if ranks > 1 else 'one process'})")
            proc, statuses = launch(exe, ranks, argv, case_dir)
            n_mpi += ranks > 1
            extra = ""
            ok = proc.returncode == want_rc and not proc.timed_out
            if statuses is not None:
                ok = ok and 0 not in statuses
                extra = f"; rank statuses reported {statuses}"
            ck.check(ok, f"{name}: exit status {want_rc} (got {proc.returncode}"
                         f"{', timed out' if proc.timed_out else ''}{extra})")
            s_ok, what = check_stderr(proc.stderr, req)
            ck.check(s_ok, f"{name}: stderr has {what}")
            left = glob.glob(os.path.join(case_dir, "out", "*.h5"))
            ck.check(not left, f"{name}: no final shard left in the output folder "
                               f"({[os.path.basename(p) for p in left]})")
        pwned = glob.glob(os.path.join(tmp, "**", "PWNED"), recursive=True) \
            + glob.glob("PWNED")
        ck.check(not pwned, f"the __import__ transform created no PWNED file ({pwned})")
        ck.check(2 * n_mpi >= len(all_cases),
                 f"{n_mpi} of {len(all_cases)} cases ran under mpirun -np 2")

        def run_tracks(name, files):
            """A run (mpirun -np 2) with valid TSSs and the given (fwd, rev) files."""
            case_dir = os.path.join(tmp, name)
            os.makedirs(case_dir)
            tss_path = os.path.join(case_dir, "tss.tsv")
            track_path = os.path.join(case_dir, "tracks.tsv")
            write_lines(tss_path, tss_lines())
            write_lines(track_path, track_lines(bw_dir, files=[
                (f"{bw_dir}/{fwd}", f"{bw_dir}/{rev}") for fwd, rev in files]))
            proc, statuses = launch(exe, 2, build_args(case_dir, fasta, tss_path, track_path, {}),
                                    case_dir)
            return case_dir, proc, statuses

        # Warning case: a bigWig without chrB -> success, a warning, zeros for that track.
        print("--- warning case: noB.rev.bw lacks chrB (mpirun -np 2)")
        case_dir, proc, statuses = run_tracks("warn", [("t0.fwd.bw", "t0.rev.bw"),
                                                       ("t1.fwd.bw", "noB.rev.bw")])
        if ck.check(proc.returncode == 0 and not proc.timed_out and 0 in (statuses or [0])
                    and set(statuses or [0]) == {0},
                    f"bigWig lacking chrB: exit status 0 (got {proc.returncode}, ranks "
                    f"{statuses})"):
            warn = [ln for ln in proc.stderr.splitlines() if "noB.rev" in ln and "chrB" in ln]
            ck.check(bool(warn), f"bigWig lacking chrB: a stderr warning names noB.rev.bw and "
                                 f"chrB ({warn[:1]})")
            shard = os.path.join(case_dir, "out", "chrB.h5")
            if ck.check(os.path.isfile(shard), "bigWig lacking chrB: chrB.h5 written"):
                with h5py.File(shard, "r") as f:
                    y, strand = f["y"][...].astype(np.float64), f["strand"][...]
                minus = strand < 0
                ck.check(minus.any() and (~minus).any()
                         and np.all(y[minus][:, :, 1] == 0)
                         and np.abs(y[~minus][:, :, 1]).max() > 0
                         and np.abs(y[minus][:, :, 0]).max() > 0,
                         f"bigWig lacking chrB: track 1 is 0 on the {int(minus.sum())} - strand "
                         f"samples of chrB (which read noB.rev.bw), data elsewhere")

        # A bigWig with no data at all is valid: its track reads as no data (xform(NaN) = 0).
        print("--- empty bigWig: empty.fwd.bw has a header and no data (mpirun -np 2)")
        case_dir, proc, statuses = run_tracks("empty", [("empty.fwd.bw", "t0.rev.bw"),
                                                        ("t1.fwd.bw", "t1.rev.bw")])
        if ck.check(proc.returncode == 0 and not proc.timed_out and set(statuses or [0]) == {0},
                    f"empty bigWig: exit status 0 (got {proc.returncode}, ranks {statuses})"):
            shard = os.path.join(case_dir, "out", "chrA.h5")
            with h5py.File(shard, "r") as f:
                y, strand = f["y"][...].astype(np.float64), f["strand"][...]
            plus = strand > 0
            ck.check(plus.any() and np.all(y[plus][:, :, 0] == 0)
                     and np.abs(y[plus][:, :, 1]).max() > 0,
                     f"empty bigWig: track 0 is 0 on the {int(plus.sum())} + strand samples of "
                     f"chrA (which read empty.fwd.bw), track 1 has data")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
