"""The training loader (model/loader.h, REFERENCE.md section 5) through `loader_dump`.

Fixture: two species built with `psynth` + `ppreprocess`, stored wider than the model windows
(S_in 512, S_out 256):
  * folder A: 6 chromosomes x 30 kb, 120 TSSs, 3 tracks (psynth --background 300, so that every
    track varies along positions), plus two TSSs at the chromosome edges of chr1 (pos 30 on -,
    pos 29990 on +) whose windows leave the chromosome: code 4 in /x, zeros in /y. 122 samples.
  * folder B: 4 chromosomes, 70 TSSs, 2 tracks, float16 /y stored in 64-position chunks.
  * folder C: folder B's inputs stored with --y_dtype float32 (the loader's float32 branch).
Runs of `loader_dump` (each must exit 0 and write /species [K], /idx /shift /rc [K, B],
/x [K, B, L], /y [K, B, O, T_max] of those shapes):
  main      A B, L 160, O 96, B 8, K 2500, seed 7: m = min(512-160, 256-96) = 160, std 40;
  same      the main command again; prefix: K 300, same seed; other: K 300, seed 8;
  small     C alone, L 500, O 246, B 8, K 600: m = min(12, 10) = 10, std floor(10/4) = 2;
  noaug     A B, L 16, O 8, B 36, K 3000, --no_augment (n_batches 3 and 1);
  chroms    A B with --chroms chr5 chr2, L 160, O 96, B 8, K 1500.
Checks:
 1. Exact content, every draw of every run: idx -> (shard, row) through /folder_<j>_first, _n
    and the folder_<j>_files attribute (first must be the running sum of n, n each shard's row
    count, every manifest shard listed once unless --chroms); the stored sample read with h5py
    is cut x[S_in/2 - L/2 + s, +L), y[S_out/2 - O/2 + s, +O) and, when rc, x reversed with
    A<->T, C<->G, 4 kept and y reversed along positions (tracks not swapped). x must be equal
    exactly and y bit-for-bit: float16 -> float32 is exact and the loader only copies values;
    tracks beyond the species' T must be exactly 0. Fixture sanity: some crops hold code 4, and
    in the augmented runs (main, small, chroms) a one-position offset or a missing reversal
    would change y in > 90% of draws of each species (measured ~98%; the rest are edge samples
    or flat stretches), so y is checked for real, not just zeros. x is 16..500 random bases,
    which any offset changes.
 2. Shifts (main, std 40, 20000 draws): |s| <= 2 std; s = trunc(z), z ~ N(0, std^2) redrawn
    beyond 2 std, whose exact distribution P(s = k) is computed from the normal CDF (continuous
    std 40 * 0.8796 = 35.18; truncation toward 0 lowers it to ~34.78). Empirical std within
    5 standard errors of the exact one (SE of the sample variance sqrt((mu4 - var^2)/n), so
    34.78 +- 0.73; an untruncated normal gives ~39.6, std m/2 ~70), |mean| <= 5 std/sqrt(n)
    (~1.2), count of s = 0 within a 5-sigma binomial band of n P(|z| < 1) (~418 +- 101;
    rounding or flooring instead of truncation gives ~209).
    Small run (std 2, 4800 draws): the count of every value k in -4..4 within a 5-sigma binomial
    band of the exact P(s = k) (P(s = +-4) = 0: a clamp instead of a redraw puts ~4.5% there;
    std floor(m/4) from m = min of both margins: std 3 from the x margin 12 is far outside).
    RC: rate within 5 binomial sigmas of 0.25 (main and small runs).
 3. --no_augment: every shift 0 and every rc 0 (and check 1 with centred crops).
 4. Species: per step with probability n_batches_j / sum (n_batches_j = floor(n_j / B)); the
    count of each species over K steps within a 5-sigma binomial band. In noaug (B 36: 3 and 1
    batches, p = 0.75, band +-0.040) this separates the sample proportion 122/192 = 0.635, ceil
    (4/6 = 0.667) and uniform 0.5; also checked in main (15/23) and chroms (5/13).
 5. Passes: the batches of species j in step order, cut into passes of floor(n_j / B): within a
    pass no sample index repeats; every idx in [0, n_j); consecutive passes differ (a fresh
    permutation each); over all passes every sample appears (checked where the chance that a
    fair sampler misses one, n ((n - nb B) / n)^passes, is below 1e-9: the skipped remainder
    must be random, not always the same samples).
 6. Determinism: the same command twice gives identical datasets and attributes; K 300 with the
    same seed equals the first 300 steps of the K 2500 run (a batch is a function of seed and
    step); seed 8 gives a different idx order.
 7. --chroms chr5 chr2: folder 0 lists exactly those shards and every species-0 idx maps to
    one of them; folder 1 keeps all its shards.
Every statistical band is 5 sigmas wide: with ~40 such comparisons a correct loader fails one
with probability ~2e-5, and the seeds are fixed, so a given build passes or fails reproducibly.
Usage: /usr/bin/python3 tests/test_loader.py --bin BUILD_DIR
"""

import math
import os
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from harness import (Checker, attr_str, exe_from_args, read_manifest,  # noqa: E402
                     require_binary, run)

S_IN, S_OUT = 512, 256
SIGMAS = 5.0
COMP = np.array([3, 2, 1, 0, 4], dtype=np.uint8)        # A C G T other -> T G C A other
DATASETS = ("species", "idx", "shift", "rc", "x", "y")


# ---------------------------------------------------------------------------------------------
# Fixture

def make_species(ck, tmp, psynth, ppre, name, n_chroms, n_tss, n_tracks, seed, background=0,
                 extra_tss=(), pre_args=(), synth_dir=None):
    """psynth (unless synth_dir is given) + ppreprocess into tmp/name. Returns the folder."""
    if synth_dir is None:
        synth_dir = os.path.join(tmp, name + "_src")
        r = run([psynth, "--out", synth_dir, "--n_chroms", n_chroms, "--chrom_length", 30000,
                 "--n_tss", n_tss, "--n_tracks", n_tracks, "--seed", seed,
                 "--background", background])
        if not ck.check(r.returncode == 0, f"fixture: psynth {name} exits 0"):
            return None
        if extra_tss:
            tss = os.path.join(synth_dir, "tss.tsv")
            with open(tss) as fh:
                header = fh.readline().rstrip("\n").split("\t")
            with open(tss, "a") as fh:
                for k, (c, p, s) in enumerate(extra_tss):
                    vals = {"gene_id": f"EDGE{k}", "chrom": c, "pos": str(p), "strand": s}
                    fh.write("\t".join(vals.get(h, ".") for h in header) + "\n")
    out = os.path.join(tmp, name)
    r = run([ppre, "--h5_folder", out, "--tss_file", os.path.join(synth_dir, "tss.tsv"),
             "--fasta_file", os.path.join(synth_dir, "genome.fa"),
             "--bigwig_files", os.path.join(synth_dir, "tracks.tsv"),
             "--input_length", S_IN, "--output_length", S_OUT, "--quiet", *pre_args])
    if not ck.check(r.returncode == 0 and os.path.isfile(os.path.join(out, "manifest.tsv")),
                    f"fixture: ppreprocess {name} exits 0 and writes manifest.tsv"):
        return None
    return out, synth_dir


class Store:
    """Stored samples per shard path, read with h5py once: (x uint8, y float32, T)."""

    def __init__(self):
        self.cache = {}

    def get(self, path):
        key = os.path.realpath(path)
        if key not in self.cache:
            with h5py.File(path, "r") as f:
                x = f["x"][...]
                y = f["y"][...]
            self.cache[key] = (x, y.astype(np.float32), y.shape[2])
        return self.cache[key]


def manifest_shards(folder):
    _, header, rows = read_manifest(os.path.join(folder, "manifest.tsv"))
    fi, ci, ni = header.index("file"), header.index("chrom"), header.index("n_samples")
    return [(r[fi], r[ci], int(r[ni])) for r in rows]


def dump(ck, exe, out, folders, L, O, B, K, seed=None, chroms=None, no_aug=False, label=""):
    cmd = [exe, "--folders", *folders, "--out", out, "--input_length", L, "--output_length", O,
           "--batch_size", B, "--steps", K]
    if seed is not None:
        cmd += ["--seed", seed]
    if chroms:
        cmd += ["--chroms", *chroms]
    if no_aug:
        cmd += ["--no_augment"]
    r = run(cmd, timeout=120)
    if not ck.check(r.returncode == 0 and os.path.isfile(out), f"{label}: loader_dump exits 0 "
                                                                f"(rc {r.returncode})"):
        return None
    d = {"L": L, "O": O, "B": B, "K": K, "label": label, "path": out}
    with h5py.File(out, "r") as f:
        for k in DATASETS:
            d[k] = f[k][...] if k in f else None
        d["folders"] = []
        j = 0
        while f"folder_{j}_first" in f:
            files = [attr_str(v) for v in np.atleast_1d(f.attrs[f"folder_{j}_files"])]
            d["folders"].append((f[f"folder_{j}_first"][...], f[f"folder_{j}_n"][...], files))
            j += 1
    missing = [k for k in DATASETS if d[k] is None]
    if not ck.check(not missing and len(d["folders"]) == len(folders),
                    f"{label}: output holds {DATASETS} and {len(folders)} folder tables "
                    f"(missing {missing}, {len(d['folders'])} tables)"):
        return None
    t_max = d["y"].shape[3] if d["y"].ndim == 4 else -1
    shapes = {k: d[k].shape for k in DATASETS}
    want = {"species": (K,), "idx": (K, B), "shift": (K, B), "rc": (K, B), "x": (K, B, L),
            "y": (K, B, O, t_max)}
    if not ck.check(shapes == want and d["x"].dtype == np.uint8 and d["y"].dtype == np.float32,
                    f"{label}: shapes {shapes} (want {want}), x uint8, y float32"):
        return None
    return d


# ---------------------------------------------------------------------------------------------
# Check 1: exact content

def check_folder_tables(ck, d, folders, store, restrict=None):
    """first = running sum of n, n = each file's rows, files = the manifest's shards (those of
    `restrict` chromosomes for folder 0 when given). Returns per-folder (first, n, files) or
    None."""
    label = d["label"]
    bad = []
    for j, (first, n, files) in enumerate(d["folders"]):
        if len(first) != len(files) or len(n) != len(files):
            bad.append(f"folder {j}: {len(first)} firsts, {len(n)} counts, {len(files)} files")
            continue
        if len(n) and (first[0] != 0 or np.any(first[1:] != np.cumsum(n)[:-1])):
            bad.append(f"folder {j}: first {first.tolist()} is not the running sum of n "
                       f"{n.tolist()}")
        man = manifest_shards(folders[j])
        if j == 0 and restrict is not None:
            man = [m for m in man if m[1] in restrict]
        want = sorted((os.path.realpath(os.path.join(folders[j], m[0])), m[2]) for m in man)
        got = []
        for path, cnt in zip(files, n):
            real = os.path.realpath(path)
            if not os.path.isfile(real):
                bad.append(f"folder {j}: listed file {path} does not exist")
                continue
            rows = store.get(real)[0].shape[0]
            if rows != cnt:
                bad.append(f"folder {j}: {path} has {rows} samples, table says {cnt}")
            got.append((real, int(cnt)))
        if sorted(got) != want:
            bad.append(f"folder {j}: shards {sorted(got)} != manifest {want}")
    for b in bad:
        print("  " + b)
    return ck.check(not bad, f"{label}: folder tables (first = running sum of n, n = rows of each "
                             f"file, files = the manifest's shards"
                             f"{'' if restrict is None else ' of ' + str(sorted(restrict))})")


def expected_crops(store, table, idx, shift, rc, L, O):
    """Reference x [n, L], y [n, O, T] for draws (idx, shift, rc) of one folder."""
    first, cnt, files = table
    shard = np.searchsorted(first, idx, side="right") - 1
    row = idx - first[shard]
    n = len(idx)
    T = store.get(files[0])[2]
    x = np.empty((n, L), np.uint8)
    y = np.empty((n, O, T), np.float32)
    ar_l, ar_o = np.arange(L), np.arange(O)
    for s in np.unique(shard):
        sel = np.nonzero(shard == s)[0]
        X, Y, _ = store.get(files[s])
        x[sel] = X[row[sel, None], (S_IN // 2 - L // 2 + shift[sel])[:, None] + ar_l]
        y[sel] = Y[row[sel, None], (S_OUT // 2 - O // 2 + shift[sel])[:, None] + ar_o]
    r = rc.astype(bool)
    x[r] = COMP[x[r][:, ::-1]]
    y[r] = y[r][:, ::-1]
    return x, y


def check_content(ck, d, store):
    """Check 1 for every draw. Returns (draws with code 4, y-discrimination fractions)."""
    label, L, O, B, K = d["label"], d["L"], d["O"], d["B"], d["K"]
    n_sets = len(d["folders"])
    sp = d["species"]
    if not ck.check(np.all((sp >= 0) & (sp < n_sets)), f"{label}: species in [0, {n_sets})"):
        return None
    mism, n4, disc = [], 0, []
    for j in range(n_sets):
        steps = np.nonzero(sp == j)[0]
        if len(steps) == 0:
            continue
        first, cnt, files = d["folders"][j]
        n_j = int(cnt.sum())
        idx = d["idx"][steps].ravel()
        shift = d["shift"][steps].ravel()
        rcv = d["rc"][steps].ravel()
        # a draw whose crop would leave the stored sample (or bad idx/rc) is a failure; it is
        # reported and left out of the comparison
        ok = ((idx >= 0) & (idx < n_j) & (np.abs(shift) <= min(S_IN - L, S_OUT - O) // 2)
              & ((rcv == 0) | (rcv == 1)))
        if not ok.all():
            k = np.nonzero(~ok)[0][0]
            mism.append(f"species {j}: {(~ok).sum()} draw(s) with idx/shift/rc out of range, "
                        f"first idx {idx[k]} shift {shift[k]} rc {rcv[k]}")
        where = np.nonzero(ok)[0]
        ex, ey = expected_crops(store, d["folders"][j], idx[where], shift[where], rcv[where],
                                L, O)
        T = ey.shape[2]
        gx = d["x"][steps].reshape(-1, L)[where]
        gy = d["y"][steps].reshape(-1, O, d["y"].shape[3])[where]
        bad_x = np.any(gx != ex, axis=1)
        bad_y = ~np.all((gy[:, :, :T] == ey).reshape(len(where), -1), axis=1)
        bad_pad = np.any(gy[:, :, T:].reshape(len(where), -1) != 0, axis=1)
        for name, bad in (("x", bad_x), ("y", bad_y), ("y tracks beyond T", bad_pad)):
            if bad.any():
                w = np.nonzero(bad)[0]
                descr = [f"(step {steps[where[i] // B]}, b {where[i] % B}: idx {idx[where[i]]} "
                         f"shift {shift[where[i]]} rc {rcv[where[i]]})" for i in w[:4]]
                mism.append(f"species {j}: {name} differs in {len(w)} of {len(where)} draws, e.g. "
                            + ", ".join(descr))
        n4 += int(np.any(ex == 4, axis=1).sum())
        # fixture sanity: would a one-position offset / a missing reversal change y?
        sl = where[np.abs(shift[where]) < min(S_IN - L, S_OUT - O) // 2]
        if len(sl):
            _, ey1 = expected_crops(store, d["folders"][j], idx[sl], shift[sl] + 1, rcv[sl], L, O)
            _, ey0 = expected_crops(store, d["folders"][j], idx[sl], shift[sl], rcv[sl], L, O)
            _, eyr = expected_crops(store, d["folders"][j], idx[sl], shift[sl], 1 - rcv[sl], L, O)
            disc.append((float(np.mean(np.any((ey1 != ey0).reshape(len(sl), -1), axis=1))),
                         float(np.mean(np.any((eyr != ey0).reshape(len(sl), -1), axis=1)))))
    for m in mism:
        print("  " + m)
    ck.check(not mism, f"{label}: every one of {K * B} draws equals the stored sample's crop at "
                       f"its shift (x exactly, y bit-for-bit, reverse complement when rc, tracks "
                       f"beyond T zero)")
    return n4, disc


# ---------------------------------------------------------------------------------------------
# Check 2: shift distribution

def shift_pmf(std):
    """{k: P(s = k)} for s = trunc(z), z ~ N(0, std^2) conditioned on |z| <= 2 std."""
    b = 2.0 * std

    def Phi(v):
        return 0.5 * (1.0 + math.erf(v / (std * math.sqrt(2.0))))

    Z = Phi(b) - Phi(-b)
    pmf = {0: (Phi(min(1.0, b)) - Phi(-min(1.0, b))) / Z}
    for k in range(1, int(math.floor(b)) + 1):
        p = max(Phi(min(k + 1.0, b)) - Phi(float(k)), 0.0) / Z
        pmf[k] = pmf[-k] = p
    return pmf


def binom_band(n, p):
    mu = n * p
    half = SIGMAS * math.sqrt(n * p * (1 - p))
    return mu - half, mu + half


def check_shift_moments(ck, d, std):
    label = d["label"]
    s = d["shift"].ravel().astype(np.float64)
    n = len(s)
    bound = 2 * std
    ck.check(np.all(np.abs(s) <= bound), f"{label}: every |shift| <= 2 std = {bound} "
                                         f"(max |s| {int(np.abs(s).max())})")
    pmf = shift_pmf(std)
    var = sum(p * k * k for k, p in pmf.items())
    mu4 = sum(p * k ** 4 for k, p in pmf.items())
    sd = math.sqrt(var)
    se_sd = SIGMAS * math.sqrt((mu4 - var * var) / n) / (2 * sd)
    emp_sd = float(np.sqrt(np.mean(s * s) - np.mean(s) ** 2))
    ck.check(abs(emp_sd - sd) <= se_sd,
             f"{label}: shift std {emp_sd:.3f} within {sd:.3f} +- {se_sd:.3f} (exact std of "
             f"trunc(N(0, {std}^2) cut at 2 std); continuous {std * 0.8796:.2f}; n {n})")
    mean_tol = SIGMAS * sd / math.sqrt(n)
    ck.check(abs(float(s.mean())) <= mean_tol,
             f"{label}: shift mean {s.mean():.3f} within 0 +- {mean_tol:.3f}")
    lo, hi = binom_band(n, pmf[0])
    c0 = int(np.sum(s == 0))
    ck.check(lo <= c0 <= hi, f"{label}: {c0} shifts = 0 within [{lo:.0f}, {hi:.0f}] "
                             f"(P(|z| < 1) = {pmf[0]:.4f})")


def check_shift_pmf(ck, d, std):
    label = d["label"]
    s = d["shift"].ravel()
    n = len(s)
    pmf = shift_pmf(std)
    bad, parts = [], []
    for k in range(-2 * std - 1, 2 * std + 2):
        p = pmf.get(k, 0.0)
        c = int(np.sum(s == k))
        lo, hi = binom_band(n, p)
        parts.append(f"{k}:{c}/{n * p:.0f}")
        if not lo <= c <= hi:
            bad.append(f"s = {k}: {c} draws, want [{lo:.1f}, {hi:.1f}] (p {p:.4f})")
    outside = int(np.sum(np.abs(s) > 2 * std + 1))
    if outside:
        bad.append(f"{outside} draws with |s| > {2 * std + 1}")
    for b in bad:
        print("  " + b)
    ck.check(not bad, f"{label}: count of each shift value within 5 binomial sigmas of the exact "
                      f"P(trunc(z) = k), std {std} ({' '.join(parts)})")


def check_rc_rate(ck, d):
    r = d["rc"].ravel()
    n = len(r)
    lo, hi = binom_band(n, 0.25)
    c = int(r.sum())
    ck.check(np.all((r == 0) | (r == 1)) and lo <= c <= hi,
             f"{d['label']}: {c} of {n} draws reverse-complemented, within [{lo:.0f}, {hi:.0f}] "
             f"(p 0.25)")


# ---------------------------------------------------------------------------------------------
# Checks 4, 5

def check_species(ck, d):
    K, B = d["K"], d["B"]
    nb = [int(n.sum()) // B for _, n, _ in d["folders"]]
    tot = sum(nb)
    parts, ok = [], True
    for j, b in enumerate(nb):
        c = int(np.sum(d["species"] == j))
        lo, hi = binom_band(K, b / tot)
        ok &= lo <= c <= hi
        parts.append(f"species {j}: {c} steps in [{lo:.0f}, {hi:.0f}] (p {b}/{tot})")
    ck.check(ok, f"{d['label']}: species frequencies follow n_batches = floor(n / {B}) "
                 f"{nb}: " + "; ".join(parts))


def check_passes(ck, d, j):
    label, B = d["label"], d["B"]
    n = int(d["folders"][j][1].sum())
    nb = n // B
    batches = d["idx"][d["species"] == j]
    ck.check(np.all((batches >= 0) & (batches < n)),
             f"{label}: every species-{j} idx in [0, {n})")
    n_pass = len(batches) // nb if nb else 0
    passes = [batches[p * nb:(p + 1) * nb].ravel() for p in range(n_pass)]
    rep = [p for p, v in enumerate(passes) if len(np.unique(v)) != len(v)]
    if rep:
        v = passes[rep[0]]
        u, c = np.unique(v, return_counts=True)
        print(f"  pass {rep[0]}: idx {u[c > 1][:10].tolist()} repeated")
    ck.check(n_pass >= 2 and not rep,
             f"{label}: species {j} (n {n}, {nb} batches of {B} per pass): no idx repeats within "
             f"any of {n_pass} complete passes (repeats in {len(rep)})")
    same = [p for p in range(n_pass - 1) if np.array_equal(passes[p], passes[p + 1])]
    ck.check(not same, f"{label}: species {j}: consecutive passes are different permutations "
                       f"(identical pairs at {same[:5]})")
    miss_p = n * ((n - nb * B) / n) ** n_pass
    if miss_p < 1e-9:
        seen = np.unique(np.concatenate(passes)) if passes else np.array([])
        ck.check(len(seen) == n, f"{label}: species {j}: all {n} samples drawn over {n_pass} "
                                 f"passes (got {len(seen)}; a fair sampler misses one with "
                                 f"probability < {miss_p:.1e})")


# ---------------------------------------------------------------------------------------------

def main():
    exe = exe_from_args(__doc__, "loader_dump")
    bin_dir = os.path.dirname(exe)
    psynth = os.path.abspath(require_binary(bin_dir, "psynth"))
    ppre = os.path.abspath(require_binary(bin_dir, "ppreprocess"))
    ck = Checker()
    store = Store()
    with tempfile.TemporaryDirectory() as tmp:
        a = make_species(ck, tmp, psynth, ppre, "spA", 6, 120, 3, 1, background=300,
                         extra_tss=[("chr1", 30, "-"), ("chr1", 29990, "+")])
        b = make_species(ck, tmp, psynth, ppre, "spB", 4, 70, 2, 2,
                         pre_args=("--chunk_positions", 64))
        if a is None or b is None:
            return ck.finish()
        c = make_species(ck, tmp, psynth, ppre, "spC", 0, 0, 0, 0, synth_dir=b[1],
                         pre_args=("--y_dtype", "float32"))
        if c is None:
            return ck.finish()
        A, Bf, C = a[0], b[0], c[0]
        nA = sum(m[2] for m in manifest_shards(A))
        nB = sum(m[2] for m in manifest_shards(Bf))
        ck.check(nA == 122 and nB == 70, f"fixture: {nA} samples in A (122), {nB} in B (70)")

        def out(name):
            return os.path.join(tmp, name + ".h5")

        main_d = dump(ck, exe, out("main"), [A, Bf], 160, 96, 8, 2500, seed=7, label="main")
        small = dump(ck, exe, out("small"), [C], 500, 246, 8, 600, seed=11, label="small")
        noaug = dump(ck, exe, out("noaug"), [A, Bf], 16, 8, 36, 3000, seed=5, no_aug=True,
                     label="noaug")
        chroms = dump(ck, exe, out("chroms"), [A, Bf], 160, 96, 8, 1500, seed=3,
                      chroms=["chr5", "chr2"], label="chroms")
        n4_total, discs = 0, []
        for d, restrict in ((main_d, None), (small, None), (noaug, None),
                            (chroms, {"chr5", "chr2"})):
            if d is None:
                continue
            folders = [C] if d is small else [A, Bf]
            if check_folder_tables(ck, d, folders, store, restrict):
                res = check_content(ck, d, store)
                if res is not None:
                    n4_total += res[0]
                    print(f"  {d['label']}: fraction of draws whose y changes under a one-position "
                          f"offset / a reversal, per species: "
                          + ", ".join(f"{o:.3f} / {r:.3f}" for o, r in res[1]))
                    if d is not noaug:          # O 8 there: short crops are often all zero
                        discs += res[1]
        ck.check(n4_total > 0, f"fixture: {n4_total} expected crops hold code 4 (edge TSSs), "
                               f"so its complement is exercised")
        if discs:
            off = min(x for x, _ in discs)
            rev = min(x for _, x in discs)
            ck.check(off > 0.9 and rev > 0.9,
                     f"fixture: y changes under a one-position offset in >= {off:.3f} and under "
                     f"reversal in >= {rev:.3f} of draws (per species, runs main, small, chroms; "
                     f"want > 0.9), so y is compared for real")

        # 2. shifts and RC
        if main_d is not None:
            check_shift_moments(ck, main_d, 40)
            check_rc_rate(ck, main_d)
        if small is not None:
            check_shift_pmf(ck, small, 2)
            check_rc_rate(ck, small)
        # 3. no augmentation
        if noaug is not None:
            ck.check(np.all(noaug["shift"] == 0) and np.all(noaug["rc"] == 0),
                     f"noaug: every shift 0 and rc 0 ({int(np.sum(noaug['shift'] != 0))} shifts, "
                     f"{int(noaug['rc'].sum())} rc set)")
        # 4. species, 5. passes
        for d in (main_d, noaug, chroms):
            if d is not None:
                check_species(ck, d)
        for d in (main_d, noaug):
            if d is not None:
                check_passes(ck, d, 0)
                check_passes(ck, d, 1)
        if small is not None:
            check_passes(ck, small, 0)
        # 6. determinism
        if main_d is not None:
            same = dump(ck, exe, out("same"), [A, Bf], 160, 96, 8, 2500, seed=7, label="same")
            if same is not None:
                with h5py.File(main_d["path"], "r") as f1, h5py.File(same["path"], "r") as f2:
                    keys_eq = sorted(f1.keys()) == sorted(f2.keys())
                    data_eq = keys_eq and all(np.array_equal(f1[k][...], f2[k][...])
                                              for k in f1.keys())
                    attr_eq = (sorted(f1.attrs) == sorted(f2.attrs)
                               and all(np.array_equal(f1.attrs[k], f2.attrs[k]) for k in f1.attrs))
                ck.check(data_eq and attr_eq, "same: the same command and seed give identical "
                                              "datasets and attributes")
            pre = dump(ck, exe, out("prefix"), [A, Bf], 160, 96, 8, 300, seed=7, label="prefix")
            if pre is not None:
                diff = [k for k in DATASETS if not np.array_equal(pre[k], main_d[k][:300])]
                ck.check(not diff, f"prefix: K 300 equals the first 300 steps of K 2500 with the "
                                   f"same seed (differs in {diff})")
            oth = dump(ck, exe, out("other"), [A, Bf], 160, 96, 8, 300, seed=8, label="other")
            if oth is not None:
                ck.check(not np.array_equal(oth["idx"], main_d["idx"][:300]),
                         "other: seed 8 gives a different idx order than seed 7")
        # 7. --chroms
        if chroms is not None:
            first, n, files = chroms["folders"][0]
            names = sorted(os.path.basename(p) for p in files)
            ck.check(names == ["chr2.h5", "chr5.h5"],
                     f"chroms: folder 0 lists exactly {names} (want chr2.h5, chr5.h5)")
            idx0 = chroms["idx"][chroms["species"] == 0].ravel()
            shard = np.searchsorted(first, idx0, side="right") - 1
            inside = (idx0 >= 0) & (idx0 < int(n.sum())) & (shard >= 0)
            shard_ok = inside.copy()
            shard_ok[inside] = [os.path.basename(files[s]) in ("chr2.h5", "chr5.h5")
                                for s in shard[inside]]
            ck.check(len(idx0) > 0 and bool(shard_ok.all()),
                     f"chroms: all {len(idx0)} species-0 draws map to chr2/chr5 shards "
                     f"(n {int(n.sum())}; {int((~shard_ok).sum())} do not)")
            ck.check(len(chroms["folders"][1][2]) == len(manifest_shards(Bf)),
                     f"chroms: folder 1 keeps all {len(manifest_shards(Bf))} shards")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
