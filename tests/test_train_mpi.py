"""Data-parallel training under MPI: `train_step` with 1 and 2 ranks must give the same result.

Fixture: one random model (N 4, D 8, two heads of 3 and 2 tracks, L = O + 2*radius + 4), a
global batch of B = 4 samples for head 1 (scattered N positions, targets >= 0) and a random
initial optimizer state on the scale of clipnorm-1e-4 training (step 5, m ~ N(0, 3e-6),
v ~ U(1e-12, 1e-10), so that the gradient terms are visible in /m and /v). The same command
(--steps 3 --threads 1, lr 1e-3, wd 0.01, clipnorm 1e-4) runs under `mpirun -np 1` and
`mpirun -np 2`; with 2 ranks each rank takes 2 samples, and batch-norm statistics and gradients
are summed across ranks while the loss is divided by the global B, so the results must equal the
one-rank run up to float32 summation order:
  * both exit 0; attribute step = 5 + 3 on both;
  * /loss (first step's loss): |a - b| <= 1e-6 |a|;
  * /grad (first step), /params, /m, /v after 3 steps, per tensor:
      max|a - b| <= 1e-5 * max|a| (+ 1e-7 for /params and /grad, whose entries are O(0.1);
      no absolute floor for /m ~1e-5 and /v ~1e-11, which a 1e-7 floor would hide entirely;
      a tensor that is all zero in one run must be all zero in the other).
    Differences come only from the order of float32 sums (~1e-7 relative), amplified little by
    3 clipped Adam steps, so 1e-5 leaves ample headroom while a rank that used only its local
    batch statistics, an unsummed gradient or a loss divided by the local B is off by O(1).
  * against the float64 reference (tests/ref/train_ref.py) for the first step: /loss of each run
    within 1e-5 relative, and /grad within 1e-4 * max|ref| per tensor (as tests/test_train_grad.py).
Error case: B = 3 with 2 ranks (not divisible) must exit non-zero, print an error mentioning
"batch" on stderr, and leave the (otherwise empty) output folder empty: no O.h5, no temporary.
Usage: /usr/bin/python3 tests/test_train_mpi.py --bin BUILD_DIR
"""

import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref as R  # noqa: E402
import train_ref as TR  # noqa: E402
from harness import MPI_ENV, Checker, exe_from_args, mpirun_prefix, run_group  # noqa: E402

N, D, DIMS, O, EXTRA, B, SPECIES, STEPS = 4, 8, [3, 2], 12, 4, 4, 1, 3
LR, WD, CLIPNORM, STEP0 = 1e-3, 0.01, 1e-4, 5
RUN_RTOL, RUN_ATOL_PARAMS, LOSS_RTOL_RUNS = 1e-5, 1e-7, 1e-6
LOSS_RTOL_REF, GRAD_RTOL_REF = 1e-5, 1e-4


def tensor_compare(ck, label, a, b, names, atol):
    """Per tensor max|a - b| <= RUN_RTOL * max|a| + atol; reports the worst tensor."""
    worst, bad = (-1.0, None, 0.0, 0.0), []
    for n in names:
        if n not in a or n not in b:
            bad.append(f"{n}: missing in {'first' if n not in a else 'second'} run")
            continue
        x, y = np.asarray(a[n]), np.asarray(b[n])
        if x.shape != y.shape:
            bad.append(f"{n}: shapes {x.shape} vs {y.shape}")
            continue
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            bad.append(f"{n}: non-finite values")
            continue
        err = float(np.abs(x - y).max(initial=0.0))
        allowed = RUN_RTOL * float(np.abs(x).max(initial=0.0)) + atol
        ratio = err / allowed if allowed > 0 else (0.0 if err == 0 else float("inf"))
        if ratio > worst[0]:
            worst = (ratio, n, err, allowed)
        if ratio > 1.0:
            bad.append(f"{n}: max|a-b| {err:.3e} > allowed {allowed:.3e}")
    for line in bad[:8]:
        print("  " + line)
    msg = f"{label}: {len(names)} tensors"
    if worst[1] is not None:
        msg += (f"; worst {worst[1]}: {worst[2]:.2e} vs allowed {worst[3]:.2e} "
                f"(ratio {worst[0]:.3g})")
    return ck.check(not bad, msg + (f"; {len(bad)} out of tolerance" if bad else ""))


# Extra train_step arguments (tests/test_gpu_train.py runs these checks on the GPU backend).
EXTRA_ARGS = []


def train(exe, ranks, folder, batch, state, out, timeout=180):
    cmd = mpirun_prefix(ranks) + [exe, *EXTRA_ARGS, "--model_folder", folder, "--batch", batch,
                                  "--out", out,
                                  "--state", state, "--lr", repr(LR), "--wd", repr(WD),
                                  "--clipnorm", repr(CLIPNORM), "--steps", str(STEPS),
                                  "--threads", "1"]
    return run_group(cmd, timeout=timeout, env_extra=dict(MPI_ENV, OMP_NUM_THREADS="1"))


def main():
    exe = exe_from_args(__doc__, "train_step")
    import torch
    torch.set_num_threads(2)
    ck = Checker()
    check_ranks(ck, exe)
    return ck.finish()


def check_ranks(ck, exe, label=""):
    """Every check above for one train_step program (label prefixes the lines)."""
    ck_check = ck.check
    ck = type("Prefixed", (), {"check": staticmethod(
        lambda ok, what: ck_check(ok, f"{label}{what}"))})()
    rng = np.random.default_rng(2024)
    with tempfile.TemporaryDirectory() as tmp:
        L = O + 2 * R.receptive_radius(N) + EXTRA
        folder = os.path.join(tmp, "model")
        R.write_random_model(folder, N, D, DIMS, L, O, ["human", "mouse"], seed=77)
        meta, w = TR.model_weights(folder)
        x = rng.integers(0, 4, size=(B, L)).astype(np.uint8)
        x[rng.random((B, L)) < 0.05] = 4
        y = np.abs(rng.normal(0.4, 0.4, size=(B, O, DIMS[SPECIES]))).astype(np.float32)
        batch = os.path.join(tmp, "batch.h5")
        TR.write_batch(batch, x, y, SPECIES)
        names_tr, names_all = TR.trainable_names(meta), TR.all_names(meta)
        # State on the scale of clipnorm-1e-4 training (clipped gradient entries ~1e-5, so
        # 0.1 g ~ 1e-6 and 0.001 g^2 ~ 1e-13): a larger v0 would swallow the gradient terms
        # below float32 resolution and the /v comparison would test only the decay.
        m0 = {n: rng.normal(0.0, 3e-6, size=TR.model_shape(meta, n)).astype(np.float32)
              for n in names_tr}
        v0 = {n: rng.uniform(1e-12, 1e-10, size=TR.model_shape(meta, n)).astype(np.float32)
              for n in names_tr}
        state = os.path.join(tmp, "state.h5")
        TR.write_state(state, STEP0, m0, v0)
        ref_loss, ref_grads, _ = TR.train_loss_and_grads(w, meta, x, y, SPECIES)
        print(f"--- model N={N} D={D} heads={DIMS} L={L} O={O}; B={B} species={SPECIES}; "
              f"--steps {STEPS}; reference loss {ref_loss:.8g}")

        outs = {}
        for ranks in (1, 2):
            out = os.path.join(tmp, f"out_np{ranks}.h5")
            proc = train(exe, ranks, folder, batch, state, out)
            ok = ck.check(proc.returncode == 0 and not proc.timed_out and os.path.isfile(out),
                          f"-np {ranks}: train_step exit 0 and writes {os.path.basename(out)} "
                          f"(rc {proc.returncode})")
            if not ok:
                continue
            c = TR.read_train_out(out)
            outs[ranks] = c
            ck.check(c.get("step") == STEP0 + STEPS,
                     f"-np {ranks}: step attribute {c.get('step')} == {STEP0 + STEPS}")
            ck.check(sorted(c["params"]) == sorted(names_all) and
                     all(sorted(c[g]) == sorted(names_tr) for g in ("grad", "m", "v")),
                     f"-np {ranks}: /params holds all {len(names_all)} tensors, /grad /m /v the "
                     f"{len(names_tr)} trainable ones")
            cl = c.get("loss", float("nan"))
            ck.check(abs(cl - ref_loss) <= LOSS_RTOL_REF * abs(ref_loss),
                     f"-np {ranks}: first-step loss {cl:.9g} vs reference {ref_loss:.9g} "
                     f"(rel err {abs(cl - ref_loss) / ref_loss:.2e}, tol {LOSS_RTOL_REF})")
            worst, bad = 0.0, []
            for n in names_tr:
                r = ref_grads[n]
                g = c["grad"].get(n)
                if g is None or g.shape != r.shape:
                    bad.append(f"{n}: missing or wrong shape")
                    continue
                if not np.any(r):
                    if np.any(g):
                        bad.append(f"{n}: reference all zero, C not")
                    continue
                ratio = float(np.abs(g - r).max() / (GRAD_RTOL_REF * np.abs(r).max()))
                worst = max(worst, ratio)
                if not ratio <= 1.0:
                    bad.append(f"{n}: err/allowed {ratio:.3g}")
            for line in bad[:8]:
                print("  " + line)
            ck.check(not bad, f"-np {ranks}: first-step /grad vs reference, max|c-r| <= "
                              f"{GRAD_RTOL_REF} max|r| per tensor (worst err/allowed "
                              f"{worst:.3g})")

        if 1 in outs and 2 in outs:
            a, b = outs[1], outs[2]
            la, lb = a.get("loss", float("nan")), b.get("loss", float("nan"))
            ck.check(abs(la - lb) <= LOSS_RTOL_RUNS * abs(la),
                     f"-np 2 vs -np 1: /loss {lb:.9g} vs {la:.9g} (rel diff "
                     f"{abs(la - lb) / abs(la):.2e}, tol {LOSS_RTOL_RUNS})")
            tensor_compare(ck, "-np 2 vs -np 1: /grad (first step)", a["grad"], b["grad"],
                           names_tr, RUN_ATOL_PARAMS)
            tensor_compare(ck, f"-np 2 vs -np 1: /params after {STEPS} steps", a["params"],
                           b["params"], names_all, RUN_ATOL_PARAMS)
            for group in ("m", "v"):
                tensor_compare(ck, f"-np 2 vs -np 1: /{group} after {STEPS} steps", a[group],
                               b[group], names_tr, 0.0)

        # Error: B = 3 is not divisible by 2 ranks.
        batch3 = os.path.join(tmp, "batch3.h5")
        TR.write_batch(batch3, x[:3], y[:3], SPECIES)
        err_dir = os.path.join(tmp, "err_out")
        os.makedirs(err_dir)
        out3 = os.path.join(err_dir, "O.h5")
        proc = train(exe, 2, folder, batch3, state, out3, timeout=120)
        ck.check(proc.returncode != 0 and not proc.timed_out,
                 f"B=3 on 2 ranks: non-zero exit (rc {proc.returncode}"
                 f"{', timed out' if proc.timed_out else ''})")
        # (the batch file's own name, should the message quote it, does not count)
        ck.check("batch" in proc.stderr.replace(batch3, "").lower(),
                 "B=3 on 2 ranks: the error on stderr mentions 'batch'")
        left = sorted(os.listdir(err_dir))
        ck.check(not left, f"B=3 on 2 ranks: no output written (folder holds {left})")


if __name__ == "__main__":
    sys.exit(main())
