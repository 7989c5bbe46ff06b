"""The GPU backend's training step (model/train_gpu.c) against the float64 training reference.

`train_step --device cuda` runs the checks of two CPU tests on the GPU trainer:
  * Part B of tests/test_train_grad.py on every case there: the first step's loss and gradient
    of every tensor, the moving statistics, the AdamW update from the returned gradient, and
    chained steps, against tests/ref/train_ref.py (float64), with that test's tolerances;
  * tests/test_train_mpi.py: 1 and 2 ranks give the same loss, gradients and parameters after 3
    steps, both match the reference, and a batch that does not divide fails cleanly;
in two settings:
  1. emulated: `train_step_emul` links the host emulation of the GPU runtime (PAI_GPU_EMULATE=1),
     so the trainer's code above model/gpu.h is checked on any machine; the rank checks run with
     --comm mpi (sums staged through host memory) and --comm nccl (the emulation's stand-in,
     whose sums started during the backward pass run at once, and once more deferred to the
     wait: PAI_EMUL_DEFER_SUMS=1); one
     Part B case also runs through the plain dense kernel (PAI_GPU_PLAIN_GEMM=1), the runtimes'
     fallback where cuBLASLt has no algorithm; and Part B once more with PAI_DWCONV=cudnn (the
     depthwise convolution and its gradients through the library functions of model/gpu.h,
     which the emulation computes from their formulas).
  2. on a GPU: the real `train_step` (CUDA, cuBLASLt, NCCL): Part B (also with cuDNN's
     convolution, PAI_DWCONV=cudnn), NCCL with one rank and the MPI path with two ranks on one
     GPU. Skipped, with a message, when no GPU is visible.
The training benchmark's GPU figures (bench_train_emul): its model FLOPs per sample against
bench/torch_anchor.py's count (the MFU both report rests on it; they must agree to the digits
printed), and a peak memory above what must be held (dense kernels with gradient and moments,
activations kept for the backward pass). `pfinetune`'s learning check of tests/test_pfinetune.py (the frozen backbone's twin forward and
its shortcut layers through the GPU forward; fp32; validation losses against the reference
within 1e-4), and `ptrain` end to end (shards, sampler, optimizer, validation through the GPU forward): 2 epochs
of 3 steps on the GPU backend (fp32; 1 rank, and 2 ranks with each communicator) against the
CPU run of the same command, epoch by epoch: loss and val_loss within 1e-4 relative (the same
arithmetic in another order: ~1e-6 measured); on a GPU also the learning check of
tests/test_ptrain.py in bf16 (its thresholds are about learning, not digits).
Both in fp32 (--precision fp32), plus one bf16 run per setting against the same reference:
TOLERANCES for bf16: the dense layers' operands are rounded to 8 significant bits (2^-9 relative
each); the loss is a mean of squares of outputs carrying the forward's ~4e-3-of-scale error
(tests/test_gpu_forward.py), so |loss - ref| <= 3e-2 |ref| (measured 7e-4). Gradients: most
entries are off by a few 2^-9 of the tensor's scale (measured ~3e-3 of max|ref|), but a ReLU
unit whose pre-activation sits within rounding of zero switches on or off between precisions
and changes a whole column of its kernel's gradient (measured: one column of 64 off by 0.22 of
max|ref|), and through the next layers' sums also small vectors such as a batch norm's gamma
gradient (measured up to 5e-2 of max|ref|). So per tensor, as a direction and a size: cosine
similarity with the reference >= 0.99 (measured >= 0.9975) and |g| / |ref| within 1 +- 0.1 (measured 0.034);
a wrong transpose, sum or sign fails the first at O(1), a missing factor the second.
Usage: /usr/bin/python3 tests/test_gpu_train.py --bin BUILD_DIR
"""

import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch

import test_train_grad as TG
import test_train_mpi as TM
from harness import Checker, exe_from_args, require_binary, run  # noqa: E402
from test_gpu_forward import real_gpus

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref as R  # noqa: E402
import train_ref as TR  # noqa: E402

BF16_LOSS_RTOL, BF16_GRAD_COS, BF16_GRAD_NORM = 3e-2, 0.99, 0.1
PTRAIN_RTOL = 1e-4
PTRAIN_OPTS = dict(input_length=80, output_length=64, num_blocks=4, model_dim=8, batch_size=4,
                   epochs=2, steps_per_epoch=3, learning_rate=3e-3, seed=0, threads=1, quiet=True)


def pfinetune_check(ck, tmp, exe, label):
    """tests/test_pfinetune.py's learning check with the frozen backbone on the GPU backend
    (fp32): initial and best validation loss against the reference within its 1e-4."""
    import test_pfinetune as TF
    sub = os.path.join(tmp, f"pfinetune_{label}")
    os.makedirs(sub)
    TF.DEVICE_ARGS = ["--device", "cuda", "--precision", "fp32"]
    fasta, genome = TF.make_genome(sub, np.random.default_rng(20250))
    prefixed = type("Prefixed", (), {"check": staticmethod(
        lambda ok, what: ck.check(ok, f"[{label} pfinetune] {what}"))})()
    TF.check_learning(prefixed, exe, sub, fasta, genome, np.random.default_rng(0))
    TF.DEVICE_ARGS = ["--device", "cpu"]


def ptrain_compare(ck, tmp, h5, cpu_exe, gpu_exe, label, ranks, extra):
    """ptrain on the GPU backend vs on the CPU: logs.csv losses epoch by epoch."""
    import test_ptrain as TP
    from harness import MPI_ENV, mpirun_prefix, run_group
    logs = {}
    for name, exe, args in (("cpu", cpu_exe, ["--device", "cpu"]),
                            ("gpu", gpu_exe, ["--device", "cuda", "--precision", "fp32", *extra])):
        folder = os.path.join(tmp, f"ptrain_{label}_{name}".replace(" ", "_").replace(",", ""))
        cmd = [exe, *TP.ptrain_args(folder, h5, **{k: str(v) if not isinstance(v, bool) else v
                                                    for k, v in PTRAIN_OPTS.items()}), *args]
        proc = run_group(mpirun_prefix(ranks) + cmd, timeout=600, env_extra=MPI_ENV)
        if not ck.check(proc.returncode == 0, f"[{label}] ptrain --device {args[1]} on {ranks} "
                                              f"rank(s): exit 0 (got {proc.returncode})"):
            return
        logs[name] = TP.read_logs(os.path.join(folder, "logs.csv"))[1]
    a, b = np.array(logs["cpu"]), np.array(logs["gpu"])
    ok = a.shape == b.shape and a.shape[0] == PTRAIN_OPTS["epochs"]
    err = float(np.max(np.abs(a[:, 1:3] - b[:, 1:3]) / np.abs(a[:, 1:3]))) if ok else float("inf")
    ck.check(ok and err <= PTRAIN_RTOL,
             f"[{label}] ptrain GPU vs CPU, {ranks} rank(s): loss and val_loss per epoch within "
             f"{PTRAIN_RTOL} relative (worst {err:.2e})")


def part_b(ck, exe, tmp, label, args):
    TG.EXTRA_ARGS = ["--device", "cuda", *args]
    sub = os.path.join(tmp, label.replace(" ", "_"))
    os.makedirs(sub)
    for k, case in enumerate(TG.CASES):
        case = (f"{case[0]} [{label}]",) + tuple(case[1:])
        os.makedirs(os.path.join(sub, case[0]), exist_ok=True)
        TG.run_case(ck, exe, sub, case, seed=k + 1)
    TG.EXTRA_ARGS = []


def ranks(ck, exe, label, args):
    TM.EXTRA_ARGS = ["--device", "cuda", *args]
    TM.check_ranks(ck, exe, label=f"[{label}] ")
    TM.EXTRA_ARGS = []


def bf16_case(ck, exe, tmp, label):
    """One step in bf16 against the float64 reference (tolerances in the docstring)."""
    rng = np.random.default_rng(7)
    N, D, dims, O, B, species = 8, 16, [3, 2], 32, 2, 0
    L = O + 2 * R.receptive_radius(N)
    folder = os.path.join(tmp, f"bf16_{label}".replace(" ", "_"))
    R.write_random_model(folder, N, D, dims, L, O, ["human", "mouse"], seed=4242)
    meta, w = TR.model_weights(folder)
    x = TG.random_codes(rng, B, L)
    y = TG.random_targets(rng, B, O, dims[species])
    batch = os.path.join(folder, "batch.h5")
    TR.write_batch(batch, x, y, species)
    loss, grads, _ = TR.train_loss_and_grads(w, meta, x, y, species)
    out = os.path.join(folder, "out.h5")
    proc = run([exe, "--model_folder", folder, "--batch", batch, "--out", out, "--device", "cuda",
                "--precision", "bf16", "--threads", "2"])
    if not ck.check(proc.returncode == 0, f"[{label} bf16] train_step exit 0"):
        return
    c = TR.read_train_out(out)
    cl = c.get("loss", float("nan"))
    ck.check(abs(cl - loss) <= BF16_LOSS_RTOL * abs(loss),
             f"[{label} bf16] loss {cl:.6g} vs ref {loss:.6g} (rel err "
             f"{abs(cl - loss) / abs(loss):.2e}, tol {BF16_LOSS_RTOL})")
    worst_norm, worst_cos, bad = 0.0, 1.0, []
    for n in TR.trainable_names(meta):
        r, g = grads[n], c["grad"].get(n)
        if g is None or g.shape != r.shape:
            bad.append(n)
            continue
        if not np.any(r):
            if np.any(g):
                bad.append(n)
            continue
        norm = abs(float(np.linalg.norm(g) / np.linalg.norm(r)) - 1.0)
        cos = float((g * r).sum() / (np.linalg.norm(g) * np.linalg.norm(r) + 1e-300))
        worst_norm, worst_cos = max(worst_norm, norm), min(worst_cos, cos)
        if not (norm <= BF16_GRAD_NORM and cos >= BF16_GRAD_COS):
            bad.append(f"{n} (|g|/|ref| - 1 = {norm:.2e}, cos {cos:.4f})")
    ck.check(not bad, f"[{label} bf16] every gradient: cosine with the reference >= "
                      f"{BF16_GRAD_COS} (worst {worst_cos:.5f}) and |g|/|ref| within 1 +- "
                      f"{BF16_GRAD_NORM} (worst {worst_norm:.2e})"
                      f"{'; off: ' + ', '.join(bad[:6]) if bad else ''}")


def bench_check(ck, exe):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
    import torch_anchor as A
    N, D, L, O, T, B = 4, 16, 256, 128, 5, 2
    env = dict(os.environ, PAI_DEVICE="cuda", PAI_PRECISION="bf16")
    proc = subprocess.run([exe, str(N), str(D), str(L), str(O), str(T), str(B), "2"],
                          capture_output=True, text=True, env=env)
    print(proc.stdout + proc.stderr)
    m = re.search(r"3 x ([\d.e+-]+) TFLOP forward per sample.*peak GPU memory ([\d.e+-]+) GiB",
                  proc.stdout)
    want = A.forward_flops(N, D, L, O, T, 1) * 1e-12
    ck.check(proc.returncode == 0 and m and abs(float(m.group(1)) - want) <= 1e-3 * want,
             f"bench_train's model FLOPs per forward {m.group(1) if m else None} TFLOP == "
             f"torch_anchor's {want:.4g} (to the 4 digits printed)")
    # at least parameters, gradient and the two AdamW moments of the blocks' dense kernels,
    # float32, and the activations of every layer kept for the backward pass
    floor = (4 * 4 * N * 2 * 4 * D * D + 4 * (2 * N + 1) * B * L * D) / 2**30
    ck.check(bool(m) and float(m.group(2)) > floor,
             f"bench_train's peak GPU memory {m.group(2) if m else None} GiB > {floor:.3g} GiB "
             f"(dense kernels x 4 copies + kept activations)")


def main():
    exe = exe_from_args(__doc__, "train_step")
    emul = require_binary(os.path.dirname(exe), "train_step_emul")
    pmodel = require_binary(os.path.dirname(exe), "pmodel")
    torch.set_num_threads(2)
    ck = Checker()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PAI_GPU_EMULATE"] = "1"
        part_b(ck, emul, tmp, "emulated fp32", ["--precision", "fp32"])
        # the plain dense kernel (every transpose of the backward pass) on one case
        os.environ["PAI_GPU_PLAIN_GEMM"] = "1"
        TG.EXTRA_ARGS = ["--device", "cuda", "--precision", "fp32"]
        sub = os.path.join(tmp, "plain_gemm")
        case = ("n8_d16_plain_gemm",) + tuple(TG.CASES[2][1:])
        os.makedirs(os.path.join(sub, case[0]))
        TG.run_case(ck, emul, sub, case, seed=3)
        TG.EXTRA_ARGS = []
        del os.environ["PAI_GPU_PLAIN_GEMM"]
        os.environ["PAI_DWCONV"] = "cudnn"
        part_b(ck, emul, tmp, "emulated fp32 cudnn conv", ["--precision", "fp32"])
        del os.environ["PAI_DWCONV"]
        ranks(ck, emul, "emulated, comm mpi", ["--precision", "fp32", "--comm", "mpi"])
        ranks(ck, emul, "emulated, comm nccl", ["--precision", "fp32", "--comm", "nccl"])
        # the gradient's sums started during the backward pass, run only when waited for: a
        # caller that read a summed range before waiting would fail this one
        os.environ["PAI_EMUL_DEFER_SUMS"] = "1"
        ranks(ck, emul, "emulated, comm nccl, deferred sums", ["--precision", "fp32", "--comm",
                                                               "nccl"])
        del os.environ["PAI_EMUL_DEFER_SUMS"]
        bf16_case(ck, emul, tmp, "emulated")
        import test_ptrain as TP
        bin_dir = os.path.dirname(exe)
        data = TP.make_data(ck, tmp, require_binary(bin_dir, "psynth"),
                            require_binary(bin_dir, "ppreprocess"))
        ptrain, ptrain_emul = (require_binary(bin_dir, n) for n in ("ptrain", "ptrain_emul"))
        if data:
            ptrain_compare(ck, tmp, data[1], ptrain, ptrain_emul, "emulated", 1, [])
            ptrain_compare(ck, tmp, data[1], ptrain, ptrain_emul, "emulated, comm mpi", 2,
                           ["--comm", "mpi"])
            ptrain_compare(ck, tmp, data[1], ptrain, ptrain_emul, "emulated, comm nccl", 2,
                           ["--comm", "nccl"])
            # as ptrain runs it, the optimizer reads the gradient on the GPU: with the started
            # sums deferred to the wait, reading it before the wait would show
            os.environ["PAI_EMUL_DEFER_SUMS"] = "1"
            ptrain_compare(ck, tmp, data[1], ptrain, ptrain_emul,
                           "emulated, comm nccl, deferred sums", 2, ["--comm", "nccl"])
            del os.environ["PAI_EMUL_DEFER_SUMS"]
        pfinetune_check(ck, tmp, require_binary(bin_dir, "pfinetune_emul"), "emulated")
        bench_check(ck, require_binary(bin_dir, "bench_train_emul"))
        del os.environ["PAI_GPU_EMULATE"]
        n = real_gpus(pmodel)
        if n:
            part_b(ck, exe, tmp, "GPU fp32", ["--precision", "fp32"])
            os.environ["PAI_DWCONV"] = "cudnn"
            part_b(ck, exe, tmp, "GPU fp32 cudnn conv", ["--precision", "fp32"])
            del os.environ["PAI_DWCONV"]
            ranks(ck, exe, "GPU, comm mpi", ["--precision", "fp32", "--comm", "mpi"])
            if n >= 2:
                ranks(ck, exe, "GPU, comm nccl", ["--precision", "fp32", "--comm", "nccl"])
            else:
                # NCCL refuses two ranks on one GPU: one rank, checked by Part B's loss/grads
                TG.EXTRA_ARGS = ["--device", "cuda", "--precision", "fp32", "--comm", "nccl"]
                sub = os.path.join(tmp, "gpu_nccl1")
                case = ("nccl_one_rank",) + tuple(TG.CASES[0][1:])
                os.makedirs(os.path.join(sub, case[0]))
                TG.run_case(ck, exe, sub, case, seed=1)
                TG.EXTRA_ARGS = []
            bf16_case(ck, exe, tmp, "GPU")
            if data:
                ptrain_compare(ck, tmp, data[1], ptrain, ptrain, "GPU", 1, [])
                TP.DEVICE_ARGS = ["--device", "cuda", "--precision", "bf16"]
                TP.test_learning(ck, tmp, ptrain, require_binary(bin_dir, "pmodel"), data[1])
                TP.DEVICE_ARGS = ["--device", "cpu"]
            pfinetune_check(ck, tmp, require_binary(bin_dir, "pfinetune"), "GPU")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
