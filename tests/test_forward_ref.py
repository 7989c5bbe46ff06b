"""Forward pass of the C model (`pmodel predict`) against the independent torch reference.

For several model shapes (block counts 4, 6, 8, 12; odd and even model_dim; one and two heads;
input_length equal to, larger than, and smaller than output_length + 2*receptive radius) this
writes a random model folder (tests/ref/promoterai_ref.py:write_random_model; one model with
int32 attributes and fixed-length strings), random sequences mixing upper/lower-case ACGT with
N and IUPAC letters (plus an all-N and an all-lower-case sequence), runs
`pmodel predict`, and compares every head output with the reference computed in float64 from
REFERENCE.md section 2.
Pass criterion per element: |c - ref| <= atol + rtol*|ref|, see TOLERANCES below.
Usage: /usr/bin/python3 tests/test_forward_ref.py --bin BUILD_DIR
"""

import os
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref as R  # noqa: E402
from harness import Checker, allclose_report, binary_from_args, run  # noqa: E402

# TOLERANCES. The C code computes in float32 (unit roundoff 6e-8). Each output is an average of
# ReLU(sums over D terms) of activations that went through N residual blocks with sums over up
# to 4D terms, so the expected float32 error is ~1e-7..1e-6 of the activation scale (the float32
# torch reference shows this; it is printed next to each check). Outputs clipped near 0 by the
# ReLU keep the absolute error of their pre-activation, hence an absolute floor proportional to
# the head's output scale: ATOL_REL_SCALE * max|ref|, about 10-100x the expected error.
RTOL = 1e-4
ATOL_REL_SCALE = 1e-5

# name, num_blocks, model_dim, output_dims, head_names, output_length, extra input length
# (input_length = output_length + 2*radius + extra), int dtype, vlen strings, batch_size arg
CASES = [
    ("n4_d8", 4, 8, [3], ["human"], 24, 0, np.int64, True, None),
    ("n8_d13_two_heads_int32", 8, 13, [5, 2], ["human", "mouse"], 20, 0, np.int32, False, 2),
    ("n12_d32", 12, 32, [4], ["human"], 16, 0, np.int64, True, None),
    ("n6_d8_longer_input", 6, 8, [3], ["human"], 16, 40, np.int64, True, 3),
    ("n8_d12_shorter_input", 8, 12, [2, 3], ["human", "mouse"], 16, 40 - 16 - 64, np.int64,
     True, None),
]
N_SEQS = 5


def make_sequences(rng, L, n):
    seqs = []
    for k in range(n):
        if k == n - 1:
            seqs.append("N" * L)                                  # all-zero input
        elif k == n - 2:
            seqs.append("".join(rng.choice(list("acgt"), L)))     # lower case only
        else:
            letters = rng.choice(list("ACGTACGTACGTacgtNRYnK"), L)
            seqs.append("".join(letters))
    return seqs


def nontrivial(heads):
    """Each track is non-zero at >= 10% of positions over the non-N sequences."""
    return all(float((h[:-1] != 0).double().mean(dim=(0, 1)).min()) >= 0.1 for h in heads)


def run_case(ck, pmodel, tmp, case, seed, extra_args=(), label="", rtol=RTOL,
             atol_rel_scale=ATOL_REL_SCALE):
    """Checks `pmodel predict` (with extra_args) on one case; returns {head j: output} (also
    for tests/test_gpu_forward.py, which runs the GPU backend through this function)."""
    name, N, D, dims, names, O, extra, int_dtype, vlen, batch = case
    outputs = {}
    L = O + 2 * R.receptive_radius(N) + extra
    folder = os.path.join(tmp, name)
    rng = np.random.default_rng(seed)
    seqs = make_sequences(rng, L, N_SEQS)
    x = torch.from_numpy(np.stack([R.encode(s) for s in seqs]))
    # Pick the first seed whose random model has no dead (always-zero) track, so every output
    # column actually exercises the computation.
    for attempt in range(50):
        # one case stores a non-default epsilon: the C reader must take it from the file
        R.write_random_model(folder, N, D, dims, L, O, names, seed=seed * 100 + attempt,
                             int_dtype=int_dtype, vlen_strings=vlen,
                             bn_epsilon=0.05 if name == "n12_d32" else 1e-3)
        model = R.load_model(folder)
        with torch.no_grad():
            ref = model.heads(x, torch.float64)
        if nontrivial(ref):
            break
    with torch.no_grad():
        ref32 = model.heads(x, torch.float32)
    seq_file = os.path.join(tmp, name + "_seqs.txt")
    with open(seq_file, "w") as fh:
        fh.write("\n".join(seqs) + "\n")
    out = os.path.join(tmp, name + label.replace(" ", "_") + "_out.h5")
    cmd = [pmodel, "predict", "--model_folder", folder, "--seq_file", seq_file, "--out", out,
           "--threads", "2", *extra_args]
    name = name + (f" [{label}]" if label else "")
    if batch:
        cmd += ["--batch_size", str(batch)]
    print(f"--- {name}: N={N} D={D} heads={dims} L={L} O={O} radius={R.receptive_radius(N)} "
          f"attrs={np.dtype(int_dtype).name} strings={'vlen' if vlen else 'fixed'}")
    proc = run(cmd)
    if not ck.check(proc.returncode == 0, f"{name}: pmodel predict exit status 0 "
                                          f"(got {proc.returncode})"):
        return outputs
    with h5py.File(out, "r") as f:
        present = sorted(k for k in f.keys() if k.startswith("head_"))
        ck.check(present == [f"head_{j}" for j in range(len(dims))],
                 f"{name}: datasets {present}")
        for j, T in enumerate(dims):
            if f"head_{j}" not in f:
                continue
            got = np.asarray(f[f"head_{j}"][()])
            if not ck.check(got.shape == (N_SEQS, O, T),
                            f"{name}: head_{j} shape {got.shape} == {(N_SEQS, O, T)}"):
                continue
            outputs[j] = got
            r = ref[j].numpy()
            scale = float(np.abs(r).max())
            atol = atol_rel_scale * scale
            ok, max_abs, max_rel, ratio = allclose_report(got, r, atol, rtol)
            _, f32_abs, f32_rel, _ = allclose_report(ref32[j].numpy(), r, atol, rtol)
            ck.check(ok, f"{name}: head_{j} max abs err {max_abs:.2e}, max rel err {max_rel:.2e}"
                         f" (atol {atol:.1e} = {atol_rel_scale} x scale {scale:.3f}, rtol {rtol};"
                         f" worst err/allowed {ratio:.3f}; torch float32 for comparison: abs "
                         f"{f32_abs:.2e}, rel {f32_rel:.2e})")
    return outputs


def main():
    pmodel = binary_from_args(__doc__, "pmodel")
    ck = Checker()
    with tempfile.TemporaryDirectory() as tmp:
        for k, case in enumerate(CASES):
            run_case(ck, os.path.abspath(pmodel), tmp, case, seed=k + 1)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
