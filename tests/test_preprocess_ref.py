"""Training shards (`ppreprocess`, one process) against the independent reference of
docs/preprocess.md (tests/ref/preprocess_ref.py: pyfaidx + pyBigWig).

Fixture: chr1 40 kb (lower-case runs, an N run, IUPAC letters), chr2 12 kb, chr3 900 bp (shorter
than both windows, so its windows run off both ends), chr4 3 kb without TSSs. Six tracks with fwd
and rev bigWigs holding random intervals with gaps (no data = NaN), values from 1e-5 to 6e4:
  t0 `lambda x: np.arcsinh(np.nan_to_num(x))`                (published spelling 1)
  t1 `lambda x: np.arcsinh(1000 * np.nan_to_num(x))`         (published spelling 2; values
     1e-5..20, so the 1000 scale matters; t1.rev.bw lacks chr2 entirely -> zeros + a warning)
  t2 `lambda x: np.log1p(np.nan_to_num(x))`  (negative values: log1p(< -1) = NaN; t2.fwd.bw
     declares chr1 700 bp shorter than the FASTA -> no data there -> log1p(0) = 0)
  t3 ` arcsinh( nan_to_num(x) * 0.5 ) `  (no np., spaces; t3.fwd.bw declares chr3 500 bp longer
     than the FASTA, with data there, which must not show: positions past C hold 0)
  t4 `identity`  (gaps give xform(NaN) = NaN; outside the chromosome 0)
  t5 `lambda x:numpy.arcsinh(1e3*numpy.nan_to_num( x ))` reading t0's files swapped.
TSS rows on both strands (spellings 1, -1, +, -), at pos 1, 2, S/2, S/2+1, C-1, C, inside the
N run and lower-case runs, a duplicated row, extra columns around the required ones, blank lines.

Run A: float16, --chunk_positions 256, default deflate (4), track names from assay/target.
  Every dataset of every shard vs the reference: x exactly; y within 1e-3*|ref| + 1e-6 (float16
  keeps 11 significant bits: relative rounding error <= 2^-11 = 4.9e-4, plus 1e-6 absolute for
  subnormals; NaN exactly where the reference has NaN); pos, strand, line exactly; dtypes,
  shapes; attributes (chrom, lengths as int64, track_names, xforms, format_version, part,
  n_parts, n_tracks, y_dtype, file attributes, track_table verbatim, fingerprint, created_by;
  strings variable-length UTF-8); /y chunked [1, 256, T], /x [1, 256], every dataset gzip 4 +
  shuffle and no other filter; the files read with h5py with no plugin path; manifest.tsv lists
  every shard with its counts and the documented parameters; the TSS base at S_in/2 (+) or
  S_in/2 - 1 (-) against the FASTA text directly; the .fai was built; a stderr warning names
  t1.rev.bw and chr2.
Run B: bgzip FASTA, TSS table with `#chrom` header and `tss_pos`, --chrom chr2 chr3 (chr1 rows
  skipped, line numbers still those of the file), --y_dtype float32 (y within 1e-6 relative),
  --deflate 0 (no compression), S_in 1000 / S_out 600, a track table with a `name` column whose
  relative paths exist only relative to the table's folder; run from another folder.
Run C: options from a config file ([ppreprocess] section, one overridden on the command line),
  S_in 64 / S_out 32, chunk 16, deflate 9, a track table with only fwd/rev/xform (names = fwd
  file names without extension) whose relative paths exist both relative to the current folder
  (used) and to the table's folder (a decoy with other values); more grammar forms:
  `0.5 * np.arcsinh(2 * np.nan_to_num(x) * 1E3)`, `numpy.log1p( ( nan_to_num(x) ) * 2.5e-1 )`,
  `lambda x: x`.
Usage: /usr/bin/python3 tests/test_preprocess_ref.py --bin BUILD_DIR
"""

import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import preprocess_ref as P  # noqa: E402
from harness import (Checker, attr_str, h5_attr_is_vlen_utf8, h5_filters,  # noqa: E402
                     random_genome_seq, random_intervals, read_manifest, exe_from_args,
                     run_group, write_bigwig, write_fasta)

S_IN, S_OUT, CHUNK = 2048, 1024, 256
F16_RTOL, F16_ATOL = 1e-3, 1e-6
F32_RTOL, F32_ATOL = 1e-6, 1e-30
CHROMS = [("chr1", 40000), ("chr2", 12000), ("chr3", 900), ("chr4", 3000)]
STRANDS = ["1", "-1", "+", "-"]

TRACKS = [  # (file stem for fwd, rev, assay, target, xform, value kind)
    ("t0.fwd", "t0.rev", "CAGE", "K562", "lambda x: np.arcsinh(np.nan_to_num(x))"),
    ("t1.fwd", "t1.rev", "DNase", "HepG2", "lambda x: np.arcsinh(1000 * np.nan_to_num(x))"),
    ("t2.fwd", "t2.rev", "RNA", "GM12878", "lambda x: np.log1p(np.nan_to_num(x))"),
    ("t3.fwd", "t3.rev", "PRO", "HeLa", " arcsinh( nan_to_num(x) * 0.5 ) "),
    ("t4.fwd", "t4.rev", "raw", "K562", "identity"),
    ("t0.rev", "t0.fwd", "CAGE", "swapped", "lambda x:numpy.arcsinh(1e3*numpy.nan_to_num( x ))"),
]


# ---------------------------------------------------------------------------------------------
# Fixture


def make_genome(rng):
    g = {}
    g["chr1"] = random_genome_seq(rng, 40000, lower_runs=[(0, 150), (5000, 7000), (39900, 40000)],
                                  n_runs=[(10000, 10300)], n_iupac=60)
    g["chr2"] = random_genome_seq(rng, 12000, lower_runs=[(3000, 3500)], n_iupac=20)
    g["chr3"] = random_genome_seq(rng, 900, lower_runs=[(100, 200)], n_runs=[(850, 860)],
                                  n_iupac=10)
    g["chr4"] = random_genome_seq(rng, 3000)
    return g


def value_fn(kind):
    if kind == "t0":      # heavy tail up to ~5e4
        return lambda r: float(np.exp(r.uniform(-4, 10.8)))
    if kind == "t1":      # small values: arcsinh(1000 v) differs from arcsinh(v)
        return lambda r: float(10 ** r.uniform(-5, 1.3))
    if kind == "t2":      # negatives included (log1p of < -1 is NaN)
        return lambda r: float(r.choice([-3.0, -0.5, r.uniform(0, 100), r.uniform(0, 2e4)]))
    if kind == "t3":
        return lambda r: float(r.uniform(0, 3e4))
    if kind == "t4":      # identity: stays below the float16 maximum 65504
        return lambda r: float(r.choice([r.uniform(-100, 100), r.uniform(0, 6e4)]))
    raise ValueError(kind)


def make_bigwigs(rng, bw_dir, lengths):
    os.makedirs(bw_dir, exist_ok=True)
    for k in range(5):
        for side in ("fwd", "rev"):
            sizes = [(c, n) for c, n in CHROMS]
            if k == 1 and side == "rev":
                sizes = [(c, n) for c, n in sizes if c != "chr2"]      # lacks chr2
            if k == 2 and side == "fwd":
                sizes = [(c, n - 700 if c == "chr1" else n) for c, n in sizes]   # shorter chr1
            if k == 3 and side == "fwd":
                sizes = [(c, n + 500 if c == "chr3" else n) for c, n in sizes]   # longer chr3
            iv = {c: random_intervals(rng, 0, n, value_fn(f"t{k}"), gap_prob=0.3)
                  for c, n in sizes}
            write_bigwig(os.path.join(bw_dir, f"t{k}.{side}.bw"), sizes, iv)


def make_tss_rows(rng, genome):
    """Rows (chrom, pos, strand text). Windows leave chromosomes at both ends."""
    rows = []

    def add(chrom, pos, strand=None):
        rows.append((chrom, int(pos), strand if strand is not None else STRANDS[len(rows) % 4]))

    C1, C2 = len(genome["chr1"]), len(genome["chr2"])
    for p in (1, 1, 2, S_IN // 2, S_IN // 2 + 1, S_OUT // 2, C1 - S_IN // 2, C1 - 1, C1, C1):
        add("chr1", p)
    add("chr1", 10150, "+")
    add("chr1", 10150, "-")      # inside the N run
    add("chr1", 6000, "-")       # lower-case run
    for p in rng.integers(1, C1 + 1, 22):
        add("chr1", p)
    for p in (1, C2, C2 - 300, 3200):
        add("chr2", p)
    for p in rng.integers(1, C2 + 1, 10):
        add("chr2", p)
    for p, s in ((1, "+"), (1, "-"), (450, "1"), (451, "-1"), (899, "+"), (900, "-"), (300, "-"),
                 (855, "+")):
        add("chr3", p, s)
    rows.insert(7, rows[3])     # an exact duplicate row
    # interleave chromosomes a little (samples keep the table order within a chromosome)
    order = list(range(len(rows)))
    rng.shuffle(order)
    return [rows[i] for i in order]


def write_tss_table(path, header, rows, blank_every=0, hash_header=False):
    """rows: (chrom, pos, strand); header names 'chrom', 'pos'/'tss_pos', 'strand' plus extra
    columns (filled with junk)."""
    with open(path, "w") as fh:
        fh.write(("#" if hash_header else "") + "\t".join(header) + "\n")
        for k, (chrom, pos, strand) in enumerate(rows):
            vals = {"chrom": chrom, "pos": str(pos), "tss_pos": str(pos), "strand": strand}
            fh.write("\t".join(vals.get(h, f"{h}_{k}") for h in header) + "\n")
            if blank_every and k % blank_every == blank_every - 1:
                fh.write("\n")


def write_track_table(path, header, rows):
    with open(path, "w") as fh:
        fh.write("\t".join(header) + "\n")
        for r in rows:
            fh.write("\t".join(r.get(h, "") for h in header) + "\n")


def read_fasta_text(path):
    """Plain FASTA parser (independent of pyfaidx): name -> sequence."""
    seqs, name = {}, None
    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line.startswith(">"):
                name = line[1:].split()[0]
                seqs[name] = []
            elif name is not None:
                seqs[name].append(line.strip())
    return {k: "".join(v) for k, v in seqs.items()}


# ---------------------------------------------------------------------------------------------
# Checks


def compare_y(got, ref, rtol, atol):
    """NaN-aware |got - ref| <= atol + rtol*|ref|. Returns (ok, n_bad, max_abs, max_rel, worst
    ratio, nan mismatches)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    gn, rn = np.isnan(got), np.isnan(ref)
    nan_bad = int((gn != rn).sum())
    m = ~(gn | rn)
    err = np.abs(got[m] - ref[m])
    allowed = atol + rtol * np.abs(ref[m])
    bad = int((err > allowed).sum()) + int((~np.isfinite(got[m])).sum())
    big = np.abs(ref[m]) > 1e-6
    max_rel = float((err[big] / np.abs(ref[m][big])).max()) if big.any() else 0.0
    return (bad == 0 and nan_bad == 0, bad, float(err.max()) if err.size else 0.0, max_rel,
            float((err / allowed).max()) if err.size else 0.0, nan_bad)


def check_run(ck, label, out_dir, expected, tracks, s_in, s_out, y_dtype, files, fasta_text,
              chunk=None, deflate=4, allowed_empty=()):
    """Compare every shard of a one-process run with the reference samples."""
    T = len(tracks)
    h5s = sorted(n for n in os.listdir(out_dir) if n.endswith(".h5"))
    want = sorted(f"{c}.h5" for c in expected)
    extra = [n for n in h5s if n not in want]
    extra_ok = all(n[:-3] in allowed_empty for n in extra)
    ck.check(set(want) <= set(h5s) and extra_ok,
             f"{label}: shards {want} (one per chromosome with TSSs, no parts with one rank; "
             f"got {h5s})")
    if extra:
        for n in extra:
            with h5py.File(os.path.join(out_dir, n), "r") as f:
                ck.check(f["x"].shape[0] == 0, f"{label}: extra shard {n} of a chromosome "
                                               f"without TSSs holds no samples")
    rtol, atol = (F16_RTOL, F16_ATOL) if y_dtype == "float16" else (F32_RTOL, F32_ATOL)
    tot = {"bad": 0, "max_abs": 0.0, "max_rel": 0.0, "ratio": 0.0, "nan_bad": 0, "n": 0,
           "exact16": 0, "vals": 0}
    base_bad = []
    for chrom, samples in expected.items():
        path = os.path.join(out_dir, f"{chrom}.h5")
        if not os.path.isfile(path):
            ck.check(False, f"{label}: {chrom}.h5 exists")
            continue
        N = len(samples)
        with h5py.File(path, "r") as f:
            names = sorted(f.keys())
            ck.check(names == ["line", "pos", "strand", "x", "y"],
                     f"{label} {chrom}: datasets x, y, pos, strand, line (got {names})")
            if names != ["line", "pos", "strand", "x", "y"]:
                continue
            ydt = np.float16 if y_dtype == "float16" else np.float32
            shapes_ok = (f["x"].shape == (N, s_in) and f["y"].shape == (N, s_out, T)
                         and f["pos"].shape == (N,) and f["strand"].shape == (N,)
                         and f["line"].shape == (N,))
            dtypes_ok = (f["x"].dtype == np.uint8 and f["y"].dtype == ydt
                         and f["pos"].dtype == np.int64 and f["strand"].dtype == np.int8
                         and f["line"].dtype == np.int64)
            ck.check(shapes_ok and dtypes_ok,
                     f"{label} {chrom}: shapes x {f['x'].shape} y {f['y'].shape} (want "
                     f"[{N},{s_in}], [{N},{s_out},{T}]), dtypes x {f['x'].dtype} y "
                     f"{f['y'].dtype} pos {f['pos'].dtype} strand {f['strand'].dtype} line "
                     f"{f['line'].dtype} (want uint8 {np.dtype(ydt)} int64 int8 int64)")
            if not shapes_ok:
                continue
            x, y = f["x"][...], f["y"][...]
            pos, strand, line = f["pos"][...], f["strand"][...], f["line"][...]
            ref_x = np.stack([s["x"] for s in samples])
            ref_y = np.stack([s["y"] for s in samples])
            ref_pos = np.array([s["pos"] for s in samples])
            ref_strand = np.array([s["strand"] for s in samples])
            ref_line = np.array([s["line"] for s in samples])
            ck.check(np.array_equal(pos, ref_pos) and np.array_equal(strand, ref_strand)
                     and np.array_equal(line, ref_line),
                     f"{label} {chrom}: pos, strand, line of {N} samples in table order")
            nx = int((x != ref_x).sum())
            ck.check(nx == 0, f"{label} {chrom}: x equals the reference exactly "
                              f"({nx} of {x.size} codes differ)")
            if nx:
                i = int(np.argwhere((x != ref_x).any(axis=1))[0][0])
                j = np.nonzero(x[i] != ref_x[i])[0]
                print(f"  first bad sample {i} (pos {ref_pos[i]} strand {ref_strand[i]}): "
                      f"indices {j[:8]} got {x[i, j[:8]]} want {ref_x[i, j[:8]]}")
            ok, bad, max_abs, max_rel, ratio, nan_bad = compare_y(y, ref_y, rtol, atol)
            if bad or nan_bad:
                diff = ~((np.abs(y.astype(np.float64) - ref_y) <= atol + rtol * np.abs(ref_y))
                         | (np.isnan(y) & np.isnan(ref_y)))
                for i, p, t in np.argwhere(diff)[:6]:
                    print(f"  y[{i},{p},{t}] got {y[i, p, t]!r} want {ref_y[i, p, t]!r} "
                          f"(pos {ref_pos[i]} strand {ref_strand[i]} track {tracks[t]['name']})")
            tot["bad"] += bad
            tot["nan_bad"] += nan_bad
            tot["max_abs"] = max(tot["max_abs"], max_abs)
            tot["max_rel"] = max(tot["max_rel"], max_rel)
            tot["ratio"] = max(tot["ratio"], ratio)
            tot["n"] += N
            fin = np.isfinite(ref_y)
            tot["vals"] += int(fin.sum())
            tot["exact16"] += int((y[fin] == ref_y[fin].astype(ydt)).sum())
            # TSS base against the FASTA text itself
            seq = fasta_text[chrom]
            for i in range(N):
                b = P.encode(seq[ref_pos[i] - 1])[0]
                if ref_strand[i] > 0:
                    got_b, want_b = x[i, s_in // 2], b
                else:
                    got_b, want_b = x[i, s_in // 2 - 1], (3 - b if b < 4 else 4)
                if got_b != want_b:
                    base_bad.append(f"{chrom}:{ref_pos[i]} strand {ref_strand[i]} got "
                                    f"{got_b} want {want_b}")
            check_attrs(ck, label, f, chrom, s_in, s_out, tracks, y_dtype, files)
            check_layout(ck, label, f, chrom, chunk, deflate, T, s_out, s_in)
    ck.check(tot["bad"] == 0 and tot["nan_bad"] == 0,
             f"{label}: y of {tot['n']} samples within {atol:g} + {rtol:g}*|ref| of the float64 "
             f"reference ({y_dtype}: relative rounding <= "
             f"{'2^-11 = 4.9e-4' if y_dtype == 'float16' else '2^-24 = 6e-8'}); max abs err "
             f"{tot['max_abs']:.3g}, max rel err {tot['max_rel']:.3g}, worst err/allowed "
             f"{tot['ratio']:.3g}; {tot['bad']} out of tolerance, {tot['nan_bad']} NaN "
             f"mismatches")
    print(f"  info: {tot['exact16']} of {tot['vals']} finite y values equal the float64 "
          f"reference rounded once to {y_dtype}")
    for b in base_bad[:10]:
        print("  TSS base " + b)
    ck.check(not base_bad, f"{label}: TSS base at x[S_in/2] (+) / x[S_in/2-1] complemented (-) "
                           f"matches the FASTA ({len(base_bad)} mismatches)")


def check_attrs(ck, label, f, chrom, s_in, s_out, tracks, y_dtype, files):
    a = f.attrs
    need = ["chrom", "input_length", "output_length", "track_names", "xforms", "format_version",
            "part", "n_parts", "n_tracks", "y_dtype", "tss_file", "fasta_file", "bigwig_files",
            "track_table", "fingerprint", "created_by"]
    missing = [k for k in need if k not in a]
    if not ck.check(not missing, f"{label} {chrom}: root attributes present (missing {missing})"):
        return
    T = len(tracks)
    ints_ok = all(np.asarray(a[k]).dtype == np.int64 for k in ("input_length", "output_length"))
    ck.check(attr_str(a["chrom"]) == chrom and int(a["input_length"]) == s_in
             and int(a["output_length"]) == s_out and ints_ok,
             f"{label} {chrom}: chrom {attr_str(a['chrom'])!r}, input_length "
             f"{a['input_length']!r}, output_length {a['output_length']!r} (int64: {ints_ok})")
    names = [attr_str(v) for v in np.atleast_1d(a["track_names"])]
    xforms = [attr_str(v) for v in np.atleast_1d(a["xforms"])]
    ck.check(names == [t["name"] for t in tracks],
             f"{label} {chrom}: track_names {names} == {[t['name'] for t in tracks]}")
    ck.check([s.strip() for s in xforms] == [t["xform"].strip() for t in tracks],
             f"{label} {chrom}: xforms are the table's texts ({len(xforms)} of {T})")
    ck.check(int(a["format_version"]) == 1 and int(a["part"]) == 0 and int(a["n_parts"]) == 1
             and int(a["n_tracks"]) == T and attr_str(a["y_dtype"]) == y_dtype,
             f"{label} {chrom}: format_version {a['format_version']}, part {a['part']}, n_parts "
             f"{a['n_parts']}, n_tracks {a['n_tracks']}, y_dtype {attr_str(a['y_dtype'])}")
    ck.check(all(os.path.basename(files[k]) in attr_str(a[k])
                 for k in ("tss_file", "fasta_file", "bigwig_files")),
             f"{label} {chrom}: tss_file, fasta_file, bigwig_files attributes name the inputs")
    with open(files["bigwig_files"]) as fh:
        table_text = fh.read()
    ck.check(attr_str(a["track_table"]) == table_text,
             f"{label} {chrom}: track_table attribute is the track table's text verbatim")
    ck.check(len(attr_str(a["fingerprint"])) > 0 and len(attr_str(a["created_by"])) > 0,
             f"{label} {chrom}: fingerprint and created_by are non-empty")
    vlen = [k for k in ("chrom", "track_names", "xforms", "y_dtype", "tss_file", "fasta_file",
                        "bigwig_files", "track_table", "created_by")
            if not h5_attr_is_vlen_utf8(f, k)]
    ck.check(not vlen, f"{label} {chrom}: string attributes are variable-length UTF-8 "
                       f"(not: {vlen})")


def check_layout(ck, label, f, chrom, chunk, deflate, T, s_out, s_in):
    if chunk is not None:
        ck.check(f["y"].chunks == (1, chunk, T) and f["x"].chunks == (1, chunk),
                 f"{label} {chrom}: /y chunks {f['y'].chunks} == (1, {chunk}, {T}), /x chunks "
                 f"{f['x'].chunks} == (1, {chunk})")
    else:
        ck.check(f["y"].chunks is not None and f["y"].chunks[0] == 1
                 and f["y"].chunks[2] == T and f["x"].chunks is not None
                 and f["x"].chunks[0] == 1,
                 f"{label} {chrom}: /y chunks {f['y'].chunks} one sample by all tracks, /x "
                 f"chunks {f['x'].chunks} one sample")
    want = "no compression" if deflate == 0 else f"gzip {deflate} + shuffle, no other filter"
    for group in (("x", "y"), ("pos", "strand", "line")):
        bad = []
        for name in group:
            d = f[name]
            filt = h5_filters(d)
            if deflate == 0:
                if d.compression is not None:
                    bad.append(f"{name}: compression {d.compression} {d.compression_opts}")
            elif not (d.compression == "gzip" and d.compression_opts == deflate and d.shuffle
                      and set(filt) <= {1, 2}):
                bad.append(f"{name}: compression {d.compression} {d.compression_opts} shuffle "
                           f"{d.shuffle} filters {filt}")
        ck.check(not bad, f"{label} {chrom}: {', '.join('/' + g for g in group)} {want} "
                          f"({'; '.join(bad) or 'ok'})")


def check_manifest(ck, label, out_dir, expected, s_in, s_out, y_dtype, T, ranks=1):
    path = os.path.join(out_dir, "manifest.tsv")
    if not ck.check(os.path.isfile(path), f"{label}: manifest.tsv exists"):
        return
    params, header, rows = read_manifest(path)
    keys = ["input_length", "output_length", "y_dtype", "n_tracks", "track_names", "xforms",
            "tss_file", "fasta_file", "bigwig_files", "ranks"]
    missing = [k for k in keys if k not in params]
    ck.check(not missing, f"{label}: manifest '# key = value' lines hold {keys} "
                          f"(missing {missing})")
    vals = {"input_length": str(s_in), "output_length": str(s_out), "y_dtype": y_dtype,
            "n_tracks": str(T), "ranks": str(ranks)}
    wrong = {k: params.get(k) for k, v in vals.items() if params.get(k) != v}
    ck.check(not wrong, f"{label}: manifest parameters {vals} (wrong: {wrong})")
    ck.check(header == ["file", "chrom", "part", "n_parts", "n_samples"],
             f"{label}: manifest header file chrom part n_parts n_samples (got {header})")
    got = {r[0]: r[1:] for r in rows if len(r) == 5}
    want = {f"{c}.h5": [c, "0", "1", str(len(s))] for c, s in expected.items()}
    extra = {k: v for k, v in got.items() if k not in want}
    ok_extra = all(v[3] == "0" for v in extra.values())
    ck.check(all(got.get(k) == v for k, v in want.items()) and ok_extra
             and len(rows) == len(got),
             f"{label}: manifest rows {want} (got {got})")
    listed = set(got)
    on_disk = {n for n in os.listdir(out_dir) if n.endswith(".h5")}
    ck.check(listed == on_disk, f"{label}: manifest lists exactly the .h5 files on disk "
                                f"(listed {sorted(listed)}, on disk {sorted(on_disk)})")
    leftovers = [n for n in os.listdir(out_dir) if n.endswith(".tmp")]
    ck.check(not leftovers, f"{label}: no *.tmp files left ({leftovers})")


def check_plain_h5py(ck, label, out_dir, tmp):
    """Read every dataset in a fresh interpreter with an empty HDF5 plugin path."""
    empty = os.path.join(tmp, "no_plugins")
    os.makedirs(empty, exist_ok=True)
    code = ("import h5py,sys,os,glob\n"
            "n=0\n"
            "for p in sorted(glob.glob(os.path.join(sys.argv[1],'*.h5'))):\n"
            "  with h5py.File(p,'r') as f:\n"
            "    for k in f: n+=f[k][...].size\n"
            "print(n)\n")
    env = dict(os.environ, HDF5_PLUGIN_PATH=empty)
    proc = subprocess.run(["/usr/bin/python3", "-c", code, out_dir], env=env,
                          capture_output=True, text=True, timeout=60)
    ck.check(proc.returncode == 0 and proc.stdout.strip().isdigit(),
             f"{label}: every dataset reads with plain h5py and no HDF5 plugins "
             f"(rc {proc.returncode}, {proc.stderr.strip()[-200:]})")


def warning_lines(stderr, *needles):
    return [ln for ln in stderr.splitlines() if all(n in ln for n in needles)]


# ---------------------------------------------------------------------------------------------


def main():
    exe = exe_from_args(__doc__, "ppreprocess")
    ck = Checker()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        genome = make_genome(rng)
        fasta_items = [("chr1", genome["chr1"], "synthetic one"), ("chr2", genome["chr2"]),
                       ("chr3", genome["chr3"]), ("chr4", genome["chr4"])]
        fasta = os.path.join(tmp, "genome.fa")
        write_fasta(fasta, fasta_items)
        os.makedirs(os.path.join(tmp, "ref"))
        ref_fasta = os.path.join(tmp, "ref", "genome.fa")      # the reference's own copy
        shutil.copy(fasta, ref_fasta)
        fasta_text = read_fasta_text(ref_fasta)
        ref_fa = P.open_fasta(ref_fasta)
        lengths = P.chrom_lengths(ref_fa)
        ck.check(lengths == {c: n for c, n in CHROMS}, f"fixture: FASTA lengths {lengths}")
        bw_dir = os.path.join(tmp, "bw")
        make_bigwigs(rng, bw_dir, lengths)
        rows = make_tss_rows(rng, genome)

        # ---------------- Run A
        tss_a = os.path.join(tmp, "tssA.tsv")
        write_tss_table(tss_a, ["gene", "chrom", "score", "pos", "strand", "note"], rows,
                        blank_every=9)
        tracks_a = os.path.join(tmp, "tracks_meta.tsv")
        write_track_table(tracks_a, ["xform", "assay", "fwd", "target", "rev"],
                          [{"fwd": os.path.join(bw_dir, f + ".bw"),
                            "rev": os.path.join(bw_dir, r + ".bw"), "assay": a, "target": t,
                            "xform": xf} for f, r, a, t, xf in TRACKS])
        tracks = P.read_tracks(tracks_a)
        ck.check([t["name"] for t in tracks] == [f"{a}/{t}" for _, _, a, t, _ in TRACKS],
                 "fixture: reference names tracks assay/target")
        exp_a = P.expected_samples(tss_a, ref_fa, tracks_a, S_IN, S_OUT, out_dtype=np.float64)
        n_a = sum(len(v) for v in exp_a.values())
        all_y = np.concatenate([np.stack([s["y"] for s in v]).reshape(-1, len(tracks))
                                for v in exp_a.values()])
        pad_left = sum(int(s["pos"] <= S_IN // 2) for v in exp_a.values() for s in v)
        pad_right = sum(int(s["pos"] + S_IN // 2 > lengths[c]) for c, v in exp_a.items()
                        for s in v)
        t1 = all_y[:, 1][all_y[:, 1] > 0]
        print(f"fixture: {n_a} samples ({', '.join(f'{c} {len(v)}' for c, v in exp_a.items())}), "
              f"{pad_left} windows off the start, {pad_right} off the end; y max "
              f"{np.nanmax(all_y):.4g}; NaN per track {np.isnan(all_y).sum(axis=0).tolist()}")
        ck.check(pad_left >= 5 and pad_right >= 5 and np.isnan(all_y[:, 4]).any()
                 and np.isnan(all_y[:, 2]).any() and np.nanmax(all_y[:, 4]) > 3e4
                 and t1.size > 100 and float(np.median(t1)) > 2.0,
                 "fixture: padded windows at both ends, NaN from identity and log1p(<-1), "
                 "identity values > 3e4, and the 1000 scale visible in t1")
        out_a = os.path.join(tmp, "outA")
        files_a = {"tss_file": tss_a, "fasta_file": fasta, "bigwig_files": tracks_a}
        proc = run_group([exe, "--h5_folder", out_a, "--tss_file", tss_a, "--fasta_file", fasta,
                          "--bigwig_files", tracks_a, "--input_length", S_IN, "--output_length",
                          S_OUT, "--chunk_positions", CHUNK, "--quiet"], cwd=tmp, timeout=120)
        if ck.check(proc.returncode == 0, f"run A exit status 0 (got {proc.returncode})"):
            check_run(ck, "run A", out_a, exp_a, tracks, S_IN, S_OUT, "float16", files_a,
                      fasta_text, chunk=CHUNK, deflate=4, allowed_empty=("chr4",))
            check_manifest(ck, "run A", out_a, exp_a, S_IN, S_OUT, "float16", len(tracks))
            check_plain_h5py(ck, "run A", out_a, tmp)
            ck.check(os.path.isfile(fasta + ".fai"), "run A: the missing .fai was built")
            miss = P.missing_chroms(tracks, [s for v in exp_a.values() for s in v])
            ck.check([(os.path.basename(p), c) for p, c in miss] == [("t1.rev.bw", "chr2")],
                     f"fixture: exactly t1.rev.bw lacks a chromosome that samples read ({miss})")
            w = warning_lines(proc.stderr, "t1.rev", "chr2")
            ck.check(len(w) == 1, f"run A: one stderr warning (one per file and chromosome) "
                                  f"names t1.rev.bw and chr2 ({len(w)}: {w[:2]})")

        # ---------------- Run B
        s_in_b, s_out_b = 1000, 600
        fasta_gz = os.path.join(tmp, "genome_bgz.fa.gz")
        have_bgzip = shutil.which("bgzip") is not None
        if have_bgzip:
            with open(fasta_gz, "wb") as out:
                subprocess.run(["bgzip", "-c", fasta], stdout=out, check=True)
        else:
            print("note: bgzip not found; run B uses the plain FASTA")
            fasta_gz = fasta
        rows_b = rows[::-1]
        tss_b = os.path.join(tmp, "tssB.tsv")
        write_tss_table(tss_b, ["chrom", "id", "tss_pos", "strand"], rows_b, blank_every=5,
                        hash_header=True)
        tdir = os.path.join(tmp, "tables")
        os.makedirs(tdir)
        tracks_b = os.path.join(tdir, "tracks_named.tsv")
        write_track_table(tracks_b, ["name", "fwd", "rev", "xform", "assay"],
                          [{"name": f"track{k}", "fwd": os.path.join("..", "bw", f + ".bw"),
                            "rev": os.path.join("..", "bw", r + ".bw"), "xform": xf,
                            "assay": a} for k, (f, r, a, _, xf) in enumerate(TRACKS)])
        work = os.path.join(tmp, "work", "deeper")     # ../bw does not exist from here
        os.makedirs(work)
        tracks_rb = P.read_tracks(tracks_b, cwd=work)
        ck.check(all(os.path.isfile(t["fwd"]) and os.path.isfile(t["rev"]) for t in tracks_rb)
                 and not os.path.exists(os.path.join(work, "..", "bw")),
                 "fixture: run B's relative bigWig paths exist only relative to the table")
        exp_b = P.expected_samples(tss_b, ref_fa, tracks_b, s_in_b, s_out_b,
                                   chroms=("chr2", "chr3"), cwd=work, out_dtype=np.float64)
        out_b = os.path.join(tmp, "outB")
        files_b = {"tss_file": tss_b, "fasta_file": fasta_gz, "bigwig_files": tracks_b}
        proc = run_group([exe, "--h5_folder", "../../outB", "--tss_file", "../../tssB.tsv",
                          "--fasta_file", fasta_gz, "--bigwig_files", "../../tables/"
                          "tracks_named.tsv", "--input_length", s_in_b, "--output_length",
                          s_out_b, "--chrom", "chr2", "chr3", "--y_dtype", "float32",
                          "--deflate", "0"], cwd=work, timeout=120)
        if ck.check(proc.returncode == 0, f"run B exit status 0 (got {proc.returncode})"):
            check_run(ck, "run B", out_b, exp_b, tracks_rb, s_in_b, s_out_b, "float32", files_b,
                      fasta_text, chunk=None, deflate=0)
            h5s = sorted(n for n in os.listdir(out_b) if n.endswith(".h5"))
            ck.check(h5s == ["chr2.h5", "chr3.h5"], f"run B: --chrom chr2 chr3 gives only "
                                                     f"their shards (got {h5s})")
            check_manifest(ck, "run B", out_b, exp_b, s_in_b, s_out_b, "float32", len(TRACKS))

        # ---------------- Run C
        s_in_c, s_out_c, chunk_c = 64, 32, 16
        t2dir = os.path.join(tmp, "tables2")
        os.makedirs(os.path.join(t2dir, "bw"))
        decoy = {"t0": "t4", "t1": "t0", "t2": "t1", "t3": "t2", "t4": "t0"}   # other values
        for k, other in decoy.items():
            for side in ("fwd", "rev"):
                shutil.copy(os.path.join(bw_dir, f"{other}.{side}.bw"),
                            os.path.join(t2dir, "bw", f"{k}.{side}.bw"))
        tracks_c = os.path.join(t2dir, "tracks_plain.tsv")
        xf_c = {"t0": TRACKS[0][4], "t1": "0.5 * np.arcsinh(2 * np.nan_to_num(x) * 1E3)",
                "t2": TRACKS[2][4], "t3": "numpy.log1p( ( nan_to_num(x) ) * 2.5e-1 )",
                "t4": "lambda x: x"}
        write_track_table(tracks_c, ["fwd", "rev", "xform"],
                          [{"fwd": f"bw/{k}.fwd.bw", "rev": f"bw/{k}.rev.bw", "xform": xf}
                           for k, xf in xf_c.items()])
        tracks_rc = P.read_tracks(tracks_c, cwd=tmp)
        ck.check([t["name"] for t in tracks_rc] == [f"t{k}.fwd" for k in range(5)]
                 and tracks_rc[0]["fwd"] == os.path.join(tmp, "bw/t0.fwd.bw"),
                 "fixture: run C names tracks by fwd file name and reads from the current folder")
        conf = os.path.join(tmp, "prep.conf")
        with open(conf, "w") as fh:
            fh.write("# options for ppreprocess\ninput_length = 4096\n[ppreprocess]\n"
                     f"h5_folder = outC\ntss_file = tssA.tsv\nfasta_file = genome.fa\n"
                     f"bigwig_files = tables2/tracks_plain.tsv\ninput_length = 128\n"
                     f"output_length = {s_out_c}\nchunk_positions = {chunk_c}\ndeflate = 9\n"
                     "quiet = true\n")
        exp_c = P.expected_samples(tss_a, ref_fa, tracks_c, s_in_c, s_out_c, cwd=tmp,
                                   out_dtype=np.float64)
        out_c = os.path.join(tmp, "outC")
        files_c = {"tss_file": tss_a, "fasta_file": fasta, "bigwig_files": tracks_c}
        proc = run_group([exe, "--config", "prep.conf", "--input_length", s_in_c], cwd=tmp,
                         timeout=120)
        if ck.check(proc.returncode == 0, f"run C exit status 0 (got {proc.returncode})"):
            check_run(ck, "run C", out_c, exp_c, tracks_rc, s_in_c, s_out_c, "float16", files_c,
                      fasta_text, chunk=chunk_c, deflate=9, allowed_empty=("chr4",))
            check_manifest(ck, "run C", out_c, exp_c, s_in_c, s_out_c, "float16", 5)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
