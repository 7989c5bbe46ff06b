"""Small shared helpers for the tests that drive the C programs: running a command, the
tolerance check with its printout, TSV/FASTA writing, and checking a scored variant table
against the reference (tests/ref/promoterai_ref.py). No side effects on import."""

import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promoterai_ref as R  # noqa: E402


class Checker:
    """Collects PASS/FAIL lines; exit status from failures()."""

    def __init__(self):
        self.failed = []

    def check(self, ok, what):
        print(("PASS " if ok else "FAIL ") + what, flush=True)
        if not ok:
            self.failed.append(what)
        return ok

    def finish(self):
        if self.failed:
            print(f"{len(self.failed)} check(s) failed:")
            for f in self.failed:
                print("  " + f)
            return 1
        print("all checks passed")
        return 0


def run(cmd, cwd=None, timeout=120):
    """Run a command; print it and its stderr tail; return CompletedProcess."""
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0 or proc.stderr:
        tail = proc.stderr.strip().splitlines()[-15:]
        for line in tail:
            print("  stderr: " + line)
    return proc


def binary_from_args(doc, name):
    """The common start of a test script: parse `--bin DIR`, pin torch to 2 threads (the CI
    machine's cores), and return the absolute path of DIR/name (exits if it is missing)."""
    import argparse
    import torch
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--bin", required=True, help="directory holding the built programs")
    args = ap.parse_args()
    torch.set_num_threads(2)
    return os.path.abspath(require_binary(args.bin, name))


def exe_from_args(doc, name):
    """`--bin DIR` parsing for tests that need no torch: the absolute path of DIR/name."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--bin", required=True, help="directory holding the built programs")
    return os.path.abspath(require_binary(ap.parse_args().bin, name))


def require_binary(bin_dir, name):
    path = os.path.join(bin_dir, name)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        print(f"FAIL missing executable {path}")
        sys.exit(1)
    return path


def allclose_report(got, ref, atol, rtol):
    """Elementwise |got - ref| <= atol + rtol*|ref|. Returns (ok, max_abs, max_rel, worst_ratio)
    where max_rel is over entries with |ref| > atol, and worst_ratio = max err/allowed."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    err = np.abs(got - ref)
    allowed = atol + rtol * np.abs(ref)
    big = np.abs(ref) > atol
    max_rel = float((err[big] / np.abs(ref[big])).max()) if big.any() else 0.0
    ratio = float((err / allowed).max()) if err.size else 0.0
    ok = bool(np.all(err <= allowed)) and bool(np.all(np.isfinite(got)))
    return ok, float(err.max()) if err.size else 0.0, max_rel, ratio


def write_fasta(path, chroms, width=60):
    """chroms: list of (name, sequence[, description]). Fixed line width per sequence."""
    with open(path, "w") as fh:
        for item in chroms:
            name, seq = item[0], item[1]
            desc = (" " + item[2]) if len(item) > 2 else ""
            fh.write(f">{name}{desc}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i:i + width] + "\n")


def write_tsv(path, header, rows):
    with open(path, "w") as fh:
        fh.write("\t".join(header) + "\n")
        for r in rows:
            fh.write("\t".join(r) + "\n")


def read_tsv_lines(path):
    with open(path) as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.split("\t") for line in lines]


# Tolerance for the raw column. raw is a mean of differences of head-0 outputs. The scoring
# tests use head outputs of scale ~10 (head_scale 10, so that raw reaches ~0.1..0.4 and tanh
# visibly changes the printed score); a float32 forward pass then gives raw within ~4e-7 of the
# float64 reference (measured with the float32 torch reference), and a mean cannot exceed its
# largest term, so 1e-5 leaves >20x headroom while the raws checked are ~1e-4..0.4.
RAW_ATOL = 1e-5
# The printed score may differ by one in the last decimal only where a float32 computation
# could legitimately round the other way: raw within 2e-6 of a 4th-decimal rounding boundary
# (or tanh of the rounded value within 1e-6 of a printing boundary).
BOUNDARY_RAW_TOL = 2e-6
BOUNDARY_PRINT_TOL = 1e-6


def reference_results(model, fasta, variants_header, variant_rows, input_length):
    idx = {name: variants_header.index(name) for name in ("chrom", "pos", "ref", "alt", "strand")}
    variants = [{k: row[i] for k, i in idx.items()} for row in variant_rows]
    return R.twin_scores(model, fasta, variants, input_length)


def check_scored_table(ck, out_path, header, rows, ref_results, with_raw, label):
    """Check a promoterai output table: same header and rows in order plus score (and raw),
    values against the reference. ref_results: list of (raw or None, reason)."""
    if not ck.check(os.path.isfile(out_path), f"{label}: output file {os.path.basename(out_path)}"
                                              f" exists"):
        return
    out = read_tsv_lines(out_path)
    added = ["score", "raw"] if with_raw else ["score"]
    ck.check(out[0] == header + added,
             f"{label}: header is input header + {added} (got {out[0]})")
    ck.check(len(out) - 1 == len(rows), f"{label}: {len(rows)} rows in order "
                                        f"(got {len(out) - 1})")
    n_cols = len(header) + len(added)
    max_raw_err = max_raw_rel = 0.0
    n_scored = n_boundary = 0
    bad_rows = []
    for k, (row, (ref_raw, reason)) in enumerate(zip(rows, ref_results)):
        got = out[k + 1] if k + 1 < len(out) else []
        if len(got) != n_cols or got[:len(header)] != row:
            bad_rows.append(f"row {k + 1}: columns {got} do not extend input {row}")
            continue
        score = got[len(header)]
        if ref_raw is None:
            if score != "" or (with_raw and got[-1] != ""):
                bad_rows.append(f"row {k + 1}: unscorable ({reason}) but got score {score!r}")
            continue
        if score == "":
            bad_rows.append(f"row {k + 1}: reference scores it (raw {ref_raw:.6g}) but score empty")
            continue
        n_scored += 1
        want = R.format_score(R.score_from_raw(ref_raw))
        if with_raw:
            try:
                c_raw = float(got[-1])
            except ValueError:
                bad_rows.append(f"row {k + 1}: raw {got[-1]!r} is not a number")
                c_raw = float("nan")
            err = abs(c_raw - ref_raw)
            if err != err:                      # NaN from the C side
                err = float("inf")
            max_raw_err = max(max_raw_err, err)
            max_raw_rel = max(max_raw_rel, err / max(abs(ref_raw), 1e-30))
            if not err <= RAW_ATOL:
                bad_rows.append(f"row {k + 1}: raw {got[-1]} vs reference {ref_raw:.9g} "
                                f"(abs err {err:.2e} > {RAW_ATOL})")
        if score != want:
            near = R.score_near_boundary(ref_raw, BOUNDARY_RAW_TOL, BOUNDARY_PRINT_TOL)
            try:
                one_apart = abs(round((float(score) - float(want)) * 1e4)) == 1 \
                    and len(score.split(".")[-1]) == 4
            except ValueError:
                one_apart = False
            if near and one_apart:
                n_boundary += 1
            else:
                bad_rows.append(f"row {k + 1}: score {score!r} vs reference {want!r} "
                                f"(raw {ref_raw:.9g})")
    for b in bad_rows[:20]:
        print("  " + b)
    msg = f"{label}: {n_scored} scored rows and {len(rows) - n_scored} unscorable rows match"
    if with_raw:
        msg += (f"; raw max abs err {max_raw_err:.2e} (tol {RAW_ATOL}), "
                f"max rel err {max_raw_rel:.2e}")
    msg += f"; {n_boundary} score(s) one digit apart at a rounding boundary"
    ck.check(not bad_rows, msg)


def check_warnings(ck, stderr, header, rows, ref_results, label):
    """Each unscorable row must be named by some stderr line: the line holds the row's pos value,
    its 1-based data row number or its file line number as a separate token (the exact wording
    of the warning is not specified)."""
    lines = stderr.splitlines()
    pos_col = header.index("pos")
    missing = []
    n_bad = 0
    for k, (row, (raw, reason)) in enumerate(zip(rows, ref_results)):
        if raw is not None:
            continue
        n_bad += 1
        tokens = {row[pos_col], str(k + 1), str(k + 2)}
        pattern = re.compile(r"(?<![0-9A-Za-z.])(" + "|".join(re.escape(t) for t in tokens if t)
                             + r")(?![0-9A-Za-z])")
        if not any(pattern.search(line) for line in lines):
            missing.append(f"row {k + 1} ({reason})")
    for m in missing:
        print("  no stderr line names " + m)
    ck.check(not missing, f"{label}: a stderr warning names each of the {n_bad} unscorable rows")


# ---------------------------------------------------------------------------------------------
# Helpers for the preprocessing tests (MPI runs, bigWig writing, HDF5 shard inspection).

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def mpirun_prefix(n_ranks):
    """`mpirun --oversubscribe -np N` (Open MPI; the CI machine has 2 cores and runs as root)."""
    import shutil
    exe = shutil.which("mpirun")
    if exe is None:
        print("FAIL mpirun not found on PATH")
        sys.exit(1)
    return [exe, "--oversubscribe", "-np", str(n_ranks)]


def run_group(cmd, cwd=None, timeout=120, env_extra=None, quiet=False):
    """Like run(), but the command runs in its own process group, which is killed as a whole
    when the timeout expires (so that no MPI rank outlives a hung mpirun). Returns a
    CompletedProcess with an extra attribute timed_out."""
    import signal
    env = dict(os.environ)
    env.update(env_extra or {})
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    res.timed_out = timed_out
    if not quiet and (res.returncode != 0 or res.stderr):
        for line in res.stderr.strip().splitlines()[-15:]:
            print("  stderr: " + line)
    if timed_out:
        print(f"  (killed after {timeout} s)")
    return res


def write_bigwig(path, chrom_sizes, intervals):
    """chrom_sizes: list of (name, length) in file order; intervals: dict name -> list of
    (start, end, value) sorted, non-overlapping (0-based half-open)."""
    import pyBigWig
    bw = pyBigWig.open(path, "w")
    bw.addHeader(list(chrom_sizes), maxZooms=2)
    for name, _ in chrom_sizes:
        iv = intervals.get(name, [])
        if not iv:
            continue
        bw.addEntries([name] * len(iv), [int(a) for a, _, _ in iv],
                      ends=[int(b) for _, b, _ in iv], values=[float(v) for _, _, v in iv])
    bw.close()


def h5_filters(dset):
    """Filter ids of a dataset's creation property list (1 deflate, 2 shuffle, ...)."""
    dcpl = dset.id.get_create_plist()
    return [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]


def h5_attr_is_vlen_utf8(obj, name):
    """True when attribute `name` is a variable-length UTF-8 string (scalar or array)."""
    import h5py
    tid = obj.attrs.get_id(name).get_type()
    return (isinstance(tid, h5py.h5t.TypeStringID) and tid.is_variable_str()
            and tid.get_cset() == h5py.h5t.CSET_UTF8)


def attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def read_manifest(path):
    """(params dict from `# key = value` lines, header, rows as lists of strings)."""
    params, table = {}, []
    with open(path) as fh:
        for line in fh.read().split("\n"):
            if not line.strip():
                continue
            if line.startswith("#"):
                body = line[1:]
                if "=" in body:
                    k, v = body.split("=", 1)
                    params[k.strip()] = v.strip()
                continue
            table.append(line.split("\t"))
    header = table[0] if table else []
    return params, header, table[1:]


def tree_stat(folder, suffix=".h5"):
    """name -> (st_ino, st_mtime_ns) of the files in folder ending with suffix."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(suffix):
            st = os.stat(os.path.join(folder, name))
            out[name] = (st.st_ino, st.st_mtime_ns)
    return out


def random_genome_seq(rng, n, lower_runs=(), n_runs=(), n_iupac=0):
    """Random ACGT sequence of length n; lower_runs / n_runs: (start, end) ranges made lower case
    / N; n_iupac other letters (IUPAC codes, some lower case) at random positions."""
    seq = np.array(list("ACGT"))[rng.integers(0, 4, n)]
    for a, b in lower_runs:
        seq[a:b] = np.char.lower(seq[a:b])
    for a, b in n_runs:
        seq[a:b] = "N"
    if n_iupac:
        where = rng.choice(n, size=n_iupac, replace=False)
        seq[where] = rng.choice(list("RYKMSWBDHVNnrykmswbdhv"), size=n_iupac)
    return "".join(seq)


def random_intervals(rng, start, end, value_fn, gap_prob=0.3, max_len=40):
    """Non-overlapping sorted (start, end, value) intervals covering [start, end) except for
    random gaps; value_fn(rng) gives each interval's value."""
    out = []
    p = start
    while p < end:
        length = int(rng.integers(1, max_len + 1))
        q = min(p + length, end)
        if rng.random() >= gap_prob:
            out.append((p, q, float(np.float32(value_fn(rng)))))
        p = q
    return out
