"""Independent training reference for PromoterAI, written from REFERENCE.md sections 1, 2 and 5
only (it knows nothing about the C implementation). No side effects on import.

Reference semantics (float64 torch with autograd):
  * forward_train / train_loss_and_grads -- the section 2 architecture with batch normalization
    in TRAINING mode: per channel, mean and BIASED variance (divide by the row count) over all
    (batch, position) rows of the whole batch, all L positions (no cropping before BN),
    normalised with the model's bn_epsilon; moving statistics updated as
    moving = 0.99 * moving + 0.01 * batch_stat (batch_stat = the same mean / biased variance).
    Only head `species` is computed; the loss of section 5 is
        loss = sum_b w_b * mse_b / B,  mse_b = mean over the O kept positions and T tracks of
        (pred - y)^2,  w_b = max over sample b's one-hot input (1, or 0 for an all-N sample).
    Gradients of every trainable tensor (all but moving_mean / moving_variance); the other heads'
    tensors get exact zeros.
  * adamw_step -- the project's documented optimizer (Keras AdamW form, section 5): per-tensor
    gradient clipping to L2 norm <= clipnorm, decoupled weight decay on the pre-step weights,
    bias-corrected Adam step with epsilon added to sqrt(v).

File helpers for the tests (the `train_step` tool's documented HDF5 formats):
  write_batch, write_state, read_train_out, write_model_with_params, trainable_names.
"""

import os
import shutil

import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promoterai_ref as R  # noqa: E402

BN_MOMENTUM = 0.99

# Code 0..3 = A, C, G, T one-hot; code 4 (any other letter) = all-zero row.
_ONE_HOT = np.concatenate([np.eye(4), np.zeros((1, 4))]).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Tensor names
# --------------------------------------------------------------------------------------------

def is_trainable(name):
    """Everything except the batch-norm moving statistics is trained."""
    return not (name.endswith("/moving_mean") or name.endswith("/moving_variance"))


def all_names(meta):
    """Every tensor of model.h5 (paths without the leading slash), in a fixed order."""
    N = meta["num_blocks"]
    names = ["stem/kernel", "stem/bias"]
    for i in range(N):
        p = f"block_{i}"
        for bn in ("bn1", "bn2"):
            names += [f"{p}/{bn}/{v}" for v in ("gamma", "beta", "moving_mean",
                                                 "moving_variance")]
        names += [f"{p}/dwconv/kernel", f"{p}/dwconv/bias", f"{p}/ffn1/kernel", f"{p}/ffn1/bias",
                  f"{p}/ffn2/kernel", f"{p}/ffn2/bias"]
    for j in range(len(meta["output_dims"])):
        for s in R.shortcut_layers(N):
            names += [f"head_{j}/proj_{s}/kernel", f"head_{j}/proj_{s}/bias"]
    return names


def model_shape(meta, name):
    """Shape of tensor `name` of a model with this meta (model.h5 layout, channels last)."""
    D = meta["model_dim"]
    parts = name.split("/")
    if parts[0] == "stem":
        return (4, D) if parts[1] == "kernel" else (D,)
    if parts[0].startswith("head_"):
        T = meta["output_dims"][int(parts[0][5:])]
        return (D, T) if parts[2] == "kernel" else (T,)
    layer, kind = parts[1], parts[2]
    if layer in ("bn1", "bn2"):
        return (D,)
    if layer == "dwconv":
        return (R.KERNEL_SIZE, D) if kind == "kernel" else (D,)
    if layer == "ffn1":
        return (D, 4 * D) if kind == "kernel" else (4 * D,)
    if layer == "ffn2":
        return (4 * D, D) if kind == "kernel" else (D,)
    raise ValueError(f"unknown tensor {name}")


def trainable_names(meta):
    return [n for n in all_names(meta) if is_trainable(n)]


def moving_names(meta):
    return [n for n in all_names(meta) if not is_trainable(n)]


def one_hot(x_codes):
    """uint8 codes [B, L] (0..3 = ACGT, 4 = other) -> float64 one-hot [B, L, 4]."""
    codes = np.asarray(x_codes)
    if codes.min() < 0 or codes.max() > 4:
        raise ValueError("base codes must be 0..4")
    return _ONE_HOT[codes.astype(np.int64)]


# --------------------------------------------------------------------------------------------
# Forward pass in training mode
# --------------------------------------------------------------------------------------------

def _bn_train(v, gamma, beta, eps):
    """Training-mode BN over the last (channel) axis; statistics over all other axes."""
    D = v.shape[-1]
    rows = v.reshape(-1, D)
    mean = rows.mean(0)
    var = ((rows - mean) ** 2).mean(0)           # biased: divide by the row count
    out = (v - mean) / torch.sqrt(var + eps) * gamma + beta
    return out, mean, var


def _dwconv(h, kernel, bias, d):
    """y[b, p, c] = bias[c] + sum_k kernel[k, c] * h[b, p + (k - 2) d, c], h = 0 outside [0, L)
    (zero 'same' padding of 2d on each side, applied to the BN1 output)."""
    K = kernel.shape[0]
    r = (K // 2) * d
    L = h.shape[1]
    padded = torch.nn.functional.pad(h, (0, 0, r, r))          # pad the position axis
    y = bias.expand_as(h)
    for k in range(K):
        start = k * d                                           # = r + (k - 2) d
        y = y + kernel[k] * padded[:, start:start + L, :]
    return y


def forward_train(params, meta, x_codes, species):
    """Training-mode forward. params: name -> torch tensor (float64 for the reference).
    Returns (pred [B, O, T], batch statistics {bn prefix: (mean, var)}), pred = head `species`
    centre-cropped by (L - O) / 2 on each side."""
    eps = float(meta["bn_epsilon"])
    N = meta["num_blocks"]
    L, O = meta["input_length"], meta["output_length"]
    x = torch.from_numpy(one_hot(x_codes)).to(params["stem/kernel"].dtype)
    if x.shape[1] != L:
        raise ValueError(f"batch has {x.shape[1]} positions, model input_length is {L}")
    out = torch.relu(x @ params["stem/kernel"] + params["stem/bias"])
    acts = [out]
    stats = {}
    for i in range(N):
        p = f"block_{i}"
        h, mu, var = _bn_train(out, params[p + "/bn1/gamma"], params[p + "/bn1/beta"], eps)
        stats[p + "/bn1"] = (mu, var)
        h = _dwconv(h, params[p + "/dwconv/kernel"], params[p + "/dwconv/bias"], R.dilation(i))
        m = out + h
        g, mu, var = _bn_train(m, params[p + "/bn2/gamma"], params[p + "/bn2/beta"], eps)
        stats[p + "/bn2"] = (mu, var)
        g = torch.relu(g @ params[p + "/ffn1/kernel"] + params[p + "/ffn1/bias"])
        g = g @ params[p + "/ffn2/kernel"] + params[p + "/ffn2/bias"]
        out = m + g
        acts.append(out)
    terms = [torch.relu(acts[s] @ params[f"head_{species}/proj_{s}/kernel"]
                        + params[f"head_{species}/proj_{s}/bias"])
             for s in R.shortcut_layers(N)]
    head = torch.stack(terms, 0).mean(0)
    if (L - O) < 0 or (L - O) % 2:
        raise ValueError("input_length - output_length must be even and >= 0")
    c = (L - O) // 2
    return head[:, c:c + O, :], stats


def _loss(pred, y, x_codes):
    y = torch.as_tensor(np.asarray(y, dtype=np.float64)).to(pred.dtype)
    if tuple(y.shape) != tuple(pred.shape):
        raise ValueError(f"targets have shape {tuple(y.shape)}, head output {tuple(pred.shape)}")
    B = pred.shape[0]
    mse = ((pred - y) ** 2).mean(dim=(1, 2))
    w = torch.from_numpy(one_hot(x_codes).reshape(B, -1).max(axis=1)).to(pred.dtype)
    return (w * mse).sum() / B


def _check_species(meta, species):
    if not 0 <= int(species) < len(meta["output_dims"]):
        raise ValueError(f"species {species} out of range")
    return int(species)


def train_loss(weights, meta, x_codes, y, species):
    """Loss only (float), no autograd; weights may be float32 or float64 arrays."""
    species = _check_species(meta, species)
    params = {n: torch.from_numpy(np.asarray(weights[n], dtype=np.float64))
              for n in all_names(meta)}
    with torch.no_grad():
        pred, _ = forward_train(params, meta, x_codes, species)
        return float(_loss(pred, y, x_codes))


def train_loss_and_grads(weights, meta, x_codes, y, species, return_details=False,
                         dtype=torch.float64):
    """One training step's loss, gradients and moving-statistics update.

    weights: name -> array (float32 as in model.h5, or float64) for every tensor of the model;
    meta: as load_model gives (num_blocks, model_dim, input_length, output_length, output_dims,
    bn_epsilon); x_codes uint8 [B, L]; y [B, O, T_species]; species: head index.
    Returns (loss float, grads {name: float64 array} for every trainable tensor,
    new moving statistics {name: float64 array}). With return_details also a dict with
    'pred' [B, O, T] and 'stats' {bn prefix: (batch mean, batch biased variance)} (numpy).
    dtype: the reference is float64; torch.float32 only estimates float32 rounding effects."""
    species = _check_species(meta, species)
    params = {}
    for n in all_names(meta):
        t = torch.tensor(np.asarray(weights[n], dtype=np.float64)).to(dtype)
        if is_trainable(n):
            t.requires_grad_(True)
        params[n] = t
    pred, stats = forward_train(params, meta, x_codes, species)
    loss = _loss(pred, y, x_codes)
    used = [n for n in trainable_names(meta)
            if not n.startswith("head_") or n.startswith(f"head_{species}/")]
    grads_used = torch.autograd.grad(loss, [params[n] for n in used])
    grads = {n: np.zeros(params[n].shape, dtype=np.float64) for n in trainable_names(meta)}
    for n, g in zip(used, grads_used):
        grads[n] = g.detach().numpy().astype(np.float64)
    new_moving = {}
    for prefix, (mu, var) in stats.items():
        for v, stat in (("moving_mean", mu), ("moving_variance", var)):
            old = np.asarray(weights[f"{prefix}/{v}"], dtype=np.float64)
            new_moving[f"{prefix}/{v}"] = BN_MOMENTUM * old + (1.0 - BN_MOMENTUM) * \
                stat.detach().numpy().astype(np.float64)
    if return_details:
        details = {"pred": pred.detach().numpy().copy(),
                   "stats": {k: (a.detach().numpy().copy(), b.detach().numpy().copy())
                             for k, (a, b) in stats.items()}}
        return float(loss.detach()), grads, new_moving, details
    return float(loss.detach()), grads, new_moving


# --------------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------------

def clip_by_norm(g, clipnorm):
    """g scaled to L2 norm clipnorm when its norm (over the whole tensor) exceeds clipnorm."""
    g = np.asarray(g, dtype=np.float64)
    n = float(np.sqrt(np.sum(g * g)))
    if n > clipnorm:
        g = g * (clipnorm / n)
    return g


def adamw_step(params, grads, m, v, step, lr, wd, clipnorm, beta1=0.9, beta2=0.999, eps=1e-7):
    """One AdamW step (Keras form) in float64 numpy, for every tensor named in grads.

    params: name -> array (any tensor; names not in grads are passed through unchanged);
    grads, m, v: name -> array for the trainable tensors; step: the number of steps already taken.
    Per tensor:  g = clip(g) to L2 norm <= clipnorm;  w = w - lr*wd*w;  t = step + 1;
    m += (g - m)(1 - beta1);  v += (g^2 - v)(1 - beta2);
    alpha = lr sqrt(1 - beta2^t) / (1 - beta1^t);  w -= alpha m / (sqrt(v) + eps).
    Returns (new params, new m, new v) as float64 arrays."""
    t = int(step) + 1
    alpha = lr * np.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    new_p = {k: np.asarray(a, dtype=np.float64).copy() for k, a in params.items()}
    new_m, new_v = {}, {}
    for name, g in grads.items():
        g = clip_by_norm(g, clipnorm)
        w = np.asarray(params[name], dtype=np.float64)
        w = w - lr * wd * w
        mm = np.asarray(m[name], dtype=np.float64)
        vv = np.asarray(v[name], dtype=np.float64)
        mm = mm + (g - mm) * (1.0 - beta1)
        vv = vv + (g * g - vv) * (1.0 - beta2)
        new_p[name] = w - alpha * mm / (np.sqrt(vv) + eps)
        new_m[name] = mm
        new_v[name] = vv
    return new_p, new_m, new_v


# --------------------------------------------------------------------------------------------
# File helpers (train_step's documented HDF5 formats)
# --------------------------------------------------------------------------------------------

def model_weights(folder):
    """(meta, weights) of <folder>/model.h5 via the inference reference's reader."""
    model = R.load_model(folder)
    meta = {k: getattr(model, k) for k in ("num_blocks", "model_dim", "input_length",
                                          "output_length", "output_dims", "bn_epsilon")}
    return meta, dict(model.weights)


def write_batch(path, x_codes, y, species):
    """/x uint8 [B, L], /y float32 [B, O, T], root attribute species (int64 scalar)."""
    with h5py.File(path, "w") as f:
        f["x"] = np.asarray(x_codes, dtype=np.uint8)
        f["y"] = np.asarray(y, dtype=np.float32)
        f.attrs.create("species", int(species), dtype=np.int64)


def write_state(path, step, m, v):
    """Root attribute step (int64), /m/<path> and /v/<path> float32."""
    with h5py.File(path, "w") as f:
        f.attrs.create("step", int(step), dtype=np.int64)
        for name in m:
            f["m/" + name] = np.asarray(m[name], dtype=np.float32)
            f["v/" + name] = np.asarray(v[name], dtype=np.float32)


def read_train_out(path):
    """{'loss': float, 'step': int, 'grad'|'params'|'m'|'v': {name: float64 array}}; groups or
    entries that are missing are simply absent."""
    out = {"grad": {}, "params": {}, "m": {}, "v": {}}
    with h5py.File(path, "r") as f:
        if "loss" in f:
            out["loss"] = float(np.asarray(f["loss"][()]).reshape(-1)[0])
        if "step" in f.attrs:
            out["step"] = int(np.asarray(f.attrs["step"]).reshape(-1)[0])
        for group in ("grad", "params", "m", "v"):
            if group not in f:
                continue

            def visit(name, obj, group=group):
                if isinstance(obj, h5py.Dataset):
                    out[group][name] = np.asarray(obj[()], dtype=np.float64)
            f[group].visititems(visit)
    return out


def write_model_with_params(src_folder, dst_folder, params):
    """Copy <src_folder>/model.h5 to <dst_folder>/model.h5 with the tensors in params replaced
    (stored float32), e.g. to start a run from another run's /params."""
    os.makedirs(dst_folder, exist_ok=True)
    dst = os.path.join(dst_folder, "model.h5")
    shutil.copyfile(os.path.join(src_folder, "model.h5"), dst)
    with h5py.File(dst, "r+") as f:
        for name, a in params.items():
            f[name][...] = np.asarray(a, dtype=np.float32)
    return dst
