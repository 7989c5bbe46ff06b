"""`ptrain` end to end: learning, resuming, data parallelism and bad input (REFERENCE.md 2, 4, 5).

Fixture: `psynth --n_chroms 22 --chrom_length 90000 --n_tss 1320 --n_tracks 3 --seed 1` (60 TSSs
per chromosome; chr1..chr20 = 1200 training samples, chr21 + chr22 = 120 validation samples, the
default --train_chroms / --val_chroms), `ppreprocess` stored lengths S_in 256 / S_out 128.

1. Learning. N 10 (receptive radius 64), D 24, O 64, L = O + 2*64 = 192, batch 8, 20 epochs x 60
   steps, lr 3e-3, seed 0, --threads 1 (~25 s). Why this budget: psynth's tracks are triangles
   20..60 bp wide around planted motifs, so a model needs a radius of ~64 to see the motif behind
   each output position (N 4, radius 8, stalls at val_loss ~0.55 x initial); and inference-mode
   validation needs the moving batch-norm statistics to forget their initial value (variance 1,
   momentum 0.99): after 400 steps 0.99^400 = 0.018 of it remains, as large as the early layers'
   true variance (~0.02), and val_loss goes UP to the all-zero prediction's MSE while the
   training loss falls; with 1200 steps (0.99^1200 = 6e-6) validation follows training.
   Checks: exit 0; model.h5, logs.csv, train_state.h5 and no temporary in M; logs.csv header
   `epoch,loss,val_loss,lr,wd`, one row per epoch 0..19, lr / wd = the documented schedule
   (rel 1e-6), /log equal to the CSV (rel 1e-6); attributes step 1200, epoch 20, n_epochs 20,
   batch_size 8, seed 0, best_val_loss = min(val_loss) (rel 1e-6).
   * best and final val_loss <= 0.5 * initial_val_loss.
     Measured (this data, seed 0): initial 0.821, best = final 0.0465 (ratio 0.057); over data
     seeds 1, 2 and training seeds 0..2 the ratio was 0.048..0.115.
   * `pmodel predict` of M on the centred L-base crops of the validation samples (/x codes as
     letters, N for code 4): its MSE against the centred O-position crops of /y equals
     best_val_loss within 1e-4 relative (the documented validation loss: per-sample MSE over
     positions and tracks, averaged, inference-mode BN, no shift, no reverse complement; and
     model.h5 is the best epoch's model). Measured: equal to 1e-9.
   * Pearson(prediction, target) over all positions and tracks >= 0.8, and per track >= 0.7.
     Measured 0.952 (tracks 0.957, 0.942, 0.941); over the 5 seed combinations 0.90..0.95, per
     track >= 0.886. Note that the mean TSS-centred profile (TATA box always 30 bp upstream)
     alone reaches 0.88 here; the network is translation-equivariant on the kept outputs (L =
     O + 2*radius, padding never reaches them) so even that profile must come from finding the
     TATA box in the sequence, but to show that the other motifs were learnt too:
   * Pearson of the residuals after subtracting, from both, the training chromosomes' mean
     profile (per position and track) >= 0.3. Measured 0.771; over the seeds 0.57..0.80; a model
     that learnt only the TSS profile gets ~0.
   * Not a check (the coupling is not part of the contract), only printed: the MSE of `pmodel
     init --seed 0` (same dimensions) on the same crops, which equals initial_val_loss when
     pmodel init draws the same initial weights as ptrain --seed 0 (it does today: 0.8209875).
2. Resume (N 4, D 16, O 64, L 80, batch 8, 3 epochs x 10 steps, seed 5): one straight run vs
   `--stop_after_epochs 1` (1 CSV row, attribute epoch 1) then `--resume`: every dataset of
   model.h5 and train_state.h5 (dtype, shape and bytes) and every attribute equal, logs.csv
   byte-identical. Resuming restores the weights, Adam moments, step, best loss and the data
   order / augmentation stream, so nothing may differ at all.
3. Data parallel (same small model, 2 epochs x 10 steps, lr 1e-4, seed 3): `mpirun -np 2
   --threads 1` vs `mpirun -np 1 --threads 1`. /params (weights and moving statistics) per
   tensor: max|a - b| <= 1e-5 * max|a| + 1e-7; logs.csv loss and val_loss within 1e-5 relative,
   lr and wd equal. Each rank takes half the global batch and gradients and batch-norm
   statistics are summed over ranks, so only float32 summation order differs (~1e-7 relative);
   a rank using its local statistics, an unsummed gradient or other samples is off by O(1),
   while the weights move by up to ~6e-3 (epoch 0 runs at 5 x lr: the schedule's warm-up factor
   (e + 1) / (0.1 E) is 5 for E = 2). Measured worst tensor: 0.011 of the allowance (seeds 3, 4,
   7, 11, 12, 13: 0.007..0.11). The lr is kept low on purpose: Adam's first steps are nearly
   sign(g) * lr, so a rounding-level difference that flips a ReLU or a near-zero gradient grows
   with lr; with lr 3e-3 and E 2 (epoch 0 at 0.015) `-np 1 --threads 2` differs from
   `-np 1 --threads 1` by 720 x the allowance, exactly as much as -np 2 does: float chaos, not
   MPI.
4. Bad input, each under `mpirun -np 2` with every rank's exit status recorded by a shell
   wrapper (Open MPI's abort-on-first-failure is turned off so that no rank is killed before it
   reports; mpirun's own status is then 0 and not used): every rank exits 1 (2 for usage
   errors), stderr holds one distinct `[E ...]` line and it names the culprit, and M is not
   created (for the two runs into an existing run folder: its files are left unchanged):
   missing --h5_human_folder folder; a folder without manifest.tsv; a manifest row whose shard
   file is missing; a shard whose /y has 2 tracks where the folder's others have 3 (rewritten
   with h5py, its own attributes made consistent, so only the comparison with the other shards
   can catch it); a nonhuman folder stored with 64 bases for L 80; --batch_size 3 under -np 2
   (exit 2, names --batch_size); a rerun into a run folder without --resume (exit 2); --resume
   with another --batch_size (exit 2, names --batch_size).
Usage: /usr/bin/python3 tests/test_ptrain.py --bin BUILD_DIR
"""

import csv
import os
import shutil
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref  # noqa: E402
from harness import (MPI_ENV, Checker, exe_from_args, mpirun_prefix, require_binary,  # noqa: E402
                     run, run_group)

S_IN, S_OUT, N_TRACKS = 256, 128, 3
SYNTH = ["--n_chroms", 22, "--chrom_length", 90000, "--n_tss", 1320, "--n_tracks", N_TRACKS,
         "--seed", 1]
TRAIN = [f"chr{i}" for i in range(1, 21)]
VAL = ["chr21", "chr22"]
LOG_HEADER = ["epoch", "loss", "val_loss", "lr", "wd"]

# 1. learning
LEARN = dict(num_blocks=10, model_dim=24, output_length=64, input_length=192, batch_size=8,
             epochs=20, steps_per_epoch=60, learning_rate=3e-3, seed=0)
LOSS_RATIO_MAX = 0.5
PRED_LOSS_RTOL = 1e-4
PEARSON_MIN, PEARSON_TRACK_MIN, PEARSON_RESID_MIN = 0.8, 0.7, 0.3
# 2.-4. a small model: N 4 has radius 8, so L = O + 16
SMALL = dict(num_blocks=4, model_dim=16, output_length=64, input_length=80, batch_size=8,
             steps_per_epoch=10)
PAR_RTOL, PAR_ATOL = 1e-5, 1e-7
LOG_RTOL = 1e-6


# The CPU trainer unless a caller says otherwise (tests/test_gpu_train.py runs test_learning on
# a GPU): on a machine with a GPU, ptrain's default --device auto would pick it.
DEVICE_ARGS = ["--device", "cpu"]


def ptrain_args(model_folder, human, **opts):
    args = ["--model_folder", model_folder, "--h5_human_folder", human, *DEVICE_ARGS]
    for k, v in opts.items():
        if isinstance(v, (list, tuple)):
            args += [f"--{k}", *v]
        elif v is True:
            args.append(f"--{k}")
        elif v is not None and v is not False:
            args += [f"--{k}", v]
    return args


def schedule(e, n_epochs):
    """Per-epoch factor on lr and wd (REFERENCE.md section 5)."""
    if e < 0.1 * n_epochs:
        return (e + 1) / (0.1 * n_epochs)
    if e > 0.9 * n_epochs:
        return (n_epochs - e) / (0.1 * n_epochs)
    return 1.0


def read_logs(path):
    """(header, rows as float lists) of logs.csv."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return (rows[0] if rows else []), [[float(v) for v in r] for r in rows[1:] if r]


def h5_contents(path):
    """{name: (dtype, shape, bytes)} for every dataset, {name + '@': attrs} for every object
    with attributes (the root is '/')."""
    def attrs(obj):
        return {k: (np.asarray(obj.attrs[k]).dtype.str, np.asarray(obj.attrs[k]).tolist())
                for k in obj.attrs}
    out = {}
    with h5py.File(path, "r") as f:
        out["/@"] = attrs(f)

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                out[name] = (a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes())
            if obj.attrs:
                out[name + "@"] = attrs(obj)
        f.visititems(visit)
    return out


def read_group(path, group):
    out = {}
    with h5py.File(path, "r") as f:
        if group in f:
            f[group].visititems(lambda n, o: out.__setitem__(n, o[()].astype(np.float64))
                                if isinstance(o, h5py.Dataset) else None)
    return out


def state_attrs(path):
    with h5py.File(path, "r") as f:
        return {k: f.attrs[k] for k in f.attrs}


def centred(h5dir, chroms, length, output=False):
    """Centred crops of /x (length bases) or /y (length positions) of the chromosomes' shards,
    concatenated in the order given."""
    parts = []
    for c in chroms:
        with h5py.File(os.path.join(h5dir, f"{c}.h5"), "r") as f:
            d = f["y" if output else "x"]
            a = (d.shape[1] - length) // 2
            parts.append(d[:, a:a + length][()])
    out = np.concatenate(parts)
    return out.astype(np.float64) if output else out


def pearson(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def folder_snapshot(folder):
    """name -> (bytes, st_mtime_ns) of every file in folder."""
    out = {}
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        with open(p, "rb") as fh:
            out[name] = (fh.read(), os.stat(p).st_mtime_ns)
    return out


def make_data(ck, tmp, psynth, ppreprocess):
    syn = os.path.join(tmp, "synth")
    proc = run([psynth, "--out", syn, *SYNTH])
    if not ck.check(proc.returncode == 0, f"psynth: exit 0 (got {proc.returncode})"):
        return None
    h5 = os.path.join(tmp, "shards")
    proc = run([ppreprocess, "--h5_folder", h5, "--tss_file", os.path.join(syn, "tss.tsv"),
                "--fasta_file", os.path.join(syn, "genome.fa"), "--bigwig_files",
                os.path.join(syn, "tracks.tsv"), "--input_length", S_IN, "--output_length", S_OUT,
                "--quiet"], timeout=180)
    if not ck.check(proc.returncode == 0 and os.path.isfile(os.path.join(h5, "manifest.tsv")),
                    f"ppreprocess: exit 0 and manifest.tsv (got {proc.returncode})"):
        return None
    return syn, h5


# ---------------------------------------------------------------------------------------------
# 1. learning

def check_logs_and_state(ck, label, folder, n_epochs, steps, batch, seed, lr, wd):
    """logs.csv, /log and the train_state attributes of a finished run. Returns (rows, attrs)."""
    header, rows = read_logs(os.path.join(folder, "logs.csv"))
    ck.check(header == LOG_HEADER and [int(r[0]) for r in rows] == list(range(n_epochs))
             and all(len(r) == 5 for r in rows),
             f"{label}: logs.csv header {header}, epochs 0..{n_epochs - 1} "
             f"(got {[int(r[0]) for r in rows]})")
    bad = [f"epoch {int(r[0])}: lr {r[3]:.9g} wd {r[4]:.9g}" for r in rows
           if abs(r[3] - lr * schedule(int(r[0]), n_epochs)) > LOG_RTOL * lr
           or abs(r[4] - wd * schedule(int(r[0]), n_epochs)) > LOG_RTOL * wd]
    ck.check(not bad, f"{label}: lr and wd follow the schedule (peak {lr}, {wd}) {bad[:3]}")
    state = os.path.join(folder, "train_state.h5")
    attrs = state_attrs(state)
    with h5py.File(state, "r") as f:
        log = f["log"][()].astype(np.float64) if "log" in f else np.zeros((0, 4))
    csv_vals = np.array([r[1:] for r in rows]) if rows else np.zeros((0, 4))
    ck.check(log.shape == (n_epochs, 4) and csv_vals.shape == log.shape
             and np.allclose(log, csv_vals, rtol=LOG_RTOL, atol=0),
             f"{label}: /log {log.shape} equals logs.csv's loss, val_loss, lr, wd")
    want = dict(step=n_epochs * steps, epoch=n_epochs, n_epochs=n_epochs, batch_size=batch,
                seed=seed)
    got = {k: int(attrs[k]) if k in attrs else None for k in want}
    ck.check(got == want, f"{label}: train_state attributes {got} (want {want})")
    best = float(attrs.get("best_val_loss", np.nan))
    vmin = min(r[2] for r in rows) if rows else np.nan
    ck.check(abs(best - vmin) <= LOG_RTOL * abs(vmin),
             f"{label}: best_val_loss {best:.9g} = min(val_loss) {vmin:.9g}")
    return rows, attrs


def test_learning(ck, tmp, exe, pmodel, h5):
    m = os.path.join(tmp, "learn")
    o = LEARN
    proc = run([exe, *ptrain_args(m, h5, threads=1, quiet=True, **o)], timeout=400)
    if not ck.check(proc.returncode == 0, f"learning: exit 0 (got {proc.returncode})"):
        return
    ck.check("[E" not in proc.stderr, "learning: no error line on stderr")
    names = sorted(os.listdir(m))
    ck.check(names == ["logs.csv", "model.h5", "train_state.h5"],
             f"learning: M holds model.h5, logs.csv, train_state.h5 and nothing else ({names})")
    rows, attrs = check_logs_and_state(ck, "learning", m, o["epochs"], o["steps_per_epoch"],
                                       o["batch_size"], o["seed"], o["learning_rate"], 5e-6)
    init = float(attrs.get("initial_val_loss", np.nan))
    best = float(attrs.get("best_val_loss", np.nan))
    final = rows[-1][2] if rows else np.nan
    print(f"  initial_val_loss {init:.6g}, best {best:.6g} (ratio {best / init:.3g}), "
          f"final {final:.6g} (ratio {final / init:.3g})")
    ck.check(best <= LOSS_RATIO_MAX * init and final <= LOSS_RATIO_MAX * init,
             f"learning: best {best:.4g} and final {final:.4g} val_loss <= {LOSS_RATIO_MAX} x "
             f"initial {init:.4g}")

    L, O = o["input_length"], o["output_length"]
    x = centred(h5, VAL, L)
    y = centred(h5, VAL, O, output=True)
    seq_file = os.path.join(tmp, "val_seqs.txt")
    letters = np.array(list("ACGTN"))
    with open(seq_file, "w") as fh:
        for codes in x:
            fh.write("".join(letters[codes]) + "\n")
    out = os.path.join(tmp, "val_pred.h5")
    proc = run([pmodel, "predict", "--model_folder", m, "--seq_file", seq_file, "--out", out,
                "--threads", 1], timeout=120)
    if not ck.check(proc.returncode == 0 and os.path.isfile(out),
                    f"pmodel predict on M: exit 0 (got {proc.returncode})"):
        return
    with h5py.File(out, "r") as f:
        pred = f["head_0"][()].astype(np.float64)
    if not ck.check(pred.shape == y.shape, f"pmodel predict: head_0 shape {pred.shape} = "
                                           f"targets {y.shape}"):
        return
    mse = float(((pred - y) ** 2).mean(axis=(1, 2)).mean())
    ck.check(abs(mse - best) <= PRED_LOSS_RTOL * best,
             f"learning: MSE of M's predictions on the centred validation crops {mse:.9g} = "
             f"best_val_loss {best:.9g} (rel {abs(mse - best) / best:.2e}, tol {PRED_LOSS_RTOL})")
    r_all = pearson(pred, y)
    r_trk = [pearson(pred[..., t], y[..., t]) for t in range(y.shape[2])]
    profile = centred(h5, TRAIN, O, output=True).mean(axis=0)      # [O, T]
    r_res = pearson(pred - profile, y - profile)
    base_mse = float(((y - profile) ** 2).mean())
    print(f"  Pearson all {r_all:.4f}, per track {[round(r, 4) for r in r_trk]}, residual over "
          f"the mean profile {r_res:.4f} (the profile alone: MSE {base_mse:.4g}, Pearson "
          f"{pearson(np.broadcast_to(profile, y.shape), y):.4f})")
    ck.check(r_all >= PEARSON_MIN, f"learning: Pearson over all positions and tracks "
                                   f"{r_all:.4f} >= {PEARSON_MIN}")
    ck.check(all(r >= PEARSON_TRACK_MIN for r in r_trk),
             f"learning: Pearson per track {[round(r, 4) for r in r_trk]} >= {PEARSON_TRACK_MIN}")
    ck.check(r_res >= PEARSON_RESID_MIN,
             f"learning: Pearson of the residuals over the training mean profile {r_res:.4f} >= "
             f"{PEARSON_RESID_MIN}")

    init_folder = os.path.join(tmp, "init")
    proc = run([pmodel, "init", "--model_folder", init_folder, "--num_blocks", o["num_blocks"],
                "--model_dim", o["model_dim"], "--input_length", L, "--output_length", O,
                "--output_dims", y.shape[2], "--seed", o["seed"]])
    out0 = os.path.join(tmp, "val_pred_init.h5")
    if proc.returncode == 0 and run([pmodel, "predict", "--model_folder", init_folder,
                                     "--seq_file", seq_file, "--out", out0,
                                     "--threads", 1]).returncode == 0:
        with h5py.File(out0, "r") as f:
            mse0 = float(((f["head_0"][()].astype(np.float64) - y) ** 2).mean())
        print(f"  NOTE MSE of `pmodel init --seed {o['seed']}` on the validation crops {mse0:.9g}, "
              f"initial_val_loss {init:.9g} (equal when both draw the same initial weights)")


# ---------------------------------------------------------------------------------------------
# 2. resume

def test_resume(ck, tmp, exe, h5):
    opts = dict(SMALL, epochs=3, learning_rate=3e-3, seed=5, threads=1, quiet=True)
    a, b = os.path.join(tmp, "straight"), os.path.join(tmp, "stopped")
    pa = run([exe, *ptrain_args(a, h5, **opts)])
    pb = run([exe, *ptrain_args(b, h5, stop_after_epochs=1, **opts)])
    if not ck.check(pa.returncode == 0 and pb.returncode == 0,
                    f"resume: straight run and --stop_after_epochs 1 exit 0 (got "
                    f"{pa.returncode}, {pb.returncode})"):
        return None
    _, rows = read_logs(os.path.join(b, "logs.csv"))
    epoch = int(state_attrs(os.path.join(b, "train_state.h5")).get("epoch", -1))
    ck.check(len(rows) == 1 and epoch == 1 and os.path.isfile(os.path.join(b, "model.h5")),
             f"resume: after --stop_after_epochs 1: {len(rows)} CSV row(s), attribute epoch "
             f"{epoch}, model.h5 present")
    pb = run([exe, *ptrain_args(b, h5, resume=True, **opts)])
    if not ck.check(pb.returncode == 0, f"resume: --resume exits 0 (got {pb.returncode})"):
        return a
    check_logs_and_state(ck, "resume", b, 3, SMALL["steps_per_epoch"], SMALL["batch_size"], 5,
                         3e-3, 5e-6)
    for name in ("model.h5", "train_state.h5"):
        ca, cb = h5_contents(os.path.join(a, name)), h5_contents(os.path.join(b, name))
        diff = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
        n_sets = sum(1 for k in ca if not k.endswith("@"))
        ck.check(not diff, f"resume: {name}: {n_sets} datasets and all attributes bit-identical "
                           f"to the straight run (differ: {diff[:6]})")
    with open(os.path.join(a, "logs.csv"), "rb") as fa, open(os.path.join(b, "logs.csv"),
                                                            "rb") as fb:
        ck.check(fa.read() == fb.read(), "resume: logs.csv identical to the straight run")
    # --resume of a finished run: exit 0, says so, trains nothing (logs.csv unchanged)
    before = open(os.path.join(b, "logs.csv"), "rb").read()
    pc = run([exe, *ptrain_args(b, h5, resume=True, **dict(opts, quiet=False))])
    ck.check(pc.returncode == 0 and "all 3 epochs already done" in pc.stderr and
             open(os.path.join(b, "logs.csv"), "rb").read() == before,
             f"resume: --resume of a finished run exits 0 (got {pc.returncode}), says all 3 "
             f"epochs are done, and leaves logs.csv as it was")
    return a


# ---------------------------------------------------------------------------------------------
# 3. data parallel

def test_parallel(ck, tmp, exe, h5):
    opts = dict(SMALL, epochs=2, learning_rate=1e-4, seed=3, threads=1, quiet=True)
    folders = {}
    for ranks in (1, 2):
        m = os.path.join(tmp, f"np{ranks}")
        proc = run_group(mpirun_prefix(ranks) + [exe, *ptrain_args(m, h5, **opts)], timeout=180,
                         env_extra=dict(MPI_ENV, OMP_NUM_THREADS="1"))
        if ck.check(proc.returncode == 0 and not proc.timed_out,
                    f"parallel: mpirun -np {ranks} exits 0 (got {proc.returncode})"):
            folders[ranks] = m
    if len(folders) < 2:
        return
    pa = read_group(os.path.join(folders[1], "train_state.h5"), "params")
    pb = read_group(os.path.join(folders[2], "train_state.h5"), "params")
    bad, worst = [], (-1.0, "")
    if not pa or sorted(pa) != sorted(pb):
        bad.append(f"tensor names differ ({len(pa)} vs {len(pb)})")
    for n in sorted(set(pa) & set(pb)):
        x, y = pa[n], pb[n]
        if x.shape != y.shape or not (np.isfinite(x).all() and np.isfinite(y).all()):
            bad.append(f"{n}: shapes {x.shape} vs {y.shape} or non-finite values")
            continue
        err = float(np.abs(x - y).max(initial=0.0))
        allowed = PAR_RTOL * float(np.abs(x).max(initial=0.0)) + PAR_ATOL
        if err / allowed > worst[0]:
            worst = (err / allowed, f"{n} {err:.2e} vs allowed {allowed:.2e}")
        if err > allowed:
            bad.append(f"{n}: max|a-b| {err:.3e} > {allowed:.3e}")
    for line in bad[:8]:
        print("  " + line)
    ck.check(not bad, f"parallel: /params of -np 2 = -np 1 per tensor within {PAR_RTOL} x "
                      f"max|a| + {PAR_ATOL} ({len(pa)} tensors; worst {worst[1]}, ratio "
                      f"{worst[0]:.3g})")
    ha, ra = read_logs(os.path.join(folders[1], "logs.csv"))
    hb, rb = read_logs(os.path.join(folders[2], "logs.csv"))
    ok = ha == hb == LOG_HEADER and len(ra) == len(rb) == 2
    worst_rel = 0.0
    for x, y in zip(ra, rb):
        ok = ok and x[0] == y[0] and x[3] == y[3] and x[4] == y[4]
        for k in (1, 2):
            rel = abs(x[k] - y[k]) / abs(x[k])
            worst_rel = max(worst_rel, rel)
            ok = ok and rel <= PAR_RTOL
    ck.check(ok, f"parallel: logs.csv loss and val_loss within {PAR_RTOL} relative (worst "
                 f"{worst_rel:.2e}), epochs, lr, wd equal")


# ---------------------------------------------------------------------------------------------
# 4. bad input

RANK_WRAPPER = '"$0" "$@"; rc=$?; echo $rc > "$PT_RC_DIR/rank.$OMPI_COMM_WORLD_RANK"; exit $rc'


def run_ranks(exe, args, ranks, rc_dir):
    """Run under mpirun with each rank's exit status written to rc_dir/rank.<r>; returns
    (CompletedProcess, [status per rank, None where missing])."""
    shutil.rmtree(rc_dir, ignore_errors=True)
    os.makedirs(rc_dir)
    env = dict(MPI_ENV, OMP_NUM_THREADS="1", PT_RC_DIR=rc_dir,
               OMPI_MCA_orte_abort_on_non_zero_status="0")
    proc = run_group(mpirun_prefix(ranks) + ["/bin/sh", "-c", RANK_WRAPPER, exe, *args],
                     timeout=120, env_extra=env)
    codes = []
    for r in range(ranks):
        p = os.path.join(rc_dir, f"rank.{r}")
        codes.append(int(open(p).read().strip()) if os.path.isfile(p) else None)
    return proc, codes


def check_error(ck, label, proc, codes, want_code, culprits):
    """Every rank exits want_code; one distinct [E ...] line, naming every string in culprits."""
    ck.check(not proc.timed_out and codes == [want_code] * len(codes),
             f"{label}: every rank exits {want_code} (got {codes})")
    errs = sorted({ln.strip() for ln in proc.stderr.splitlines() if ln.startswith("[E")})
    ck.check(len(errs) == 1 and all(c in errs[0] for c in culprits),
             f"{label}: one error line naming {culprits} (got {errs})")


def test_bad_input(ck, tmp, exe, syn, ppreprocess, h5, run_folder):
    bad = os.path.join(tmp, "bad")
    os.makedirs(bad)
    rc_dir = os.path.join(tmp, "rank_status")
    m = os.path.join(bad, "model")
    opts = dict(SMALL, epochs=2, threads=1, quiet=True)

    def case(label, human, want_code, culprits, **extra):
        o = dict(opts)
        o.update(extra)
        proc, codes = run_ranks(exe, ptrain_args(m, human, **o), 2, rc_dir)
        check_error(ck, label, proc, codes, want_code, culprits)
        ck.check(not os.path.exists(m), f"{label}: model folder not created")
        shutil.rmtree(m, ignore_errors=True)

    nope = os.path.join(bad, "no_such_folder")
    case("missing --h5_human_folder", nope, 1, [nope])

    no_manifest = os.path.join(bad, "no_manifest")
    os.makedirs(no_manifest)
    shutil.copy(os.path.join(h5, "chr1.h5"), no_manifest)
    case("folder without manifest.tsv", no_manifest, 1, [no_manifest, "manifest.tsv"])

    missing = os.path.join(bad, "missing_shard")
    shutil.copytree(h5, missing)
    os.remove(os.path.join(missing, "chr5.h5"))
    case("manifest row with a missing shard", missing, 1, [os.path.join(missing, "chr5.h5")])

    truncated = os.path.join(bad, "truncated_shard")
    shutil.copytree(h5, truncated)
    victim = os.path.join(truncated, "chr3.h5")
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    case("a truncated shard", truncated, 1, [victim])

    tracks = os.path.join(bad, "track_count")
    shutil.copytree(h5, tracks)
    victim = os.path.join(tracks, "chr7.h5")
    with h5py.File(victim, "r") as f:
        data = {k: f[k][()] for k in f}
        attrs = {k: f.attrs[k] for k in f.attrs}
    attrs.update(n_tracks=np.int64(2), track_names=attrs["track_names"][:2],
                 xforms=attrs["xforms"][:2])
    with h5py.File(victim, "w") as f:
        for k, v in data.items():
            f[k] = v[..., :2] if k == "y" else v
        for k, v in attrs.items():
            f.attrs[k] = v
    case("a shard with 2 tracks among shards with 3", tracks, 1, [victim])

    short = os.path.join(bad, "short_nonhuman")
    proc = run([ppreprocess, "--h5_folder", short, "--tss_file", os.path.join(syn, "tss.tsv"),
                "--fasta_file", os.path.join(syn, "genome.fa"), "--bigwig_files",
                os.path.join(syn, "tracks.tsv"), "--input_length", 64, "--output_length", 64,
                "--chrom", "chr1", "chr2", "--quiet"])
    if ck.check(proc.returncode == 0, "ppreprocess of the short nonhuman folder: exit 0"):
        case("nonhuman folder stored shorter than input_length", h5, 1, [short],
             h5_nonhuman_folders=short)

    case("--batch_size 3 under -np 2", h5, 2, ["--batch_size"], batch_size=3)
    # REFERENCE.md 2.4: L >= O + 2 x receptive radius, or padding would reach the kept outputs
    short_l = SMALL["output_length"] + 2 * promoterai_ref.receptive_radius(SMALL["num_blocks"]) - 2
    case("--input_length below O + 2 x radius", h5, 2, ["--input_length"], input_length=short_l)
    case("--resume without a training state", h5, 2, ["--resume", m], resume=True)

    if run_folder is None or not os.path.isfile(os.path.join(run_folder, "train_state.h5")):
        ck.check(False, "bad input: no finished run folder to rerun into")
        return
    before = folder_snapshot(run_folder)
    small = dict(SMALL, epochs=3, learning_rate=3e-3, seed=5, threads=1, quiet=True)
    for label, extra, culprits in (
            ("rerun into a run folder without --resume", {}, [run_folder]),
            ("--resume with another --batch_size", dict(resume=True, batch_size=4),
             ["--batch_size"]),
            ("--resume with another --model_dim (named, with the saved value)",
             dict(resume=True, model_dim=2 * SMALL["model_dim"]),
             ["--model_dim %d, saved %d" % (2 * SMALL["model_dim"], SMALL["model_dim"])])):
        o = dict(small)
        o.update(extra)
        proc, codes = run_ranks(exe, ptrain_args(run_folder, h5, **o), 2, rc_dir)
        check_error(ck, label, proc, codes, 2, culprits)
        after = folder_snapshot(run_folder)
        ck.check(after == before, f"{label}: the run folder's files are unchanged "
                                  f"({sorted(after)})")


def main():
    exe = exe_from_args(__doc__, "ptrain")
    bin_dir = os.path.dirname(exe)
    psynth, ppreprocess, pmodel = (require_binary(bin_dir, n)
                                   for n in ("psynth", "ppreprocess", "pmodel"))
    ck = Checker()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(ck, tmp, psynth, ppreprocess)
        if data is None:
            return ck.finish()
        syn, h5 = data
        test_learning(ck, tmp, exe, pmodel, h5)
        run_folder = test_resume(ck, tmp, exe, h5)
        test_parallel(ck, tmp, exe, h5)
        test_bad_input(ck, tmp, exe, syn, ppreprocess, h5, run_folder)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
