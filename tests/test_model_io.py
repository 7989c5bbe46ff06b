"""Model folder format and initialisation of `pmodel init`, read back with h5py.

The expected layout is written here from the format description (not from the C sources):
  M/model.h5, root attributes format_version (1), num_blocks, model_dim, kernel_size (5),
  shortcut_freq (4), input_length, output_length (int64 scalars), bn_epsilon (float, 1e-3),
  output_dims (int array, one per head), head_names (variable-length strings);
  datasets (float32)
    /stem/kernel [4,D], /stem/bias [D]
    /block_i/bn1/{gamma,beta,moving_mean,moving_variance} [D] (and bn2)
    /block_i/dwconv/kernel [5,D], /block_i/dwconv/bias [D]
    /block_i/ffn1/kernel [D,4D], /block_i/ffn1/bias [4D]
    /block_i/ffn2/kernel [4D,D], /block_i/ffn2/bias [D]
    /head_j/proj_s/kernel [D,T_j], /head_j/proj_s/bias [T_j]   for s = N, N-4, ... > 0
Initialisation (REFERENCE.md section 2.5): biases 0, gamma 1, beta 0, moving mean 0, moving
variance 1; FFN kernels truncated normal std 0.01 cut at 2 std (so |w| <= 0.02 and the sample
std is 0.01 * 0.8796); stem, depthwise and head kernels Glorot-uniform within
+-sqrt(6 / (fan_in + fan_out)) (stem [4,D]: 4, D; head [D,T]: D, T; depthwise [5,D], Keras shape
(5,D,1): fan_in 5D, fan_out 5).
Also: same --seed gives identical dataset bytes, a different seed differs, no --seed = seed 0;
`pmodel info` prints the hyper-parameters and a parameter count equal to the sum of the dataset
sizes; `pmodel init` refuses to overwrite model.h5 without --force; a model.h5 written by h5py
with int32 attributes and fixed-length ASCII head_names (null-padded, and null-terminated with a
float32 epsilon and gzip-compressed chunked datasets) loads: `pmodel info` shows its values and
`pmodel predict` gives the same outputs as the original file.

Usage: /usr/bin/python3 tests/test_model_io.py --bin BUILD_DIR [--keep]
"""

import argparse
import hashlib
import math
import os
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

N, D, L, O = 6, 64, 64, 32          # receptive radius 2*(1+1+1+1+2+2) = 16 = (L - O) / 2
DIMS, NAMES = [5, 3], ["human", "mouse"]
SEED = 11
TRUNC_STD = 0.01 * 0.8796           # std of a normal(0, 0.01) cut at +-2 std


def check(ok, what, detail=""):
    print(("PASS " if ok else "FAIL ") + what + ("" if ok or not detail else "\n     " +
                                                   str(detail).replace("\n", "\n     ")))
    if not ok:
        FAILURES.append(what)
    return ok


def run(args, cwd):
    p = subprocess.run([os.path.join(BIN, "pmodel")] + args, cwd=cwd, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return p.returncode, p.stdout, p.stderr


def init(cwd, folder, seed=SEED, extra=()):
    args = ["init", "--model_folder", folder, "--num_blocks", str(N), "--model_dim", str(D),
            "--input_length", str(L), "--output_length", str(O),
            "--output_dims"] + [str(t) for t in DIMS] + ["--head_names"] + NAMES
    if seed is not None:
        args += ["--seed", str(seed)]
    return run(args + list(extra), cwd)


def expected_datasets():
    e = {"stem/kernel": (4, D), "stem/bias": (D,)}
    for i in range(N):
        b = "block_%d/" % i
        for bn in ("bn1", "bn2"):
            for v in ("gamma", "beta", "moving_mean", "moving_variance"):
                e[b + bn + "/" + v] = (D,)
        e[b + "dwconv/kernel"] = (5, D)
        e[b + "dwconv/bias"] = (D,)
        e[b + "ffn1/kernel"] = (D, 4 * D)
        e[b + "ffn1/bias"] = (4 * D,)
        e[b + "ffn2/kernel"] = (4 * D, D)
        e[b + "ffn2/bias"] = (D,)
    for j, t in enumerate(DIMS):
        for s in range(N, 0, -4):
            e["head_%d/proj_%d/kernel" % (j, s)] = (D, t)
            e["head_%d/proj_%d/bias" % (j, s)] = (t,)
    return e


def read_all(path):
    with h5py.File(path, "r") as f:
        ds = {}
        f.visititems(lambda n, o: ds.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                     else None)
        attrs = {k: f.attrs[k] for k in f.attrs}
    return ds, attrs


def glorot_limit(name, shape):
    if name.startswith("stem/"):
        fi, fo = 4, D
    elif "/dwconv/" in name:
        fi, fo = 5 * D, 5          # Keras depthwise kernel (5, D, 1)
    else:                          # head projection [D, T]
        fi, fo = shape
    return math.sqrt(6.0 / (fi + fo))


# --------------------------------------------------------------------------------------------

def check_layout(path):
    exp = expected_datasets()
    with h5py.File(path, "r") as f:
        # ---- attributes
        ints = {"format_version": 1, "num_blocks": N, "model_dim": D, "kernel_size": 5,
                "shortcut_freq": 4, "input_length": L, "output_length": O}
        have = set(f.attrs.keys())
        want = set(ints) | {"bn_epsilon", "output_dims", "head_names"}
        check(want <= have, "attributes: all of %s present" % sorted(want),
              "missing %s" % sorted(want - have))
        if have - want:
            print("note: extra root attributes %s" % sorted(have - want))
        for k, v in ints.items():
            if k not in have:
                continue
            aid = f.attrs.get_id(k)
            check(aid.shape == () and aid.dtype == np.dtype("int64") and
                  int(f.attrs[k]) == v,
                  "attribute %s = %d, int64 scalar" % (k, v),
                  "got %r, dtype %s, shape %s" % (f.attrs[k], aid.dtype, aid.shape))
        if "bn_epsilon" in have:
            aid = f.attrs.get_id("bn_epsilon")
            check(aid.shape == () and aid.dtype.kind == "f" and
                  abs(float(f.attrs["bn_epsilon"]) - 1e-3) < 1e-9,
                  "attribute bn_epsilon = 1e-3, float scalar",
                  "got %r, dtype %s, shape %s" % (f.attrs["bn_epsilon"], aid.dtype, aid.shape))
        if "output_dims" in have:
            aid = f.attrs.get_id("output_dims")
            v = np.asarray(f.attrs["output_dims"])
            check(aid.dtype.kind in "iu" and aid.shape == (len(DIMS),) and
                  v.tolist() == DIMS,
                  "attribute output_dims = %s, integer array of %d" % (DIMS, len(DIMS)),
                  "got %r, dtype %s, shape %s" % (v, aid.dtype, aid.shape))
            if aid.dtype != np.dtype("int64"):
                print("note: output_dims dtype is %s" % aid.dtype)
        if "head_names" in have:
            aid = f.attrs.get_id("head_names")
            sinfo = h5py.check_string_dtype(aid.dtype)
            v = [x.decode() if isinstance(x, bytes) else str(x)
                 for x in np.asarray(f.attrs["head_names"]).reshape(-1)]
            check(sinfo is not None and sinfo.length is None and aid.shape == (len(NAMES),)
                  and v == NAMES,
                  "attribute head_names = %s, variable-length strings" % NAMES,
                  "got %r, dtype %s (string info %s), shape %s" % (v, aid.dtype, sinfo,
                                                                  aid.shape))
        # ---- datasets
        found = {}
        f.visititems(lambda n, o: found.__setitem__(n, o) if isinstance(o, h5py.Dataset)
                     else None)
        missing = sorted(set(exp) - set(found))
        extra = sorted(set(found) - set(exp))
        check(not missing and not extra,
              "datasets: exactly the %d expected names (N %d, heads %s, projections s = %s)"
              % (len(exp), N, DIMS, list(range(N, 0, -4))),
              "missing %s; unexpected %s" % (missing, extra))
        bad = ["%s %s (expected %s)" % (n, found[n].shape, exp[n]) for n in sorted(exp)
               if n in found and found[n].shape != exp[n]]
        check(not bad, "datasets: every shape as expected", "; ".join(bad))
        bad = ["%s %s" % (n, found[n].dtype) for n in sorted(found)
               if found[n].dtype != np.dtype("float32")]
        check(not bad, "datasets: all float32", "; ".join(bad))
    return exp


def check_init_stats(ds):
    # ---- constants
    for suffix, val in (("/bias", 0.0), ("/gamma", 1.0), ("/beta", 0.0), ("/moving_mean", 0.0),
                        ("/moving_variance", 1.0)):
        names = sorted(n for n in ds if n.endswith(suffix))
        bad = [n for n in names if not np.all(ds[n] == val)]
        check(names and not bad, "init: all %d '*%s' datasets are exactly %g"
              % (len(names), suffix, val), "not: %s" % bad)

    # ---- FFN kernels: truncated normal, std 0.01, cut at 2 std
    ffn = sorted(n for n in ds if re.search(r"/ffn[12]/kernel$", n))
    allw = np.concatenate([ds[n].astype(np.float64).ravel() for n in ffn])
    lim = 0.02 * (1 + 1e-6)
    check(np.abs(allw).max() <= lim,
          "init: FFN kernels |w| <= 0.02 (cut at 2 std), max |w| = %.6f" % np.abs(allw).max())
    check(np.abs(allw).max() >= 0.0195,
          "init: FFN kernels reach the cut (max |w| %.6f >= 0.0195)" % np.abs(allw).max())
    sd = allw.std()
    check(abs(sd / TRUNC_STD - 1) < 0.03,
          "init: FFN kernels pooled std %.6f within 3%% of 0.01 * 0.8796 = %.6f (n %d)"
          % (sd, TRUNC_STD, allw.size))
    check(abs(allw.mean()) < 5 * TRUNC_STD / math.sqrt(allw.size),
          "init: FFN kernels pooled mean %.2e ~ 0" % allw.mean())
    frac = np.mean(np.abs(allw) <= 0.01)
    want = 0.682689 / 0.954500
    check(abs(frac - want) < 0.02,
          "init: FFN kernels fraction within 1 std %.4f ~ %.4f (a normal cut at 2 std, not a "
          "uniform: 0.5)" % (frac, want))
    bad = []
    for n in ffn:
        w = ds[n].astype(np.float64)
        if abs(w.std() / TRUNC_STD - 1) > 0.1 or abs(w).max() > lim:
            bad.append("%s std %.6f max %.6f" % (n, w.std(), abs(w).max()))
    check(not bad, "init: each of the %d FFN kernels has std within 10%% of %.6f" %
          (len(ffn), TRUNC_STD), "; ".join(bad))
    same = [(a, b) for i, a in enumerate(ffn) for b in ffn[i + 1:]
            if ds[a].shape == ds[b].shape and np.array_equal(ds[a], ds[b])]
    check(not same, "init: no two FFN kernels are identical", same)

    # ---- Glorot-uniform kernels
    glo = sorted(n for n in ds if n == "stem/kernel" or re.search(r"/dwconv/kernel$", n) or
                 re.search(r"^head_\d+/proj_\d+/kernel$", n))
    pooled = []
    for n in glo:
        w = ds[n].astype(np.float64).ravel()
        a = glorot_limit(n, ds[n].shape)
        k = w.size
        mx = np.abs(w).max()
        sdr = w.std() / (a / math.sqrt(3))
        tol = 5 * 0.447 / math.sqrt(k)      # 5 standard errors of the std of a uniform sample
        ok = mx <= a * (1 + 1e-6) and mx >= a * (1 - 12.0 / k) and abs(sdr - 1) < tol
        check(ok, "init: %-22s %-9s Glorot limit %.4f: max|w| %.4f in [%.4f, %.4f], "
              "std/(limit/sqrt3) %.3f within %.3f of 1"
              % (n, str(ds[n].shape), a, mx, a * (1 - 12.0 / k), a, sdr, tol))
        pooled.append(w / a)
    u = np.concatenate(pooled)
    hist, _ = np.histogram(u, bins=10, range=(-1.0, 1.0))
    e = u.size / 10.0
    check(np.all(np.abs(hist - e) < 5 * math.sqrt(e)) and hist.sum() == u.size,
          "init: Glorot kernels / limit (n %d) spread evenly over 10 bins of [-1, 1]: %s"
          % (u.size, hist.tolist()))
    frac = np.mean(np.abs(u) <= 0.5)
    check(abs(frac - 0.5) < 5 * 0.5 / math.sqrt(u.size),
          "init: Glorot kernels fraction with |w| <= limit/2 = %.4f ~ 0.5 (uniform)" % frac)
    same = [(a, b) for i, a in enumerate(glo) for b in glo[i + 1:]
            if ds[a].shape == ds[b].shape and np.array_equal(ds[a], ds[b])]
    check(not same, "init: no two Glorot kernels are identical", same)


def parse_info(out):
    kv = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_ ]*?)\s*[:=\t]\s*(.*?)\s*$", line)
        if m:
            kv[m.group(1).strip().lower()] = m.group(2)
    return kv


def check_info(tmp, folder, names, nparams, what):
    rc, out, err = run(["info", "--model_folder", folder], tmp)
    if not check(rc == 0, "%s: pmodel info exits 0" % what, err.strip()):
        return
    kv = parse_info(out)
    for k, v in (("num_blocks", N), ("model_dim", D), ("kernel_size", 5), ("shortcut_freq", 4),
                 ("input_length", L), ("output_length", O)):
        check(kv.get(k, "").strip() == str(v), "%s: info prints %s %d" % (what, k, v),
              "got %r\n%s" % (kv.get(k), out))
    eps = kv.get("bn_epsilon")
    check(eps is not None and abs(float(eps) - 1e-3) < 1e-7,
          "%s: info prints bn_epsilon 0.001" % what, "got %r" % eps)
    lines = out.splitlines()
    for name, t in zip(names, DIMS):
        hit = [ln for ln in lines if re.search(r"(^|\s)%s(\s|$)" % re.escape(name), ln) and
               re.search(r"\b%d\b" % t, ln)]
        check(len(hit) == 1 and "\x00" not in hit[0],
              "%s: info prints head %r with %d tracks on one clean line" % (what, name, t),
              out)
    m = re.search(r"(?im)^\s*param\w*\s*[:=\t ]\s*([\d,]+)\s*$", out)
    got = int(m.group(1).replace(",", "")) if m else None
    check(got == nparams, "%s: info parameter count %s = sum of dataset sizes %d"
          % (what, got, nparams), out)
    if "receptive_radius" in kv:
        check(kv["receptive_radius"].strip() == "16",
              "%s: info receptive_radius 16 = 2*(1+1+1+1+2+2)" % what, kv["receptive_radius"])


def write_h5py_variant(src, dst, names, string_pad, eps_dtype, compress):
    """Rewrites src with h5py: int32 scalar attributes, int32 output_dims, fixed-length ASCII
    head_names (pad: 'nullpad' via numpy S dtype, or 'nullterm' via a low-level type)."""
    ds, attrs = read_all(src)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with h5py.File(dst, "w") as f:
        for n in sorted(ds):
            if compress:
                f.create_dataset(n, data=ds[n], chunks=True, compression="gzip",
                                 compression_opts=4, shuffle=True)
            else:
                f.create_dataset(n, data=ds[n])
        for k in ("format_version", "num_blocks", "model_dim", "kernel_size", "shortcut_freq",
                  "input_length", "output_length"):
            f.attrs.create(k, np.int32(int(attrs[k])), dtype=np.int32)
        f.attrs.create("bn_epsilon", eps_dtype(1e-3), dtype=eps_dtype)
        f.attrs.create("output_dims", np.asarray(DIMS, np.int32), dtype=np.int32)
        width = max(len(x) for x in names) + 3
        arr = np.array([x.encode("ascii") for x in names], dtype="S%d" % width)
        if string_pad == "nullpad":
            f.attrs.create("head_names", arr)
        else:
            tid = h5py.h5t.C_S1.copy()
            tid.set_size(width)
            tid.set_strpad(h5py.h5t.STR_NULLTERM)
            tid.set_cset(h5py.h5t.CSET_ASCII)
            sid = h5py.h5s.create_simple((len(names),))
            aid = h5py.h5a.create(f.id, b"head_names", tid, sid)
            aid.write(arr, mtype=tid)
            aid.close()
    with h5py.File(dst, "r") as f:
        aid = f.attrs.get_id("head_names")
        return "%s / %s, output_dims %s, bn_epsilon %s" % (
            aid.dtype, {0: "nullterm", 1: "nullpad", 2: "spacepad"}.get(
                aid.get_type().get_strpad()), f.attrs.get_id("output_dims").dtype,
            f.attrs.get_id("bn_epsilon").dtype)


def predict(tmp, folder, seqs, out):
    rc, o, err = run(["predict", "--model_folder", folder, "--seq_file", seqs, "--out", out],
                     tmp)
    if rc != 0:
        return None, err.strip()
    res, _ = read_all(os.path.join(tmp, out))
    return res, ""


def main():
    global BIN
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="build directory holding pmodel")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    BIN = os.path.abspath(a.bin)
    if not os.access(os.path.join(BIN, "pmodel"), os.X_OK):
        print("FAIL pmodel not found in %s" % BIN)
        return 1
    tmp = tempfile.mkdtemp(prefix="pai_model_io_")
    t0 = time.time()
    try:
        body(tmp)
    finally:
        if a.keep:
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d check(s) failed" % len(FAILURES) if FAILURES else "all checks passed",
          "(%.1f s)" % (time.time() - t0))
    for f in FAILURES:
        print("  failed: " + f)
    return 1 if FAILURES else 0


def body(tmp):
    rc, out, err = init(tmp, "m")
    path = os.path.join(tmp, "m", "model.h5")
    if not check(rc == 0 and os.path.isfile(path),
                 "pmodel init --num_blocks %d --model_dim %d --input_length %d --output_length "
                 "%d --output_dims %s --head_names %s --seed %d" % (N, D, L, O, DIMS, NAMES, SEED),
                 err.strip()):
        return
    check_layout(path)
    ds, attrs = read_all(path)
    check_init_stats(ds)
    nparams = sum(int(v.size) for v in ds.values())
    exp_params = (4 * D + D + N * (8 * D + 5 * D + D + D * 4 * D + 4 * D + 4 * D * D + D)
                  + sum(len(range(N, 0, -4)) * (D * t + t) for t in DIMS))
    check(nparams == exp_params, "parameter count from the datasets %d = formula %d"
          % (nparams, exp_params))

    # ---- seeds
    rc, _, err = init(tmp, "m_same")
    ds2, attrs2 = read_all(os.path.join(tmp, "m_same", "model.h5"))
    diff = [n for n in ds if n not in ds2 or ds[n].tobytes() != ds2[n].tobytes()]
    check(rc == 0 and not diff and set(ds) == set(ds2),
          "same --seed %d: every dataset byte-identical (%d datasets)" % (SEED, len(ds)),
          err.strip() or diff)
    rc, _, err = init(tmp, "m_other", seed=SEED + 1)
    ds3, _ = read_all(os.path.join(tmp, "m_other", "model.h5"))
    rnd = [n for n in ds if n.endswith("/kernel")]
    same = [n for n in rnd if n in ds3 and np.array_equal(ds[n], ds3[n])]
    const_diff = [n for n in ds if not n.endswith("/kernel") and
                  (n not in ds3 or not np.array_equal(ds[n], ds3[n]))]
    check(rc == 0 and not same, "different --seed: all %d kernels differ" % len(rnd),
          err.strip() or "identical: %s" % same)
    check(not const_diff, "different --seed: biases and batch-norm constants unchanged",
          const_diff)
    rc0, _, err0 = init(tmp, "m_default", seed=None)
    rc1, _, err1 = init(tmp, "m_seed0", seed=0)
    d0, _ = read_all(os.path.join(tmp, "m_default", "model.h5")) if rc0 == 0 else ({}, {})
    d1, _ = read_all(os.path.join(tmp, "m_seed0", "model.h5")) if rc1 == 0 else ({}, {})
    check(rc0 == 0 and rc1 == 0 and d0 and set(d0) == set(d1) and
          all(d0[n].tobytes() == d1[n].tobytes() for n in d0),
          "no --seed gives the same model as --seed 0", (err0 + err1).strip())

    # ---- info
    check_info(tmp, "m", NAMES, nparams, "pmodel-written model")

    # ---- overwrite
    with open(path, "rb") as fh:
        before = hashlib.sha1(fh.read()).hexdigest()
    rc, out, err = init(tmp, "m", seed=SEED + 1)
    with open(path, "rb") as fh:
        after = hashlib.sha1(fh.read()).hexdigest()
    check(rc != 0 and before == after and re.search(r"--force", err) is not None and
          not [x for x in os.listdir(os.path.join(tmp, "m")) if x != "model.h5"],
          "init over an existing model.h5 without --force: exit %d (non-zero), file unchanged, "
          "message mentions --force" % rc, err.strip())
    rc, out, err = init(tmp, "m", seed=SEED + 1, extra=["--force"])
    dsf, _ = read_all(path) if rc == 0 else ({}, {})
    check(rc == 0 and dsf and all(dsf[n].tobytes() == ds3[n].tobytes() for n in ds3),
          "init --force overwrites (result equals a fresh init with that seed)", err.strip())
    check(sorted(os.listdir(os.path.join(tmp, "m"))) == ["model.h5"],
          "model folder holds only model.h5 after --force (no temp file left)",
          os.listdir(os.path.join(tmp, "m")))

    # ---- h5py-written models: int32 attributes, fixed-length ASCII head names
    rng = np.random.RandomState(5)
    seqs = ["".join(rng.choice(list("ACGT"), L)) for _ in range(3)]
    with open(os.path.join(tmp, "seqs.txt"), "w") as fh:
        fh.write("\n".join(seqs) + "\n")
    ref_pred, perr = predict(tmp, "m_same", "seqs.txt", "pred_ref.h5")
    check(ref_pred is not None, "pmodel predict with the pmodel-written model", perr)
    if ref_pred is not None:
        shapes = {k: v.shape for k, v in ref_pred.items()}
        want = {"head_%d" % j: (len(seqs), O, t) for j, t in enumerate(DIMS)}
        check(shapes == want, "predict output datasets %s" % want, shapes)
    variants = [
        ("h5py int32 + fixed-length nullpad names", ["human", "rat"], "nullpad", np.float64,
         False, 0.0),
        ("h5py int32 + fixed-length nullterm names, float32 eps, gzip", ["mouse", "dog"],
         "nullterm", np.float32, True, 1e-5),
    ]
    for k, (what, names, pad, epsd, comp, rtol) in enumerate(variants):
        folder = "m_h5py_%d" % k
        desc = write_h5py_variant(os.path.join(tmp, "m_same", "model.h5"),
                                  os.path.join(tmp, folder, "model.h5"), names, pad, epsd, comp)
        print("note: %s written as head_names %s" % (what, desc))
        check_info(tmp, folder, names, nparams, what)
        pred, perr = predict(tmp, folder, "seqs.txt", "pred_%d.h5" % k)
        if check(pred is not None, "%s: pmodel predict runs" % what, perr) and ref_pred:
            ok = set(pred) == set(ref_pred) and all(
                pred[n].shape == ref_pred[n].shape and
                (np.array_equal(pred[n], ref_pred[n]) if rtol == 0 else
                 np.allclose(pred[n], ref_pred[n], rtol=rtol, atol=1e-6))
                for n in ref_pred)
            check(ok, "%s: predictions %s those of the original file"
                  % (what, "identical to" if rtol == 0 else "within rtol %g of" % rtol))


if __name__ == "__main__":
    sys.exit(main())
