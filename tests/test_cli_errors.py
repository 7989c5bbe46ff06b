"""Table-driven command-line tests of `promoterai` (and the help/usage paths of `pmodel`).

Setup: `pmodel init` a small model (4 blocks, D 8, L 40, O 16, one head of 2 tracks), a small
FASTA written here (chrA, 500 random bases), and a valid variant TSV.

Every case runs in its own fresh directory, which is the working directory, so the default
output `<dir of V>/<stem of V>.<model name><suffix of V>` lands there. Each case states its
arguments and inputs, the expected exit status, and a regex the stderr must match. For error
cases the case directory and the shared inputs must be exactly as they were before (no output
file, no `*.tmp.*` file, nothing new), stderr must hold exactly one `[E function] ...` line and it
must match the regex (file name, line and field where relevant). Positive cases check the output
table (REFERENCE.md section 3: rows kept in place, `score` column appended, empty score and a
`[W ...]` warning naming file:line and the reason for unscorable rows, then a summary warning).

Cases run two at a time (--jobs); each child gets OMP_NUM_THREADS=1. Last, a run killed by
SIGTERM while scoring must leave neither its output nor its temporary file, and a table read
from a pipe must be scored whole.
Usage: /usr/bin/python3 tests/test_cli_errors.py --bin BUILD_DIR [--keep] [--jobs N]
"""

import argparse
import concurrent.futures
import gzip
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

FAILURES = []
BIN = None
ROOT = None
SHARED = None
GENOME = None          # the chrA sequence

MODEL_ARGS = ["--num_blocks", "4", "--model_dim", "8", "--input_length", "40",
              "--output_length", "16", "--output_dims", "2"]
L = 40
SCORE_RE = re.compile(r"^-?\d\.\d{4}$")


def check(ok, what, detail=""):
    print(("PASS " if ok else "FAIL ") + what + ("" if ok or not detail else "\n     " +
                                                   detail.replace("\n", "\n     ")))
    if not ok:
        FAILURES.append(what)
    return ok


def run(prog, args, cwd, timeout=60):
    t0 = time.time()
    # One OpenMP thread per child: the cases run two at a time, and OpenMP threads spinning on
    # a busy 2-core machine make each tiny run several times slower.
    p = subprocess.run([os.path.join(BIN, prog)] + list(args), cwd=cwd, capture_output=True,
                       text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return p.returncode, p.stdout, p.stderr, time.time() - t0


def snapshot(*dirs):
    """Every path under dirs with its size and content hash (mtimes ignored)."""
    snap = {}
    for d in dirs:
        for base, subdirs, files in os.walk(d):
            for s in subdirs:
                snap[os.path.join(base, s)] = "dir"
            for f in files:
                p = os.path.join(base, f)
                with open(p, "rb") as fh:
                    snap[p] = hashlib.sha1(fh.read()).hexdigest()
    return snap


def read_table(path):
    with open(path, newline="") as f:
        text = f.read()
    return [line.split("\t") for line in text.splitlines()]


def rc_str(rc):
    return "/".join(str(r) for r in rc) if isinstance(rc, (tuple, list, set)) else str(rc)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def write_fasta(path, records, width=60):
    with open(path, "w") as f:
        for name, seq in records:
            f.write(">" + name + "\n")
            for i in range(0, len(seq), width):
                f.write(seq[i:i + width] + "\n")


def other_base(b):
    return "A" if b.upper() != "A" else "C"


def var_rows():
    """Valid rows on chrA: SNV +, deletion -, SNV 1, insertion -1."""
    g = GENOME
    return [
        ["chrA", "100", g[99], other_base(g[99]), "+"],
        ["chrA", "200", g[199:201], g[199], "-"],
        ["chrA", "300", g[299], other_base(g[299]), "1"],
        ["chrA", "400", g[399], g[399] + "TT", "-1"],
    ]


HEADER = ["chrom", "pos", "ref", "alt", "strand"]


def tsv(header, rows, eol="\n"):
    return eol.join("\t".join(r) for r in [header] + rows) + eol


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


def copy_model(dst, edit=None):
    os.makedirs(dst, exist_ok=True)
    shutil.copy(os.path.join(SHARED, "m", "model.h5"), os.path.join(dst, "model.h5"))
    if edit:
        with h5py.File(os.path.join(dst, "model.h5"), "a") as f:
            edit(f)


def setup(root):
    global SHARED, GENOME
    SHARED = os.path.join(root, "shared")
    os.makedirs(SHARED)
    rng = random.Random(12345)
    GENOME = "".join(rng.choice("ACGT") for _ in range(500))
    write_fasta(os.path.join(SHARED, "g.fa"), [("chrA", GENOME)])
    rc, out, err, _ = run("pmodel", ["init", "--model_folder", "m", "--seed", "3"] + MODEL_ARGS,
                          cwd=SHARED)
    if not check(rc == 0 and os.path.isfile(os.path.join(SHARED, "m", "model.h5")),
                 "setup: pmodel init of the small model", err):
        return None
    # baseline scores (also builds g.fa.fai once, so later cases do not change the shared dir)
    write(os.path.join(SHARED, "base", "v.tsv"), tsv(HEADER, var_rows()))
    rc, out, err, _ = run("promoterai", ["--model_folder", "../m", "--var_file", "v.tsv",
                                         "--fasta_file", "../g.fa", "--input_length", str(L),
                                         "--quiet"], cwd=os.path.join(SHARED, "base"))
    outp = os.path.join(SHARED, "base", "v.m.tsv")
    if not check(rc == 0 and os.path.isfile(outp), "setup: baseline scoring of the valid TSV", err):
        return None
    tab = read_table(outp)
    ok = (tab[0] == HEADER + ["score"] and len(tab) == 5 and
          all(SCORE_RE.match(r[-1]) for r in tab[1:]))
    if not check(ok, "setup: baseline output has the 4 rows and a score column", repr(tab)):
        return None
    return [r[-1] for r in tab[1:]]


# --------------------------------------------------------------------------------------------
# Case runner
# --------------------------------------------------------------------------------------------

def std_args(**over):
    a = {"--model_folder": os.path.join(SHARED, "m"), "--var_file": "v.tsv",
         "--fasta_file": os.path.join(SHARED, "g.fa"), "--input_length": str(L)}
    a.update(over)
    out = []
    for k, v in a.items():
        if v is None:
            continue
        out += [k, v]
    return out


def run_case(case):
    """Runs one case in a fresh directory; returns (ok, description, detail).
    case keys: name, prog (default promoterai), args (list or callable(dir)), prep(dir),
    rc (int or tuple), err (regex on the [E] line / whole stderr), stdout (regex),
    error (bool: expect no new files and one [E] line; default rc != 0), post(dir, out, err)."""
    d = os.path.join(ROOT, "case%02d" % case["no"])
    os.makedirs(d)
    if case.get("prep"):
        case["prep"](d)
    elif case.get("prog", "promoterai") == "promoterai":
        write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
    args = case["args"](d) if callable(case["args"]) else case["args"]
    before = snapshot(d, SHARED)
    rc, out, err, secs = run(case.get("prog", "promoterai"), args, cwd=d)
    after = snapshot(d, SHARED)
    exp_rc = case["rc"]
    exp_set = exp_rc if isinstance(exp_rc, (tuple, list, set)) else (exp_rc,)
    problems = []
    if rc not in exp_set:
        problems.append("exit %d, expected %s" % (rc, rc_str(exp_rc)))
    is_error = case.get("error", 0 not in exp_set)
    elines = [ln for ln in err.splitlines() if ln.startswith("[E ")]
    if is_error:
        if len(elines) != 1:
            problems.append("expected exactly one '[E ...]' line on stderr, got %d" % len(elines))
        for ln in elines:
            if not re.match(r"^\[E [A-Za-z_][A-Za-z0-9_]*\] \S", ln):
                problems.append("error line not of the form '[E function] message': " + ln)
        new = sorted(set(after) - set(before))
        gone = sorted(set(before) - set(after))
        changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
        if new or gone or changed:
            problems.append("files changed by a failing run: new %s, removed %s, modified %s"
                            % ([os.path.relpath(p, ROOT) for p in new],
                               [os.path.relpath(p, ROOT) for p in gone],
                               [os.path.relpath(p, ROOT) for p in changed]))
    else:
        if elines:
            problems.append("unexpected error line(s): " + " | ".join(elines))
    tmp_left = [os.path.join(b, f) for top in (d, SHARED) for b, _, fs in os.walk(top)
                for f in fs if ".tmp." in f]
    if tmp_left:
        problems.append("leftover temp files: %s" % [os.path.relpath(p, ROOT) for p in tmp_left])
    if case.get("err"):
        target = "\n".join(elines) if (is_error and elines) else err
        if not re.search(case["err"], target, re.M):
            problems.append("stderr does not match /%s/" % case["err"])
    if case.get("stdout") and not re.search(case["stdout"], out, re.M):
        problems.append("stdout does not match /%s/" % case["stdout"])
    if not problems and case.get("post"):
        try:
            problems += case["post"](d, out, err) or []
        except Exception as e:  # a post-check crash is a failure of the case, not of the test
            problems.append("post-check raised %r" % (e,))
    shown = " ".join(a.replace(ROOT, "$TMP") for a in args)
    what = "%-62s exit %s%s  [%s %s] (%.1fs)" % (
        case["name"], rc_str(exp_rc), (" /" + case["err"] + "/") if case.get("err") else "",
        case.get("prog", "promoterai"), shown, secs)
    detail = "; ".join(problems)
    if problems:
        detail += "\nstderr: " + (err.strip() or "(empty)")
        if out.strip():
            detail += "\nstdout: " + out.strip()[:500]
    return not problems, what, detail


# --------------------------------------------------------------------------------------------
# Post checks for the positive cases
# --------------------------------------------------------------------------------------------

def expect_output(path, header, nrows, scored=None, base_scores=None):
    """Returns a list of problems with the output table at path."""
    def post(d, out, err):
        p = os.path.join(d, path)
        if not os.path.isfile(p):
            return ["no output file %s (dir holds %s)" % (path, sorted(os.listdir(d)))]
        tab = read_table(p)
        probs = []
        if tab[0] != header:
            probs.append("header %r, expected %r" % (tab[0], header))
        if len(tab) - 1 != nrows:
            probs.append("%d data rows, expected %d" % (len(tab) - 1, nrows))
        si = header.index("score")
        for i, r in enumerate(tab[1:]):
            if len(r) != len(header):
                probs.append("row %d has %d fields" % (i + 1, len(r)))
            elif any("\r" in c for c in r):
                probs.append("row %d has a carriage return inside a field: %r" % (i + 1, r))
            elif scored is None or i in scored:
                if not SCORE_RE.match(r[si]):
                    probs.append("row %d score %r is not a 4-decimal number" % (i + 1, r[si]))
            elif r[si] != "":
                probs.append("row %d should have an empty score, has %r" % (i + 1, r[si]))
        if base_scores is not None and not probs:
            got = [r[si] for r in tab[1:]]
            if got != base_scores:
                probs.append("scores %r differ from the baseline %r" % (got, base_scores))
        return probs
    return post


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

def gpu_visible():
    rc, out, err, _ = run("pmodel", ["build"], cwd=ROOT)
    m = re.search(r"(\d+) GPU", out + err)
    return bool(m and int(m.group(1)) > 0)


def cases(base):
    g = GENOME
    C = []

    def add(**kw):
        C.append(kw)

    def with_vars(text, name="v.tsv", mode="w"):
        return lambda d: write(os.path.join(d, name), text, mode)

    def with_header(h):
        return with_vars(tsv(h, var_rows()))

    def with_row(line_no, row):
        """Valid table with data line line_no (file line number, header = 1) replaced."""
        rows = [list(r) for r in var_rows()]
        rows[line_no - 2] = row
        return with_vars(tsv(HEADER, rows))

    # ---- files that cannot be read -------------------------------------------------------
    add(name="missing var file", args=std_args(**{"--var_file": "nope.tsv"}), rc=1,
        err=r"nope\.tsv.*(No such file|not exist|cannot)")
    add(name="missing FASTA", args=std_args(**{"--fasta_file": "nope.fa"}), rc=1,
        err=r"nope\.fa")

    def prep_binary(d):
        write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
        write(os.path.join(d, "bin.fa"), bytes(np.random.RandomState(7).randint(0, 256, 4000)
                                               .astype(np.uint8)), "wb")
    add(name="FASTA is random binary", prep=prep_binary,
        args=std_args(**{"--fasta_file": "bin.fa"}), rc=1, err=r"bin\.fa")

    def prep_gzip(d):
        write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
        with open(os.path.join(SHARED, "g.fa"), "rb") as f:
            write(os.path.join(d, "g.fa.gz"), gzip.compress(f.read()), "wb")
    add(name="FASTA is gzip (not bgzip)", prep=prep_gzip,
        args=std_args(**{"--fasta_file": "g.fa.gz"}), rc=1, err=r"g\.fa\.gz.*(bgzip|gzip)")

    def prep_textnotfasta(d):
        write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
        write(os.path.join(d, "notes.fa"), "this is not a fasta file\njust text\n")
    add(name="FASTA is plain text without '>' records", prep=prep_textnotfasta,
        args=std_args(**{"--fasta_file": "notes.fa"}), rc=1, err=r"notes\.fa.*'>'")

    def prep_uneven(d):
        write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
        g = GENOME
        write(os.path.join(d, "uneven.fa"), ">chrA\n%s\n%s\n%s\n" % (g[:60], g[60:100],
                                                                     g[100:]))
    add(name="FASTA with lines of different lengths: the reason is given", prep=prep_uneven,
        args=std_args(**{"--fasta_file": "uneven.fa"}), rc=1,
        err=r"uneven\.fa.*different lengths")
    add(name="FASTA is a directory",
        prep=lambda d: (write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows())),
                        os.makedirs(os.path.join(d, "gdir"))),
        args=std_args(**{"--fasta_file": "gdir"}), rc=1, err=r"gdir.*is a directory")

    # ---- model folder --------------------------------------------------------------------
    add(name="missing model folder", args=std_args(**{"--model_folder": "nomodel"}), rc=1,
        err=r"nomodel")

    def prep_empty_model(d):
        write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
        os.makedirs(os.path.join(d, "em"))
    add(name="model folder without model.h5", prep=prep_empty_model,
        args=std_args(**{"--model_folder": "em"}), rc=1, err=r"em.*model\.h5")

    def prep_model(edit=None, raw=None):
        def prep(d):
            write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
            if raw is not None:
                os.makedirs(os.path.join(d, "bm"))
                with open(os.path.join(SHARED, "m", "model.h5"), "rb") as f:
                    data = f.read()
                write(os.path.join(d, "bm", "model.h5"), raw(data), "wb")
            else:
                copy_model(os.path.join(d, "bm"), edit)
        return prep
    bm = std_args(**{"--model_folder": "bm"})
    add(name="truncated model.h5 (first half of the bytes)",
        prep=prep_model(raw=lambda b: b[:len(b) // 2]), args=bm, rc=1,
        err=r"bm/model\.h5")

    def wrong_shape(f):
        del f["block_2/ffn1/kernel"]
        f["block_2/ffn1/kernel"] = np.zeros((8, 31), np.float32)
    add(name="model.h5 dataset of wrong shape", prep=prep_model(wrong_shape), args=bm, rc=1,
        err=r"bm/model\.h5.*block_2/ffn1/kernel.*31")

    def wrong_rank(f):
        del f["stem/bias"]
        f["stem/bias"] = np.zeros((8, 1), np.float32)
    add(name="model.h5 dataset of wrong rank (stem/bias [8,1])", prep=prep_model(wrong_rank),
        args=bm, rc=1, err=r"bm/model\.h5.*stem/bias")

    def missing_ds(f):
        del f["head_0/proj_4/bias"]
    add(name="model.h5 missing dataset", prep=prep_model(missing_ds), args=bm, rc=1,
        err=r"bm/model\.h5.*head_0/proj_4/bias")

    def missing_bn(f):
        del f["block_3/bn2/moving_variance"]
    add(name="model.h5 missing BN moving_variance", prep=prep_model(missing_bn), args=bm, rc=1,
        err=r"bm/model\.h5.*block_3/bn2/moving_variance")

    def missing_attr(f):
        del f.attrs["model_dim"]
    add(name="model.h5 missing attribute", prep=prep_model(missing_attr), args=bm, rc=1,
        err=r"bm/model\.h5.*model_dim")

    def bad_version(f):
        f.attrs["format_version"] = np.int64(99)
    add(name="model.h5 unsupported format_version", prep=prep_model(bad_version), args=bm, rc=1,
        err=r"bm/model\.h5.*format_version.*99")

    # ---- option values -------------------------------------------------------------------
    add(name="--input_length odd", args=std_args(**{"--input_length": "41"}), rc=2,
        err=r"input_length.*41")
    add(name="--input_length != model's", args=std_args(**{"--input_length": "42"}), rc=2,
        err=r"input_length.*42.*40|input_length.*40.*42")
    add(name="--input_length not an integer", args=std_args(**{"--input_length": "4O"}), rc=2,
        err=r"input_length.*4O")
    add(name="--batch_size 0", args=std_args() + ["--batch_size", "0"], rc=2,
        err=r"batch_size.*0")
    add(name="--device not a device", args=std_args() + ["--device", "tpu"], rc=2,
        err=r"device.*tpu")
    for opt in ["--model_folder", "--var_file", "--fasta_file", "--input_length"]:
        add(name="missing required option " + opt, args=std_args(**{opt: None}), rc=2,
            err=re.escape(opt))
    add(name="unknown option", args=std_args() + ["--bogus_opt", "1"], rc=2,
        err=r"--bogus_opt")
    add(name="option missing its value", args=std_args() + ["--batch_size"], rc=2,
        err=r"--batch_size")
    add(name="stray positional argument", args=std_args() + ["stray"], rc=2, err=r"stray")

    gpu = gpu_visible()
    if gpu:
        print("note: this build sees a GPU; --device cuda is expected to run or to fail cleanly")
        add(name="--device cuda (GPU visible)", args=std_args() + ["--device", "cuda", "--quiet"],
            rc=(0, 1, 2), error=False, err=None)
    else:
        add(name="--device cuda without a usable GPU", args=std_args() + ["--device", "cuda"],
            rc=2, err=r"(?i)cuda.*(gpu|not|no )|gpu.*cuda")
    add(name="--threads 2 gives the same scores",
        args=std_args() + ["--threads", "2", "--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))
    add(name="--device auto runs (cpu here: same scores)" if not gpu else "--device auto runs",
        args=std_args() + ["--device", "auto", "--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 4,
                           base_scores=None if gpu else base))

    add(name="output in a directory that does not exist",
        args=std_args() + ["--output", "no_such_dir/out.tsv"], rc=1, err=r"no_such_dir/out")

    # ---- variant table -------------------------------------------------------------------
    for col in HEADER:
        h = [c if c != col else "x_" + col for c in HEADER]
        add(name="header missing column '%s'" % col, prep=with_header(h), args=std_args(),
            rc=1, err=r"v\.tsv(:1)?: .*'?%s'?" % col)
    add(name="empty var file", prep=with_vars(""), args=std_args(), rc=1, err=r"v\.tsv")
    add(name="non-numeric pos", prep=with_row(3, ["chrA", "abc", g[0], "C", "+"]),
        args=std_args(), rc=1, err=r"v\.tsv:3: .*'pos'.*abc")
    add(name="pos with a fraction", prep=with_row(4, ["chrA", "12.5", g[0], "C", "+"]),
        args=std_args(), rc=1, err=r"v\.tsv:4: .*'pos'.*12\.5")
    add(name="pos 0", prep=with_row(2, ["chrA", "0", "A", "C", "+"]), args=std_args(), rc=1,
        err=r"v\.tsv:2: .*'pos'.*0")
    add(name="unknown strand 'x'", prep=with_row(3, ["chrA", "10", g[9], "C", "x"]),
        args=std_args(), rc=1, err=r"v\.tsv:3: .*'strand'.*'?x'?")
    add(name="row with too few fields", prep=with_row(4, ["chrA", "10", g[9], "C"]),
        args=std_args(), rc=1, err=r"v\.tsv:4: .*(4|field)")
    add(name="row with too many fields", prep=with_row(3, ["chrA", "10", g[9], "C", "+", "x"]),
        args=std_args(), rc=1, err=r"v\.tsv:3: .*(6|field)")

    def late_error(d):
        rows = var_rows() * 3
        rows[-1] = ["chrA", "zz", "A", "C", "+"]
        write(os.path.join(d, "v.tsv"), tsv(HEADER, rows))
    add(name="bad row after 11 scored rows (batch 1): no partial output", prep=late_error,
        args=std_args() + ["--batch_size", "1"], rc=1, err=r"v\.tsv:13: .*'pos'")

    def keep_old(d):
        late_error(d)
        write(os.path.join(d, "v.m.tsv"), "old output\n")
    add(name="failing run leaves an existing output file untouched", prep=keep_old,
        args=std_args() + ["--batch_size", "1"], rc=1, err=r"v\.tsv:13: ")

    def stale_index(d):
        # a copy of the genome whose index predates a rewrite of the FASTA: htslib would read
        # through the old offsets, so the run must refuse (and leave both files alone)
        write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
        shutil.copy(os.path.join(SHARED, "g.fa"), os.path.join(d, "g.fa"))
        shutil.copy(os.path.join(SHARED, "g.fa.fai"), os.path.join(d, "g.fa.fai"))
        os.utime(os.path.join(d, "g.fa.fai"), (1000000000, 1000000000))
    add(name="FASTA index older than its FASTA", prep=stale_index,
        args=lambda d: std_args(**{"--fasta_file": os.path.join(d, "g.fa")}), rc=1,
        err=r"g\.fa\.fai is older than .*g\.fa")

    # ---- config files --------------------------------------------------------------------
    def with_conf(text, name="c.conf"):
        def prep(d):
            write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows()))
            write(os.path.join(d, name), text)
        return prep
    no_len = std_args(**{"--input_length": None})
    add(name="config: unknown key in [promoterai]",
        prep=with_conf("# test\n[promoterai]\nbatch_size = 2\nbatch_sise = 3\n"),
        args=no_len + ["--input_length", "40", "--config", "c.conf"], rc=2,
        err=r"c\.conf:4: .*batch_sise|batch_sise.*c\.conf:4")
    add(name="config: non-integer value",
        prep=with_conf("[promoterai]\ninput_length = 40\nbatch_size = many\n"),
        args=no_len + ["--config", "c.conf"], rc=2,
        err=r"c\.conf:3: .*batch_size.*many|batch_size.*c\.conf:3")
    add(name="config: line without '='", prep=with_conf("[promoterai]\ninput_length 40\n"),
        args=no_len + ["--config", "c.conf"], rc=2, err=r"c\.conf:2")
    add(name="config: file does not exist", args=std_args() + ["--config", "none.conf"], rc=2,
        err=r"none\.conf")
    add(name="config: batch_size = 0 is read (and rejected)",
        prep=with_conf("[promoterai]\ninput_length = 40\nbatch_size = 0\n"),
        args=no_len + ["--config", "c.conf"], rc=2, err=r"batch_size")
    add(name="config: input_length and batch_size from the file",
        prep=with_conf("# comment line\n\n[promoterai]\n  input_length=40\nbatch_size = 3\n"),
        args=no_len + ["--config", "c.conf", "--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))
    add(name="config: top-level (no section) input_length",
        prep=with_conf("input_length = 40\n"),
        args=no_len + ["--config", "c.conf", "--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))
    add(name="config: command line --batch_size overrides config batch_size = 0",
        prep=with_conf("[promoterai]\ninput_length = 40\nbatch_size = 0\n"),
        args=no_len + ["--config", "c.conf", "--batch_size", "2", "--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))
    add(name="config: command line --input_length overrides config (before --config too)",
        prep=with_conf("[promoterai]\ninput_length = 42\n"),
        args=no_len + ["--input_length", "40", "--config", "c.conf", "--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))
    add(name="config: command line value that is wrong overrides a right config value",
        prep=with_conf("[promoterai]\ninput_length = 40\n"),
        args=no_len + ["--config", "c.conf", "--input_length", "42"], rc=2,
        err=r"input_length.*42")
    add(name="config: other commands' sections are not checked by promoterai",
        prep=with_conf("[pmodel]\nnum_blocks = 4\nmodel_dim = 8\n[promoterai]\n"
                       "input_length = 40\n"),
        args=no_len + ["--config", "c.conf", "--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))
    add(name="config: required paths from the config file",
        prep=with_conf("[promoterai]\nmodel_folder = %s\nvar_file = v.tsv\nfasta_file = %s\n"
                       "input_length = 40\n" % (os.path.join(SHARED, "m"),
                                               os.path.join(SHARED, "g.fa"))),
        args=["--config", "c.conf", "--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))

    # ---- help ----------------------------------------------------------------------------
    add(name="promoterai --help", args=["--help"], rc=0, stdout=r"(?i)usage")
    for sub in ["init", "info", "predict", "build"]:
        add(name="pmodel %s --help" % sub, prog="pmodel", args=[sub, "--help"], rc=0,
            stdout=r"(?i)usage")
    add(name="pmodel without a command", prog="pmodel", args=[], rc=2,
        err=r"(?i)usage|command", error=False)
    add(name="pmodel unknown command", prog="pmodel", args=["frobnicate"], rc=2,
        err=r"frobnicate")
    # 4 blocks: receptive radius 8, so L 140 < O 128 + 16 lets padding reach the outputs
    add(name="pmodel init warns when padding reaches the outputs", prog="pmodel",
        args=["init", "--model_folder", "short", "--num_blocks", "4", "--model_dim", "8",
              "--input_length", "140", "--output_length", "128", "--output_dims", "2"], rc=0,
        err=r"input_length 140 < output_length 128 \+ 2 x receptive radius 8")
    add(name="pmodel info unknown option", prog="pmodel",
        args=["info", "--model_folder", os.path.join(SHARED, "m"), "--bogus_opt"], rc=2,
        err=r"--bogus_opt")
    add(name="pmodel build unknown option", prog="pmodel", args=["build", "--bogus_opt"], rc=2,
        err=r"--bogus_opt")

    # ---- positive cases: unscorable rows, strands, CRLF, extra columns, default name ------
    def unscorable(d):
        rows = [
            ["chrA", "100", g[99], other_base(g[99]), "+"],              # 2 ok
            ["chrZ", "100", "A", "C", "+"],                              # 3 chromosome absent
            ["chrA", "150", other_base(g[149]), "G", "+"],              # 4 ref mismatch
            ["chrA", "160", g[159], "N", "+"],                           # 5 alt N
            ["chrA", "170", g[169], "-", "-"],                           # 6 alt '-'
            ["chrA", "180", g[179], "", "+"],                            # 7 alt empty
            ["chrA", "190", "-", "A", "+"],                              # 8 ref '-'
            ["chrA", "200", "", "A", "+"],                               # 9 ref empty
            ["chrA", "210", g[209], "AXG", "-1"],                        # 10 alt not ACGT
            ["chrA", "220", g[219].lower(), other_base(g[219]), "1"],   # 11 ok (lower-case ref)
        ]
        write(os.path.join(d, "v.tsv"), tsv(HEADER, rows))

    def post_unscorable(d, out, err):
        probs = expect_output("v.m.tsv", HEADER + ["score"], 10, scored={0, 9})(d, out, err)
        wl = [ln for ln in err.splitlines() if ln.startswith("[W ")]
        want = {3: r"(?i)chrom", 4: r"(?i)ref.*(match|genome)|mismatch", 5: r"(?i)alt",
                6: r"(?i)alt", 7: r"(?i)alt", 8: r"(?i)ref", 9: r"(?i)ref", 10: r"(?i)alt"}
        for line, rx in want.items():
            hits = [w for w in wl if re.search(r"v\.tsv:%d\b" % line, w)]
            if len(hits) != 1:
                probs.append("expected one warning naming v.tsv:%d, got %d" % (line, len(hits)))
            elif not re.search(rx, hits[0]):
                probs.append("warning for line %d does not give the reason /%s/: %s"
                             % (line, rx, hits[0]))
        for line in (2, 11):
            if any(re.search(r"v\.tsv:%d\b" % line, w) for w in wl):
                probs.append("a warning names scorable line %d" % line)
        summ = [w for w in wl if not re.search(r"v\.tsv:\d", w)]
        if len(summ) != 1:
            probs.append("expected one summary warning, got %d: %r" % (len(summ), summ))
        else:
            s = summ[0]
            for rx in (r"\b8\b", r"1 chrom", r"1 ref does not match|1 ref.*match",
                       r"2 ref empty", r"4 alt"):
                if not re.search(rx, s):
                    probs.append("summary %r does not match /%s/" % (s, rx))
        return probs
    add(name="unscorable rows: exit 0, empty scores, warnings, summary", prep=unscorable,
        args=std_args(), rc=0, err=r"^\[W ", post=post_unscorable)

    def post_beyond(d, out, err):
        probs = expect_output("v.m.tsv", HEADER + ["score"], 2, scored={0})(d, out, err)
        if not any(re.search(r"v\.tsv:3\b.*beyond the chromosome end", w)
                   for w in err.splitlines()):
            probs.append("no warning naming v.tsv:3 and 'beyond the chromosome end'")
        return probs
    add(name="pos past the chromosome end: unscorable with its own reason",
        prep=with_vars(tsv(HEADER, [var_rows()[0], ["chrA", "600", "A", "C", "+"]])),
        args=std_args(), rc=0, post=post_beyond)

    # An input that already has a `score` column (e.g. a table scored by another model) gets it
    # replaced in place, as the published pandas code does (df["score"] = ...), not a second one.
    sh = ["chrom", "pos", "score", "ref", "alt", "strand"]
    srows = [[r[0], r[1], "9.9999", r[2], r[3], r[4]] for r in var_rows()]

    def post_score_col(d, out, err):
        tab = read_table(os.path.join(d, "v.m.tsv"))
        probs = []
        if tab[0] != sh:
            probs.append("header changed: %r" % tab[0])
        elif [r[2] for r in tab[1:]] != base:
            probs.append("score column not replaced by the scores: %r vs %r"
                         % ([r[2] for r in tab[1:]], base))
        return probs
    add(name="existing score column replaced in place", prep=with_vars(tsv(sh, srows)),
        args=std_args() + ["--quiet"], rc=0, post=post_score_col)

    def strands(d):
        i = 250
        rows = [["chrA", str(i + 1), g[i], other_base(g[i]), s] for s in ["+", "1", "-", "-1"]]
        write(os.path.join(d, "v.tsv"), tsv(HEADER, rows))

    def post_strands(d, out, err):
        probs = expect_output("v.m.tsv", HEADER + ["score"], 4)(d, out, err)
        if probs:
            return probs
        sc = [r[-1] for r in read_table(os.path.join(d, "v.m.tsv"))[1:]]
        if sc[0] != sc[1]:
            probs.append("'+' and '1' score differently: %r" % sc)
        if sc[2] != sc[3]:
            probs.append("'-' and '-1' score differently: %r" % sc)
        return probs
    add(name="strands '+', '1', '-', '-1' accepted; +/1 and -/-1 agree", prep=strands,
        args=std_args() + ["--quiet"], rc=0, post=post_strands)

    add(name="CRLF line endings accepted, same scores",
        prep=with_vars(tsv(HEADER, var_rows(), eol="\r\n")), args=std_args() + ["--quiet"],
        rc=0, post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))

    xh = ["id", "chrom", "note", "pos", "ref", "alt", "empty", "strand", "tail"]
    xrows = [["r%d" % i, r[0], "note %d" % i, r[1], r[2], r[3], "", r[4], "t%d" % i]
             for i, r in enumerate(var_rows())]

    def post_extra(d, out, err):
        probs = expect_output("v.m.tsv", xh + ["score"], 4, base_scores=base)(d, out, err)
        if not probs:
            tab = read_table(os.path.join(d, "v.m.tsv"))
            if [r[:-1] for r in tab[1:]] != xrows:
                probs.append("input fields not preserved: %r" % tab[1:])
        return probs
    add(name="extra columns before/between/after kept in order", prep=with_vars(tsv(xh, xrows)),
        args=std_args() + ["--quiet"], rc=0, post=post_extra)

    def post_raw(d, out, err):
        probs = expect_output("v.m.tsv", HEADER + ["score", "raw"], 4, base_scores=base)(
            d, out, err)
        if not probs:
            tab = read_table(os.path.join(d, "v.m.tsv"))
            for r in tab[1:]:
                s, raw = r[-2], float(r[-1])
                want = "%.4f" % np.tanh(round(raw, 4))
                if want == "-0.0000":
                    want = "0.0000"
                if s != want:
                    probs.append("score %s != tanh(round(raw %s, 4)) = %s" % (s, r[-1], want))
        return probs
    add(name="--raw adds a raw column consistent with score", args=std_args() + ["--raw",
                                                                               "--quiet"],
        rc=0, post=post_raw)

    def prep_named(d):
        write(os.path.join(d, "sub", "vars.txt"), tsv(HEADER, var_rows()))
        copy_model(os.path.join(d, "my_model"))
    add(name="default output <dir>/<stem>.<model name><suffix>", prep=prep_named,
        args=std_args(**{"--var_file": "sub/vars.txt", "--model_folder": "my_model/"})
        + ["--quiet"], rc=0,
        post=expect_output("sub/vars.my_model.txt", HEADER + ["score"], 4, base_scores=base))
    add(name="--output names the output file",
        args=std_args() + ["--output", "scores.out", "--quiet"], rc=0,
        post=lambda d, o, e: (expect_output("scores.out", HEADER + ["score"], 4,
                                            base_scores=base)(d, o, e)
                              + (["default output written too"]
                                 if os.path.exists(os.path.join(d, "v.m.tsv")) else [])))
    def post_space(d, out, err):
        if not re.search(r"v\.tsv:2: not scored: ref does not match.*'%s '>" % re.escape(g[99]),
                         err):
            return ["no warning showing the ref with its trailing space quoted"]
        return []
    add(name="a ref with a trailing space: the warning shows it quoted",
        prep=with_row(2, ["chrA", "100", g[99] + " ", other_base(g[99]), "+"]),
        args=std_args(), rc=0, post=post_space)
    add(name="--threads -1 refused", args=std_args() + ["--threads", "-1"], rc=2,
        err=r"--threads -1.*>= 0")
    add(name="a config section that names no program: warned about, run goes on",
        prep=lambda d: (write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows())),
                        write(os.path.join(d, "c.conf"), "[prommoterai]\nbatch_size = 2\n")),
        args=std_args() + ["--config", "c.conf", "--quiet"], rc=0,
        err=r"c\.conf:1: section \[prommoterai\] names no program",
        post=expect_output("v.m.tsv", HEADER + ["score"], 4, base_scores=base))
    add(name="--output is a directory: refused before any work",
        prep=lambda d: (write(os.path.join(d, "v.tsv"), tsv(HEADER, var_rows())),
                        os.makedirs(os.path.join(d, "outdir"))),
        args=std_args() + ["--output", "outdir"], rc=2, err=r"outdir.*directory")
    add(name="--output is the variant file itself: refused",
        args=std_args() + ["--output", "./v.tsv"], rc=2, err=r"v\.tsv.*variant file")
    add(name="no row scorable (chromosome names lack 'chr'): exit 1, no output, a hint",
        prep=with_vars(tsv(HEADER, [["A"] + r[1:] for r in var_rows()])), args=std_args(),
        rc=1, err=r"none of the 4 rows.*nothing written.*'chrA' but not 'A'")

    def post_gz(d, out, err):
        path = os.path.join(d, "s.tsv.gz")
        try:
            with gzip.open(path, "rt") as fh:
                write(os.path.join(d, "s_plain.tsv"), fh.read())
        except (OSError, EOFError) as e:
            return ["%s is not gzip: %s" % (path, e)]
        return expect_output("s_plain.tsv", HEADER + ["score"], 4, base_scores=base)(d, out, err)
    add(name="an output named *.gz is gzip-compressed (as pandas writes it)",
        args=std_args() + ["--output", "s.tsv.gz", "--quiet"], rc=0, post=post_gz)
    def post_upper_gz(d, out, err):
        os.rename(os.path.join(d, "s.tsv.GZ"), os.path.join(d, "s.tsv.gz"))
        return post_gz(d, out, err)
    add(name="an output named *.GZ is compressed too (the suffix in any case)",
        args=std_args() + ["--output", "s.tsv.GZ", "--quiet"], rc=0, post=post_upper_gz)
    add(name="an output named *.bz2 is refused (only .gz is written compressed)",
        args=std_args() + ["--output", "s.tsv.bz2"], rc=2, err=r"s\.tsv\.bz2.*\.gz")
    add(name="header only: exit 0, header-only output", prep=with_vars(tsv(HEADER, [])),
        args=std_args() + ["--quiet"], rc=0,
        post=expect_output("v.m.tsv", HEADER + ["score"], 0))
    return C


def check_interrupt(root):
    """SIGTERM while scoring (as a scheduler's kill or Ctrl-C would) leaves neither the output
    nor its temporary file: the signal is sent as soon as the temporary file appears, on a
    table large enough to take seconds."""
    d = os.path.join(root, "interrupt")
    os.makedirs(d)
    rows = var_rows()
    write(os.path.join(d, "v.tsv"), tsv(HEADER, rows * 50000))
    p = subprocess.Popen([os.path.join(BIN, "promoterai")] + std_args() + ["--quiet"], cwd=d,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    t0 = time.time()
    seen = []
    while not seen and p.poll() is None and time.time() - t0 < 30:
        seen = [f for f in os.listdir(d) if ".tmp." in f]
        time.sleep(0.005)
    p.send_signal(15)
    rc = p.wait(timeout=60)
    left = sorted(f for f in os.listdir(d) if f != "v.tsv")
    check(bool(seen) and rc == -15 and not left,
          "SIGTERM while scoring: killed by it, no output and no temporary file left",
          "temporary file seen %s, exit %s, left %s" % (seen, rc, left))


def check_pipe(root):
    """A variant table read from a pipe (--var_file /dev/stdin) is scored whole: no row is lost
    to a second pass over the input (the row count for progress lines)."""
    d = os.path.join(root, "pipe")
    os.makedirs(d)
    rows = var_rows() * 2500
    p = subprocess.run([os.path.join(BIN, "promoterai")]
                       + std_args(**{"--var_file": "/dev/stdin"}) + ["--output", "out.tsv",
                                                                     "--quiet"],
                       cwd=d, input=tsv(HEADER, rows), capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    got = len(read_table(os.path.join(d, "out.tsv"))) - 1 if p.returncode == 0 else None
    check(p.returncode == 0 and got == len(rows),
          "--var_file /dev/stdin (a pipe): every row scored",
          "exit %d, %s of %d rows; stderr %s" % (p.returncode, got, len(rows), p.stderr[-300:]))


def main():
    global BIN, ROOT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="build directory holding promoterai and pmodel")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    a = ap.parse_args()
    BIN = os.path.abspath(a.bin)
    for prog in ("promoterai", "pmodel"):
        if not os.access(os.path.join(BIN, prog), os.X_OK):
            print("FAIL %s not found in %s" % (prog, BIN))
            return 1
    ROOT = tempfile.mkdtemp(prefix="pai_cli_")
    t0 = time.time()
    try:
        base = setup(ROOT)
        if base is not None:
            table = cases(base)
            for i, c in enumerate(table):
                c["no"] = i + 1
            # two at a time: every case has its own directory and the shared inputs are
            # read-only (each error case checks that they stay unchanged)
            with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as ex:
                for ok, what, detail in ex.map(run_case, table):
                    check(ok, what, detail)
            check_interrupt(ROOT)
            check_pipe(ROOT)
    finally:
        if a.keep:
            print("kept " + ROOT)
        else:
            shutil.rmtree(ROOT, ignore_errors=True)
    print("%d case(s) failed" % len(FAILURES) if FAILURES else "all cases passed",
          "(%.1f s)" % (time.time() - t0))
    for f in FAILURES:
        print("  failed: " + f)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
