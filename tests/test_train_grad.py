"""One training step of the C tool `train_step` against the float64 training reference
(tests/ref/train_ref.py, written from REFERENCE.md sections 1, 2 and 5).

Part A, reference self-checks (no C binary involved), on a tiny model (N 4, D 3, two heads,
L = O + 2*radius + 2, a batch with an all-N sample and scattered N positions):
  A1. autograd gradients vs float64 central finite differences for entries of every kind of
      tensor (stem, BN gamma/beta, depthwise taps and bias, FFN, the trained head's projections;
      the other head's projection and a moving statistic must have a zero difference quotient):
      |fd - autograd| <= 1e-6 * max(|autograd|, 1e-3 * max|grad of the tensor|). The loss is
      only piecewise smooth (ReLUs): central differences at h and h/2 must agree first, else a
      kink lies within h and the pair is redone at h/10 (h = 1e-5, 1e-6, 1e-7).
  A2. the training-mode forward vs the existing inference reference (promoterai_ref.RefModel)
      with every BN layer's moving statistics replaced by the batch statistics the training
      forward used: head outputs agree to 1e-12 relative; each block's BN1 batch statistics equal
      numpy mean / biased variance (ddof 0) over all (batch, position) rows of that block's input.
  A3. the loss recomputed in numpy from the inference outputs (weights from the codes: all-N
      sample weighs 0), 1e-12 relative.
  A4. adamw_step vs torch.optim.AdamW (torch puts epsilon on sqrt(v / (1 - beta2^t)); the Keras
      form here is equal with torch's eps = eps / sqrt(1 - beta2^t)) with non-zero initial state,
      step 5, one clipped, one unclipped and one zero-gradient tensor: 1e-12 relative.
  A5. the test can fail: perturbing one weight changes the reference loss.

Part B, C vs reference, for random small models with two heads (write_random_model) and random
batches (B 2..4, targets >= 0, scattered N positions, one all-N sample in one case, species 0
and 1), with and without a random initial optimizer state (step 5, m ~ N(0, 1e-3),
v ~ U(1e-8, 1e-6), or with clipnorm 1e-4, where the clipped gradient's terms are that small,
m ~ N(0, 3e-6), v ~ U(1e-12, 1e-10)); input_length = output_length + 2*radius, and larger:
  B1. /loss: |c - r| <= 1e-5 |r|. float32 forward and loss against float64; the loss is a mean of
      O(1) squares, float32 carries ~1e-7 relative per operation, so 1e-5 is ~100x headroom.
  B2. /grad/<t> for every trainable tensor t: max|c - r| <= 1e-4 * max|r| per tensor; a tensor
      whose reference gradient is all zero (the other head) must be exactly zero. Backprop through
      N residual blocks and training-mode BN in float32 loses a few digits on small entries, so the
      bound is relative to the tensor's largest entry.
  B3. BN moving statistics after one step (in /params): max|c - r| <= 1e-5 * max|r| + 1e-7.
      They are 0.99 * old + 0.01 * batch statistic; the float32 statistic is accurate to ~1e-6
      relative and is damped by 0.01.
  B4. the optimizer: the reference AdamW step computed FROM THE C TOOL'S OWN /grad (so gradient
      errors do not leak into this check) vs /params (trainables), /m, /v. clipnorm is chosen
      between two neighbouring gradient norms near the median, so some tensors are clipped and
      some are not (both counts printed); one case uses the defaults (flags omitted: lr 1e-3,
      wd 0.01, clipnorm 1e-4, every non-zero gradient clipped) and one passes clipnorm 1e-4.
      Per element |c - r| <= 1e-5 |r| + 1e-7 * S, S = the largest magnitude among the tensor's old
      value, new value and the increment term (0.1 g for m, 0.001 g^2 for v, the whole step
      new - old for /params). Rationale: the float32 update rounds each element to a few ulps
      (6e-8) of the largest term entering it, so an element that is small after cancellation
      (0.9 m + 0.1 g ~ 0) keeps an absolute error of that size. /params also allows 1e-5 of the
      element's step |new - old|: Keras forms the bias correction 1 - beta2^t from float32 powers
      (0.999f^t), which puts ~6e-6 relative error on alpha; genuine mistakes (eps placement,
      decay after instead of before the step: lr*wd*|step| = 1e-4 |step| in two cases, missing
      bias correction, wrong clipping) change the step by far more. Note: 1 - beta2 formed in
      float32 (1 - 0.999f = 9.99987e-4, 1.3e-5 off) would exceed 1e-5 on v; Keras forms
      1 - beta in double (Python floats) before the float32 multiply, and so should the C code.
  B5. attribute `step` = initial step + steps; the tensor sets of /grad, /params, /m, /v.
  B6. (one case) --steps 2 equals two chained --steps 1 runs (second run started from the first
      run's /params and /m, /v, step): per tensor max|a - b| <= 1e-5 * max|b| (+ 1e-7 for
      /params and /grad; no floor for /m, /v, whose entries are ~1e-5 and ~1e-11), /loss (1e-6)
      and /grad of the first step equal; the chained run's /loss equals the reference loss at the
      C tool's updated parameters (1e-5 relative), i.e. the stored parameters are the trained ones.

Usage: /usr/bin/python3 tests/test_train_grad.py --bin BUILD_DIR [--self_only]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref as R  # noqa: E402
import train_ref as TR  # noqa: E402
from harness import Checker, require_binary, run  # noqa: E402

LOSS_RTOL = 1e-5
GRAD_RTOL_OF_MAX = 1e-4
MOVING_RTOL_OF_MAX, MOVING_ATOL = 1e-5, 1e-7
OPT_RTOL, OPT_SCALE_TOL, OPT_STEP_RTOL = 1e-5, 1e-7, 1e-5
CHAIN_RTOL_OF_MAX, CHAIN_ATOL = 1e-5, 1e-7
# Finite differences in float64: truncation O(h^2) and roundoff ~1e-16 |loss| / h stay far below
# 1e-6 of the gradient scale for h = 1e-5 .. 1e-7.
FD_STEPS, FD_TOL = (1e-5, 1e-6, 1e-7), 1e-6

# name, num_blocks, model_dim, output_dims, output_length, extra input (L = O + 2*radius + extra),
# batch size, species, initial state step (None: no --state), clip ("median", "default": flags
# omitted, or a number), all-N sample, lr, wd, chained two-step check
CASES = [
    ("n2_d8_longer_input", 2, 8, [3, 2], 16, 16, 3, 0, None, "median", False, 1e-3, 0.01, False),
    ("n5_d12_exact_L_allN", 5, 12, [3, 2], 8, 0, 4, 1, 5, "median", True, 2e-3, 0.05, False),
    ("n8_d16_dil4_defaults", 8, 16, [3, 2], 32, 0, 2, 0, 5, "default", False, 1e-3, 0.01, False),
    ("n4_d8_two_steps", 4, 8, [2, 3], 10, 6, 2, 1, None, 1e-4, False, 5e-3, 0.02, True),
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def random_codes(rng, B, L, all_n_sample=False, n_frac=0.05):
    x = rng.integers(0, 4, size=(B, L)).astype(np.uint8)
    x[rng.random((B, L)) < n_frac] = 4
    if all_n_sample:
        x[B // 2] = 4
    return x


def random_targets(rng, B, O, T):
    return np.abs(rng.normal(0.4, 0.4, size=(B, O, T))).astype(np.float32)


def random_state(rng, meta, step, clip):
    """m ~ N(0, 1e-3), v ~ U(1e-8, 1e-6); for clipnorm <= 1e-3 scaled down to that regime
    (m ~ N(0, 3e-6), v ~ U(1e-12, 1e-10)), else the clipped gradient's terms 0.1 g ~ 1e-6 and
    0.001 g^2 ~ 1e-13 would vanish below float32 resolution of m and v."""
    m_std, v_lo, v_hi = (1e-3, 1e-8, 1e-6) if clip > 1e-3 else (3e-6, 1e-12, 1e-10)
    m, v = {}, {}
    for n in TR.trainable_names(meta):
        shape = TR.model_shape(meta, n)
        m[n] = rng.normal(0.0, m_std, size=shape).astype(np.float32)
        v[n] = rng.uniform(v_lo, v_hi, size=shape).astype(np.float32)
    return step, m, v


def zero_state(meta):
    m = {n: np.zeros(TR.model_shape(meta, n), np.float32) for n in TR.trainable_names(meta)}
    return 0, m, {n: a.copy() for n, a in m.items()}


def tensor_report(ck, label, got, ref, names, allowed_fn, zero_exact=False):
    """Per tensor: err = |got - ref|, allowed = allowed_fn(name, ref_array) (scalar or array).
    One check line with the worst offender (largest err/allowed); failing tensors listed."""
    worst = (-1.0, None, 0.0, 0.0)
    bad = []
    for n in names:
        if n not in got:
            bad.append(f"{n}: missing")
            continue
        g, r = np.asarray(got[n], np.float64), np.asarray(ref[n], np.float64)
        if g.shape != r.shape:
            bad.append(f"{n}: shape {g.shape} != {r.shape}")
            continue
        if not np.all(np.isfinite(g)):
            bad.append(f"{n}: non-finite values")
            continue
        err = np.abs(g - r)
        if zero_exact and not np.any(r):
            if np.any(g):
                bad.append(f"{n}: reference all zero, C max|c| {np.abs(g).max():.2e}")
            continue
        allowed = np.broadcast_to(np.asarray(allowed_fn(n, r), np.float64), r.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(allowed > 0, err / allowed, np.where(err > 0, np.inf, 0.0))
        k = int(np.argmax(ratio)) if ratio.size else 0
        rmax = float(ratio.reshape(-1)[k]) if ratio.size else 0.0
        if rmax > worst[0]:
            worst = (rmax, n, float(err.reshape(-1)[k]), float(allowed.reshape(-1)[k]))
        if rmax > 1.0:
            bad.append(f"{n}: err {err.reshape(-1)[k]:.3e} > allowed "
                       f"{allowed.reshape(-1)[k]:.3e} at flat index {k} (ref "
                       f"{r.reshape(-1)[k]:.6g}, C {g.reshape(-1)[k]:.6g}; max|ref| "
                       f"{np.abs(r).max():.3e})")
    for b in bad[:8]:
        print("  " + b)
    msg = f"{label}: {len(names)} tensors"
    if worst[1] is not None:
        msg += (f"; worst {worst[1]}: err {worst[2]:.2e} vs allowed {worst[3]:.2e} "
                f"(ratio {worst[0]:.3g})")
    if bad:
        msg += f"; {len(bad)} tensor(s) out of tolerance"
    return ck.check(not bad, msg)


def pick_clipnorm(norms):
    """A clipnorm between two neighbouring non-zero norms near the median, at the widest relative
    gap among the middle half, so tiny float32 differences cannot flip a tensor's clipping."""
    nz = np.sort(np.asarray([n for n in norms if n > 0]))
    if len(nz) < 2:
        return 1.0
    lo, hi = max(0, len(nz) // 4), min(len(nz) - 1, 3 * len(nz) // 4)
    k = max(range(lo, hi), key=lambda i: nz[i + 1] / nz[i])
    return float(np.sqrt(nz[k] * nz[k + 1]))


def chain_allowed(group, r):
    """Run-vs-run tolerance: 1e-5 * max|r| per tensor, plus 1e-7 for /params (weights are O(0.1));
    no absolute floor for /m (~1e-5) and /v (~1e-11), where 1e-7 would hide everything. A tensor
    that is all zero (other head, zero state) must then match exactly."""
    return CHAIN_RTOL_OF_MAX * np.abs(r).max() + (CHAIN_ATOL if group in ("params", "grad")
                                                  else 0.0)


def opt_scale(old, new, incr):
    return max(float(np.abs(old).max(initial=0.0)), float(np.abs(new).max(initial=0.0)),
               float(np.abs(incr).max(initial=0.0)))


# --------------------------------------------------------------------------------------------
# Part A: reference self-checks
# --------------------------------------------------------------------------------------------

def self_checks(ck, tmp):
    print("=== Part A: reference self-checks")
    N, D, dims, O = 4, 3, [2, 2], 4
    L = O + 2 * R.receptive_radius(N) + 2
    folder = os.path.join(tmp, "tiny")
    R.write_random_model(folder, N, D, dims, L, O, ["a", "b"], seed=7)
    meta, w = TR.model_weights(folder)
    rng = np.random.default_rng(11)
    x = random_codes(rng, 3, L, all_n_sample=True, n_frac=0.1)
    species = 1
    y = random_targets(rng, 3, O, dims[species])
    loss, grads, new_moving, det = TR.train_loss_and_grads(w, meta, x, y, species,
                                                           return_details=True)
    w64 = {n: np.asarray(a, np.float64) for n, a in w.items()}

    # A1 finite differences
    probes = [("stem/kernel", (1, 2)), ("stem/bias", (0,)), ("block_0/bn1/gamma", (1,)),
              ("block_1/bn1/beta", (2,)), ("block_2/dwconv/kernel", (0, 1)),
              ("block_3/dwconv/kernel", (4, 2)), ("block_3/dwconv/bias", (1,)),
              ("block_1/bn2/gamma", (0,)), ("block_2/bn2/beta", (1,)),
              ("block_2/ffn1/kernel", (1, 5)), ("block_0/ffn1/bias", (3,)),
              ("block_3/ffn2/kernel", (7, 2)), ("block_2/ffn2/bias", (0,)),
              ("head_1/proj_4/kernel", (2, 1)), ("head_1/proj_4/bias", (0,)),
              ("head_0/proj_4/kernel", (0, 0)), ("block_1/bn1/moving_mean", (0,))]
    def central(name, idx, h):
        plus, minus = dict(w64), dict(w64)
        plus[name] = w64[name].copy()
        minus[name] = w64[name].copy()
        plus[name][idx] += h
        minus[name][idx] -= h
        return (TR.train_loss(plus, meta, x, y, species) -
                TR.train_loss(minus, meta, x, y, species)) / (2 * h)

    worst, bad, lines, n_kinks = 0.0, [], [], 0
    for name, idx in probes:
        ag = float(grads[name][idx]) if name in grads else 0.0
        scale = max(abs(ag), 1e-3 * float(np.abs(grads[name]).max())) if name in grads else 0.0
        # The loss is only piecewise smooth (ReLUs). Two central differences, at h and h/2,
        # agree to O(h^2) where the loss is smooth on [w - h, w + h]; where they disagree a ReLU
        # kink lies within h of w, and the pair is redone 10x closer.
        for h in FD_STEPS:
            fd, fd_half = central(name, idx, h), central(name, idx, h / 2)
            if abs(fd - fd_half) <= FD_TOL * max(scale, 1e-300):
                break
            n_kinks += 1
        if scale == 0.0:
            ok = fd == 0.0 and ag == 0.0
            rel = 0.0 if ok else float("inf")
        else:
            rel = abs(fd - ag) / scale
            ok = rel <= FD_TOL
        worst = max(worst, rel)
        lines.append(f"{name}{list(idx)}: autograd {ag:+.10e} fd {fd:+.10e} (h {h:.0e}) "
                     f"rel {rel:.1e}")
        if not ok:
            bad.append(lines[-1])
    for line in lines:
        print("  " + line)
    ck.check(not bad, f"A1 finite differences: {len(probes)} entries, worst relative difference "
                      f"{worst:.2e} (tol {FD_TOL}; {n_kinks} step(s) redone at a ReLU kink)"
             + ("; bad: " + "; ".join(bad) if bad else ""))

    # A2 training forward == inference forward with moving stats := batch stats
    w_inf = dict(w64)
    for prefix, (mu, var) in det["stats"].items():
        w_inf[prefix + "/moving_mean"] = mu
        w_inf[prefix + "/moving_variance"] = var
    meta_inf = dict(meta, head_names=["a", "b"])
    model = R.RefModel(meta_inf, w_inf)
    onehot = torch.from_numpy(TR.one_hot(x))
    with torch.no_grad():
        inf_pred = model.heads(onehot, torch.float64)[species].numpy()
        acts = model.layers(onehot, torch.float64)
    err = float(np.abs(inf_pred - det["pred"]).max() / np.abs(inf_pred).max())
    ck.check(err <= 1e-12, f"A2 training forward == inference reference with moving stats set to "
                           f"the batch stats: rel err {err:.1e} (tol 1e-12)")
    serr = 0.0
    for i in range(N):
        rows = acts[i].numpy().reshape(-1, D)
        mu, var = det["stats"][f"block_{i}/bn1"]
        serr = max(serr, float(np.abs(rows.mean(0) - mu).max()),
                   float(np.abs(rows.var(0, ddof=0) - var).max() / rows.var(0).max()))
    ck.check(serr <= 1e-12, f"A2 BN1 batch stats = numpy mean / biased variance over all "
                            f"{rows.shape[0]} (batch, position) rows: max err {serr:.1e}")
    merr = 0.0
    for name, a in new_moving.items():
        prefix, kind = name.rsplit("/", 1)
        stat = det["stats"][prefix][0 if kind == "moving_mean" else 1]
        merr = max(merr, float(np.abs(a - (0.99 * w64[name] + 0.01 * stat)).max()))
    ck.check(merr <= 1e-15 and len(new_moving) == 4 * N,
             f"A2 moving stats = 0.99 old + 0.01 batch for all {len(new_moving)}: err {merr:.1e}")

    # A3 loss from the inference outputs in numpy
    weight = (x < 4).any(axis=1).astype(np.float64)
    ck.check(weight.tolist().count(0.0) == 1, "A3 the tiny batch has one all-N sample")
    mse = ((inf_pred - y.astype(np.float64)) ** 2).mean(axis=(1, 2))
    loss_np = float((weight * mse).sum() / x.shape[0])
    ck.check(abs(loss_np - loss) <= 1e-12 * abs(loss_np),
             f"A3 loss {loss:.12g} == numpy weighted MSE {loss_np:.12g}")

    # A4 adamw_step vs torch.optim.AdamW
    step, lr, wd = 5, 3e-3, 0.04
    shapes = {"p_clip": (4, 3), "p_keep": (5,), "p_zero": (2, 2)}
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    params["a_moving"] = rng.normal(size=3)
    g = {"p_clip": rng.normal(size=(4, 3)), "p_keep": 1e-3 * rng.normal(size=5),
         "p_zero": np.zeros((2, 2))}
    m0 = {k: rng.normal(0, 1e-2, size=s) for k, s in shapes.items()}
    v0 = {k: rng.uniform(1e-6, 1e-4, size=s) for k, s in shapes.items()}
    clipnorm = 0.5
    new_p, new_m, new_v = TR.adamw_step(params, g, m0, v0, step, lr, wd, clipnorm)
    t = step + 1
    tp = {k: torch.tensor(params[k], requires_grad=True) for k in shapes}
    opt = torch.optim.AdamW(list(tp.values()), lr=lr, betas=(0.9, 0.999), weight_decay=wd,
                            eps=1e-7 / np.sqrt(1 - 0.999 ** t))
    for k in shapes:
        gk = torch.tensor(g[k])
        n = float(gk.norm())
        tp[k].grad = gk * (clipnorm / n) if n > clipnorm else gk
        opt.state[tp[k]] = {"step": torch.tensor(float(step)),
                            "exp_avg": torch.tensor(m0[k]), "exp_avg_sq": torch.tensor(v0[k])}
    opt.step()
    aerr = 0.0
    for k in shapes:
        for mine, theirs in ((new_p[k], tp[k].detach().numpy()),
                             (new_m[k], opt.state[tp[k]]["exp_avg"].numpy()),
                             (new_v[k], opt.state[tp[k]]["exp_avg_sq"].numpy())):
            aerr = max(aerr, float(np.abs(mine - theirs).max() / np.abs(theirs).max()))
    clipped = [k for k in shapes if np.linalg.norm(g[k]) > clipnorm]
    ck.check(aerr <= 1e-12 and clipped == ["p_clip"] and
             np.array_equal(new_p["a_moving"], params["a_moving"]),
             f"A4 adamw_step == torch.optim.AdamW (eps rescaled), clipped {clipped}, "
             f"zero-gradient tensor decays, non-trainable untouched: rel err {aerr:.1e}")

    # A5 the test can fail
    pert = dict(w64)
    pert["head_1/proj_4/bias"] = w64["head_1/proj_4/bias"].copy()
    pert["head_1/proj_4/bias"][0] += 0.1
    l2 = TR.train_loss(pert, meta, x, y, species)
    ck.check(abs(l2 - loss) > 1e-4 * abs(loss),
             f"A5 perturbing one weight by 0.1 changes the reference loss by > 1e-4 relative "
             f"({loss:.9g} -> {l2:.9g})")


# --------------------------------------------------------------------------------------------
# Part B: C tool vs reference
# --------------------------------------------------------------------------------------------

# Extra train_step arguments (tests/test_gpu_train.py runs this part on the GPU backend).
EXTRA_ARGS = []


def train_cmd(exe, folder, batch, out, state, clip, lr, wd, steps):
    cmd = [exe, "--model_folder", folder, "--batch", batch, "--out", out, *EXTRA_ARGS]
    if state:
        cmd += ["--state", state]
    if clip != "default":
        cmd += ["--lr", repr(lr), "--wd", repr(wd), "--clipnorm", repr(clip)]
    return cmd + ["--steps", str(steps), "--threads", "2"]


def run_case(ck, exe, tmp, case, seed):
    (name, N, D, dims, O, extra, B, species, state_step, clip_mode, all_n, lr, wd,
     chained) = case
    if clip_mode == "default":
        lr, wd = 1e-3, 0.01
    radius = R.receptive_radius(N)
    L = O + 2 * radius + extra
    rng = np.random.default_rng(seed)
    folder = os.path.join(tmp, name, "model")
    x = random_codes(rng, B, L, all_n_sample=all_n)
    y = random_targets(rng, B, O, dims[species])
    # The first model seed whose trained head and every other trainable tensor get a non-zero
    # reference gradient (no dead head), so every tensor is really compared.
    for attempt in range(20):
        R.write_random_model(folder, N, D, dims, L, O, ["human", "mouse"],
                             seed=1000 * seed + attempt)
        meta, w = TR.model_weights(folder)
        loss, grads, moving = TR.train_loss_and_grads(w, meta, x, y, species)
        if all(np.any(g) for n, g in grads.items()
               if not n.startswith("head_") or n.startswith(f"head_{species}/")):
            break
    print(f"--- {name}: N={N} D={D} heads={dims} L={L} O={O} radius={radius} B={B} "
          f"species={species} all-N sample={all_n} state step={state_step} clip={clip_mode} "
          f"ref loss {loss:.6g}")

    # sanity: the comparison is sensitive (reference loss moves with one weight)
    pert = dict(w)
    key = f"block_{N - 1}/ffn2/kernel"
    pert[key] = w[key].copy()
    pert[key][0, 0] += 0.1
    l2 = TR.train_loss(pert, meta, x, y, species)
    ck.check(abs(l2 - loss) > 10 * LOSS_RTOL * abs(loss),
             f"{name}: perturbing {key}[0,0] by 0.1 moves the reference loss beyond the loss "
             f"tolerance ({loss:.8g} -> {l2:.8g})")

    batch = os.path.join(tmp, name, "batch.h5")
    TR.write_batch(batch, x, y, species)
    if clip_mode == "median":
        clip = pick_clipnorm([np.linalg.norm(g) for g in grads.values()])
    elif clip_mode == "default":
        clip = 1e-4
    else:
        clip = float(clip_mode)
    state = None
    if state_step is None:
        step0, m0, v0 = zero_state(meta)
    else:
        step0, m0, v0 = random_state(rng, meta, state_step, clip)
        state = os.path.join(tmp, name, "state.h5")
        TR.write_state(state, step0, m0, v0)
    out = os.path.join(tmp, name, "out1.h5")
    t0 = time.time()
    proc = run(train_cmd(exe, folder, batch, out, state,
                         clip_mode if clip_mode == "default" else clip, lr, wd, 1))
    if not ck.check(proc.returncode == 0 and os.path.isfile(out),
                    f"{name}: train_step exit 0 and writes the output (rc {proc.returncode}, "
                    f"{time.time() - t0:.1f} s)"):
        return
    c = TR.read_train_out(out)
    names_tr = TR.trainable_names(meta)
    names_all = TR.all_names(meta)
    ck.check(c.get("step") == step0 + 1, f"{name}: step attribute {c.get('step')} == {step0 + 1}")
    ck.check(sorted(c["grad"]) == sorted(names_tr) and sorted(c["m"]) == sorted(names_tr)
             and sorted(c["v"]) == sorted(names_tr) and sorted(c["params"]) == sorted(names_all),
             f"{name}: /grad, /m, /v hold the {len(names_tr)} trainable tensors, /params all "
             f"{len(names_all)}")

    # B1 loss
    cl = c.get("loss", float("nan"))
    ck.check(abs(cl - loss) <= LOSS_RTOL * abs(loss),
             f"{name}: loss C {cl:.9g} vs ref {loss:.9g} (rel err {abs(cl - loss) / loss:.2e}, "
             f"tol {LOSS_RTOL})")
    # B2 gradients
    tensor_report(ck, f"{name}: gradients (max|c-r| <= {GRAD_RTOL_OF_MAX} max|r| per tensor)",
                  c["grad"], grads, names_tr,
                  lambda n, r: GRAD_RTOL_OF_MAX * np.abs(r).max(), zero_exact=True)
    # B3 moving statistics
    tensor_report(ck, f"{name}: moving stats (<= {MOVING_RTOL_OF_MAX} max|r| + {MOVING_ATOL})",
                  c["params"], moving, TR.moving_names(meta),
                  lambda n, r: MOVING_RTOL_OF_MAX * np.abs(r).max() + MOVING_ATOL)
    # B4 optimizer from the C gradients
    if all(n in c["grad"] for n in names_tr):
        cg = {n: c["grad"][n] for n in names_tr}
        norms = {n: float(np.linalg.norm(g)) for n, g in cg.items()}
        n_clip = sum(nv > clip for nv in norms.values())
        n_keep = sum(0 < nv <= clip for nv in norms.values())
        p_ref, m_ref, v_ref = TR.adamw_step({n: w[n] for n in names_tr}, cg, m0, v0, step0, lr,
                                            wd, clip)
        ginc = {n: TR.clip_by_norm(cg[n], clip) for n in names_tr}
        scale = {}
        for n in names_tr:
            scale[("m", n)] = opt_scale(m0[n], m_ref[n], 0.1 * ginc[n])
            scale[("v", n)] = opt_scale(v0[n], v_ref[n], 1e-3 * ginc[n] ** 2)
            scale[("p", n)] = opt_scale(w[n], p_ref[n], p_ref[n] - w[n])
        print(f"  clipnorm {clip:.4g}: {n_clip} tensors clipped, {n_keep} unclipped, "
              f"{len(names_tr) - n_clip - n_keep} with zero gradient")
        if clip_mode == "median":
            ck.check(n_clip > 0 and n_keep > 0,
                     f"{name}: the chosen clipnorm clips some tensors and not others")
        for key, got, ref in (("p", c["params"], p_ref), ("m", c["m"], m_ref),
                              ("v", c["v"], v_ref)):
            extra = f" + {OPT_STEP_RTOL}|step|" if key == "p" else ""
            tensor_report(ck, f"{name}: optimizer /{ {'p': 'params', 'm': 'm', 'v': 'v'}[key]} "
                              f"from C grads (<= {OPT_RTOL}|r|{extra} + {OPT_SCALE_TOL} S)",
                          got, ref, names_tr,
                          lambda n, r, key=key: OPT_RTOL * np.abs(r) +
                          OPT_SCALE_TOL * scale[(key, n)] +
                          (OPT_STEP_RTOL * np.abs(p_ref[n] - w[n]) if key == "p" else 0.0))

    if chained:
        chain_check(ck, exe, tmp, name, folder, batch, state, clip, lr, wd, c, meta, x, y,
                    species)


def chain_check(ck, exe, tmp, name, folder, batch, state, clip, lr, wd, c1, meta, x, y, species):
    """B6: --steps 2 == two chained --steps 1 runs."""
    out2 = os.path.join(tmp, name, "out_steps2.h5")
    proc = run(train_cmd(exe, folder, batch, out2, state, clip, lr, wd, 2))
    if not ck.check(proc.returncode == 0 and os.path.isfile(out2),
                    f"{name}: train_step --steps 2 exit 0 (rc {proc.returncode})"):
        return
    folder_b = os.path.join(tmp, name, "model_after_1")
    TR.write_model_with_params(folder, folder_b, c1["params"])
    state_b = os.path.join(tmp, name, "state_after_1.h5")
    TR.write_state(state_b, c1["step"], c1["m"], c1["v"])
    out_b = os.path.join(tmp, name, "out_chained.h5")
    proc = run(train_cmd(exe, folder_b, batch, out_b, state_b, clip, lr, wd, 1))
    if not ck.check(proc.returncode == 0 and os.path.isfile(out_b),
                    f"{name}: chained second --steps 1 exit 0 (rc {proc.returncode})"):
        return
    a, b = TR.read_train_out(out2), TR.read_train_out(out_b)
    ck.check(a.get("step") == b.get("step") == c1["step"] + 1,
             f"{name}: step after --steps 2 {a.get('step')} == chained {b.get('step')}")
    la, l1 = a.get("loss", float("nan")), c1.get("loss", float("nan"))
    ck.check(abs(la - l1) <= 1e-6 * abs(l1),
             f"{name}: --steps 2 /loss is the first step's loss ({la!r} vs {l1!r}, tol 1e-6 rel)")
    tensor_report(ck, f"{name}: --steps 2 /grad == --steps 1 /grad (first step)", a["grad"],
                  c1["grad"], TR.trainable_names(meta), lambda n, r: chain_allowed("grad", r))
    for group in ("params", "m", "v"):
        names = TR.all_names(meta) if group == "params" else TR.trainable_names(meta)
        tensor_report(ck, f"{name}: --steps 2 /{group} == chained 2 x --steps 1", a[group],
                      b[group], names, lambda n, r, group=group: chain_allowed(group, r))
    ref_loss2 = TR.train_loss(c1["params"], meta, x, y, species)
    lb = b.get("loss", float("nan"))
    ck.check(abs(lb - ref_loss2) <= LOSS_RTOL * abs(ref_loss2) and lb != c1.get("loss"),
             f"{name}: chained run's loss C {lb:.9g} == reference loss at the C tool's updated "
             f"parameters {ref_loss2:.9g} (first step's loss {c1.get('loss'):.9g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", help="directory holding the built programs")
    ap.add_argument("--self_only", action="store_true", help="only the reference self-checks")
    args = ap.parse_args()
    torch.set_num_threads(2)
    ck = Checker()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        self_checks(ck, tmp)
        print(f"(reference self-checks took {time.time() - t0:.1f} s)")
        if not args.self_only:
            if not args.bin:
                ap.error("--bin is required unless --self_only")
            exe = os.path.abspath(require_binary(args.bin, "train_step"))
            print("=== Part B: C train_step vs reference")
            for k, case in enumerate(CASES):
                run_case(ck, exe, tmp, case, seed=k + 1)
    print(f"(total {time.time() - t0:.1f} s)")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
