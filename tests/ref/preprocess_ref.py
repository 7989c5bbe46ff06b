"""Independent reference for `ppreprocess` (training shards), written from docs/preprocess.md and
REFERENCE.md section 4 only. Sequence comes from pyfaidx, track values from pyBigWig; nothing here
knows about the C implementation.

What it provides (no side effects on import):
  * read_table(path)             -- tab-separated table with a header line: blank lines skipped,
                                    a leading '#' on the header ignored; rows keep file line numbers
  * read_tss(path)               -- TSS rows (chrom, 1-based pos from `pos` or `tss_pos`, strand
                                    +1/-1 from 1/-1/+/-, line); raises RefError naming file:line
  * read_tracks(path, cwd=None)  -- track rows (fwd, rev paths resolved as documented, xform text,
                                    track name from `name`, else the extra columns joined with '/',
                                    else the fwd file name without its extension)
  * xform_from_text(text)        -- a tiny recursive-descent parser of the documented transform
                                    grammar; returns a numpy function (float32 in, float64 out).
                                    Never uses eval; anything outside the grammar raises RefError.
  * encode(seq)                  -- base codes 0=A 1=C 2=G 3=T, 4 otherwise (case-insensitive)
  * revcomp_codes(codes)         -- reverse and map c -> 3 - c (4 stays 4)
  * build_sample(...)            -- (x uint8 [S_in], y [S_out, T]) for one TSS
  * expected_samples(...)        -- per chromosome, the ordered list of sample dicts
  * expected_split(counts, R)    -- number of parts per chromosome for R ranks (work split)
"""

import math
import os
import re

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)   # 3.4028235e38
FLOAT16_MAX = 65504.0


class RefError(Exception):
    """A bad input, as the reference sees it (the C program must reject the same input)."""


# ---------------------------------------------------------------------------------------------
# Tables


def read_table(path):
    """Returns (header list, rows) where rows are (line_number, fields list); line numbers are
    1-based file line numbers (blank lines counted, skipped)."""
    with open(path, newline="") as fh:
        text = fh.read()
    lines = text.split("\n")
    header = None
    rows = []
    for k, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line.strip() == "":
            continue
        fields = line.split("\t")
        if header is None:
            if fields[0].startswith("#"):
                fields[0] = fields[0][1:]
            header = [f.strip() for f in fields]
            header_line = k
            continue
        rows.append((k, fields))
    if header is None:
        raise RefError(f"{path}: empty table (no header line)")
    return header, rows, header_line


def parse_strand(text):
    t = text.strip()
    if t in ("1", "+"):
        return 1
    if t in ("-1", "-"):
        return -1
    return None


def read_tss(path, chrom_lengths=None):
    """TSS rows as dicts {chrom, pos, strand, line}. chrom_lengths (name -> length) enables the
    documented checks against the FASTA (absent chromosome, pos past the end)."""
    header, rows, header_line = read_table(path)
    if "chrom" not in header:
        raise RefError(f"{path}:{header_line}: missing column chrom")
    if "pos" in header:
        pos_col = header.index("pos")
    elif "tss_pos" in header:
        pos_col = header.index("tss_pos")
    else:
        raise RefError(f"{path}:{header_line}: missing column pos (or tss_pos)")
    if "strand" not in header:
        raise RefError(f"{path}:{header_line}: missing column strand")
    c_col, s_col = header.index("chrom"), header.index("strand")
    out = []
    for line, f in rows:
        if len(f) <= max(c_col, pos_col, s_col):
            raise RefError(f"{path}:{line}: too few columns")
        chrom = f[c_col].strip()
        ptxt = f[pos_col].strip()
        if not re.fullmatch(r"[0-9]+", ptxt) or int(ptxt) < 1:
            raise RefError(f"{path}:{line}: pos {ptxt!r} is not an integer >= 1")
        pos = int(ptxt)
        strand = parse_strand(f[s_col])
        if strand is None:
            raise RefError(f"{path}:{line}: strand {f[s_col]!r} is none of 1, -1, +, -")
        if chrom_lengths is not None:
            if chrom not in chrom_lengths:
                raise RefError(f"{path}:{line}: chromosome {chrom} absent from the FASTA")
            if pos > chrom_lengths[chrom]:
                raise RefError(f"{path}:{line}: pos {pos} past the end of {chrom}")
        out.append({"chrom": chrom, "pos": pos, "strand": strand, "line": line})
    return out


def resolve_path(p, table_path, cwd=None):
    """A relative path is read relative to the current directory, or, when no such file exists
    there, relative to the table's own folder."""
    if os.path.isabs(p):
        return p
    cwd = cwd or os.getcwd()
    here = os.path.join(cwd, p)
    if os.path.exists(here):
        return here
    return os.path.join(os.path.dirname(os.path.abspath(table_path)), p)


def read_tracks(path, cwd=None):
    """Track rows as dicts {fwd, rev (resolved paths), xform (text), fn (numpy function), name,
    line}."""
    header, rows, header_line = read_table(path)
    for col in ("fwd", "rev", "xform"):
        if col not in header:
            raise RefError(f"{path}:{header_line}: missing column {col}")
    idx = {c: header.index(c) for c in ("fwd", "rev", "xform")}
    extra = [i for i, c in enumerate(header) if c not in ("fwd", "rev", "xform")]
    name_col = header.index("name") if "name" in header else None
    tracks = []
    for row_no, (line, f) in enumerate(rows, start=1):
        f = f + [""] * (len(header) - len(f))
        xtext = f[idx["xform"]]
        try:
            fn = xform_from_text(xtext)
        except RefError as e:
            raise RefError(f"{path}:{line}: row {row_no}: bad xform {xtext!r}: {e}")
        fwd_txt = f[idx["fwd"]].strip()
        if name_col is not None:
            name = f[name_col].strip()
        elif extra:
            name = "/".join(f[i].strip() for i in extra)
        else:
            name = os.path.splitext(os.path.basename(fwd_txt))[0]
        tracks.append({"fwd": resolve_path(fwd_txt, path, cwd),
                       "rev": resolve_path(f[idx["rev"]].strip(), path, cwd),
                       "xform": xtext, "fn": fn, "name": name, "line": line})
    return tracks


# ---------------------------------------------------------------------------------------------
# Transforms: a recursive-descent parser of
#   xform  := [ "lambda x:" ] expr | "identity"
#   expr   := "x" | func "(" expr ")" | number "*" expr | expr "*" number | "(" expr ")"
#   func   := [ "np." | "numpy." ] ( "nan_to_num" | "arcsinh" | "log1p" )
#   number := decimal or scientific constant
# The left recursion `expr "*" number` makes an expr a product of factors, exactly one of which
# is not a number (x, a function call or a parenthesised expr).

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)|(?P<op>[().*:]))")


def _tokenize(text):
    toks = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise RefError(f"unexpected character {text[pos:].strip()[:1]!r}")
        pos = m.end()
        if m.group("num") is not None:
            toks.append(("num", float(m.group("num"))))
        elif m.group("name") is not None:
            toks.append(("name", m.group("name")))
        else:
            toks.append(("op", m.group("op")))
    return toks


def _nan_to_num(v):
    v = np.array(v, dtype=np.float64, copy=True)
    v[np.isnan(v)] = 0.0
    v[np.isposinf(v)] = FLOAT32_MAX
    v[np.isneginf(v)] = -FLOAT32_MAX
    return v


def _log1p(v):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log1p(v)


_FUNCS = {"nan_to_num": _nan_to_num, "arcsinh": np.arcsinh, "log1p": _log1p}


class _Parser:
    def __init__(self, toks):
        self.t = toks
        self.i = 0

    def peek(self, k=0):
        return self.t[self.i + k] if self.i + k < len(self.t) else (None, None)

    def take(self, kind, value=None):
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            want = value if value is not None else kind
            raise RefError(f"expected {want!r}, got {tok[1]!r}")
        self.i += 1
        return tok[1]

    def expr(self):
        """product of factors, exactly one non-number; returns a function of float64 arrays."""
        scale = 1.0
        core = None
        while True:
            tok = self.peek()
            if tok[0] == "num":
                self.i += 1
                scale *= tok[1]
            else:
                if core is not None:
                    raise RefError("a product may hold only one non-constant factor")
                core = self.factor()
            if self.peek() == ("op", "*"):
                self.i += 1
                continue
            break
        if core is None:
            raise RefError("an expression must contain x")
        if scale == 1.0:
            return core
        return lambda v, core=core, s=scale: s * core(v)

    def factor(self):
        tok = self.peek()
        if tok == ("op", "("):
            self.i += 1
            inner = self.expr()
            self.take("op", ")")
            return inner
        if tok[0] != "name":
            raise RefError(f"unexpected {tok[1]!r}")
        name = tok[1]
        self.i += 1
        if name == "x" and self.peek() != ("op", "."):
            return lambda v: v
        if name in ("np", "numpy"):
            self.take("op", ".")
            name = self.take("name")
        if name not in _FUNCS:
            raise RefError(f"unknown function {name!r}")
        fn = _FUNCS[name]
        self.take("op", "(")
        inner = self.expr()
        self.take("op", ")")
        return lambda v, fn=fn, inner=inner: fn(inner(v))


def xform_from_text(text):
    """Parse a transform; return f(values float32 array) -> float64 array (NaN = no data)."""
    toks = _tokenize(text)
    if toks == [("name", "identity")]:
        core = lambda v: v  # noqa: E731
    else:
        p = _Parser(toks)
        if p.peek() == ("name", "lambda"):
            p.i += 1
            p.take("name", "x")
            p.take("op", ":")
        if p.peek()[0] is None:
            raise RefError("empty expression")
        core = p.expr()
        if p.i != len(toks):
            raise RefError(f"trailing text at {p.peek()[1]!r}")

    def f(values):
        v = np.asarray(values, dtype=np.float32).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(core(v), dtype=np.float64)
    return f


# ---------------------------------------------------------------------------------------------
# Samples

_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    _CODE[ord(_b)] = _i
    _CODE[ord(_b.lower())] = _i


def encode(seq):
    return _CODE[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def revcomp_codes(codes):
    codes = np.asarray(codes, dtype=np.uint8)[::-1]
    out = np.where(codes < 4, 3 - codes.astype(np.int16), 4).astype(np.uint8)
    return out


def open_fasta(path):
    from pyfaidx import Fasta
    return Fasta(path, sequence_always_upper=False, as_raw=True, rebuild=False)


def chrom_lengths(fasta):
    return {name: len(fasta[name]) for name in fasta.keys()}


class BigWigs:
    """Opened bigWig files, cached by path."""

    def __init__(self):
        self.files = {}

    def get(self, path):
        import pyBigWig
        if path not in self.files:
            if not os.path.isfile(path):
                raise RefError(f"{path}: no such bigWig file")
            self.files[path] = pyBigWig.open(path)
        return self.files[path]

    def close(self):
        for bw in self.files.values():
            bw.close()
        self.files = {}


def track_raw_values(bw, chrom, start, end, chrom_len):
    """float32 values over [start, end) and a mask of positions inside [0, chrom_len).
    Returns (values, inside, chrom_missing). values NaN where the file has no data."""
    n = end - start
    vals = np.full(n, np.nan, dtype=np.float32)
    pos = np.arange(start, end)
    inside = (pos >= 0) & (pos < chrom_len)
    chroms = bw.chroms()
    if chrom not in chroms:
        return vals, inside, True
    lo = max(start, 0)
    hi = min(end, chrom_len, chroms[chrom])
    if hi > lo:
        vals[lo - start:hi - start] = np.asarray(bw.values(chrom, lo, hi, numpy=True),
                                                 dtype=np.float32)
    return vals, inside, False


def build_sample(fasta, bws, chrom, pos, strand, S_in, S_out, tracks, out_dtype=np.float32):
    """One sample: x uint8 [S_in], y [S_out, T] (out_dtype; float64 keeps the unrounded value).
    fasta: pyfaidx Fasta; bws: BigWigs; tracks: read_tracks() rows (or dicts with fwd, rev, fn)."""
    if S_in % 2 or S_out % 2:
        raise RefError("input_length and output_length must be even")
    C = len(fasta[chrom])
    p = pos - 1
    a, b = p - S_in // 2, p + S_in // 2
    x = np.full(S_in, 4, dtype=np.uint8)
    lo, hi = max(a, 0), min(b, C)
    if hi > lo:
        x[lo - a:hi - a] = encode(str(fasta[chrom][lo:hi]))
    T = len(tracks)
    y = np.zeros((S_out, T), dtype=np.float64)
    a2, b2 = p - S_out // 2, p + S_out // 2
    for t, tr in enumerate(tracks):
        bw = bws.get(tr["fwd"] if strand > 0 else tr["rev"])
        vals, inside, missing = track_raw_values(bw, chrom, a2, b2, C)
        if missing:
            continue
        v = tr["fn"](vals)
        y[:, t] = np.where(inside, v, 0.0)
    if strand < 0:
        x = revcomp_codes(x)
        y = y[::-1].copy()
    return x, y.astype(out_dtype)


def expected_samples(tss_path, fasta, tracks_path, S_in, S_out, chroms=None, cwd=None,
                     out_dtype=np.float32):
    """Per chromosome (dict, in order of first appearance in the TSS table) the ordered list of
    samples {pos, strand, line, x, y}. fasta: a path or a pyfaidx Fasta."""
    if isinstance(fasta, str):
        fasta = open_fasta(fasta)
    lengths = chrom_lengths(fasta)
    rows = read_tss(tss_path, lengths)
    tracks = read_tracks(tracks_path, cwd)
    bws = BigWigs()
    out = {}
    try:
        for r in rows:
            if chroms is not None and r["chrom"] not in chroms:
                continue
            x, y = build_sample(fasta, bws, r["chrom"], r["pos"], r["strand"], S_in, S_out,
                                tracks, out_dtype)
            out.setdefault(r["chrom"], []).append(dict(r, x=x, y=y))
    finally:
        bws.close()
    return out


def missing_chroms(tracks, rows):
    """(file path, chrom) pairs where a bigWig that some sample reads lacks the chromosome."""
    import pyBigWig
    need = set()
    for r in rows:
        for tr in tracks:
            need.add((tr["fwd"] if r["strand"] > 0 else tr["rev"], r["chrom"]))
    out = []
    for path, chrom in sorted(need):
        bw = pyBigWig.open(path)
        if chrom not in bw.chroms():
            out.append((path, chrom))
        bw.close()
    return out


def expected_split(counts, ranks):
    """counts: chrom -> number of TSSs. Returns chrom -> number of parts (docs: share =
    ceil(M / R); a chromosome with more than share TSSs is cut into ceil(n / share) parts; with
    one rank nothing is split)."""
    M = sum(counts.values())
    if ranks <= 1 or M == 0:
        return {c: 1 for c in counts}
    share = math.ceil(M / ranks)
    return {c: (math.ceil(n / share) if n > share else 1) for c, n in counts.items()}
