"""The GPU backend's forward pass (model/forward_gpu.c) against the independent torch reference.

Runs `pmodel predict --device cuda` on the model shapes of tests/test_forward_ref.py and
compares every head output with the float64 reference of REFERENCE.md section 2, in two ways:
  1. emulated: `pmodel_emul` links the host emulation of the GPU runtime (model/gpu_emul.c), so
     the backend's code above model/gpu.h (buffers, row ranges, the dense layers' shapes,
     transposes and leading dimensions as cuBLASLt would read them, bf16 rounding) runs on any
     machine. Always run; once more with PAI_GPU_PLAIN_GEMM=1, through the plain dense kernel
     the runtimes fall back on where cuBLASLt has no algorithm.
  2. on a GPU: the real `pmodel` with CUDA, cuBLASLt and the kernels, and with cuDNN's
     convolution (PAI_DWCONV=cudnn). Skipped, with a message, when no GPU is visible.
Each in fp32 and bf16 precision. Also checks that bf16 really differs from fp32 (the option is
honoured) and that an unknown precision is refused; and the profile PAI_GPU_PROFILE=1 prints
(model/gpu_profile.h): its call counts against the forward's structure (one stem per batch,
one depthwise convolution per block and batch, one first dense layer per block and batch, as
forward_gpu.c's header says), and its shares summing to 100%.

TOLERANCES. fp32: those of test_forward_ref.py (rtol 1e-4, atol 1e-5 x output scale), since
the products accumulate in float32 like the CPU path. bf16: the dense layers' operands (the
batch-normed block input, the 4D hidden layer, weights, the first dense bias, the heads' input
rows and kernels) are rounded to 8 significant bits, a relative error of at most 2^-9 = 2e-3
each; a dot product of rounded terms is off by about 2^-9 x sqrt(terms) x the terms' size,
which the residual stream carries through every block, so errors of a few 1e-3 of the output
scale are expected (measured in emulation: at most 4.3e-3 of the scale). Allowed:
|got - ref| <= 3e-2 x max|ref| per head, 7x the worst measured, and far below the O(1)
errors of a wrong shape, transpose, dilation or row range (such a mutation fails 14 checks).
Usage: /usr/bin/python3 tests/test_gpu_forward.py --bin BUILD_DIR
"""

import os
import re
import subprocess
import sys
import tempfile

import numpy as np

import test_forward_ref as F
from harness import Checker, binary_from_args, require_binary, run  # noqa: E402

BF16_ATOL_REL_SCALE = 3e-2


def gpus_visible(pmodel):
    """GPUs the real build sees (0 without CUDA in the build, a driver or a device)."""
    out = subprocess.run([pmodel, "build"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+) GPU\(s\)", out)
    return int(m.group(1)) if m and "emulation" not in out else 0


def real_gpus(pmodel):
    """GPUs for the real-GPU part of a test; 0 after printing why that part is skipped."""
    n = gpus_visible(pmodel)
    if n == 0:
        print("SKIP the real GPU part: no GPU visible to this build (the emulated part above "
              "ran)", flush=True)
    else:
        print(f"--- real GPU part: {n} GPU(s) visible", flush=True)
    return n


def run_backend(ck, exe, tmp, label, precision):
    outs = []
    for k, case in enumerate(F.CASES):
        tol = {} if precision == "fp32" else dict(rtol=0.0, atol_rel_scale=BF16_ATOL_REL_SCALE)
        outs.append(F.run_case(ck, exe, tmp, case, seed=k + 1, label=f"{label} {precision}",
                               extra_args=["--device", "cuda", "--precision", precision], **tol))
    return outs


def check_profile(ck, exe, tmp):
    name, N, D, dims, _, O, _, _, _, batch = F.CASES[1]
    batches = -(-F.N_SEQS // batch)
    cmd = [exe, "predict", "--model_folder", os.path.join(tmp, name), "--seq_file",
           os.path.join(tmp, name + "_seqs.txt"), "--out", os.path.join(tmp, "prof.h5"),
           "--device", "cuda", "--batch_size", str(batch)]
    plain = run(cmd)
    ck.check(plain.returncode == 0 and "GPU profile" not in plain.stderr,
             "no profile without PAI_GPU_PROFILE")
    os.environ["PAI_GPU_PROFILE"] = "1"
    proc = run(cmd)
    del os.environ["PAI_GPU_PROFILE"]
    rows = {}
    share = 0.0
    for m in re.finditer(r"^ +([\d.]+)% +([\d.]+) +(\d+) +[\d.]+  (.+)$", proc.stderr, re.M):
        rows[m.group(4)] = int(m.group(3))
        share += float(m.group(1))
    want = {"stem": batches, "dwconv": N * batches}
    got = {k: rows.get(k) for k in want}
    ck.check(proc.returncode == 0 and got == want,
             f"profile: calls {got} == {want} ({batches} batches of {batch}, {N} blocks)")
    up = sum(c for k, c in rows.items() if k.startswith("gemm") and f"x{4 * D}x{D} bias relu" in k)
    ck.check(up == N * batches, f"profile: first dense layers {up} == {N * batches}")
    ck.check(abs(share - 100.0) < 0.1 * len(rows) + 0.1, f"profile: shares sum to {share:.1f}%")


def main():
    pmodel = binary_from_args(__doc__, "pmodel")
    emul = require_binary(os.path.dirname(pmodel), "pmodel_emul")
    ck = Checker()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PAI_GPU_EMULATE"] = "1"
        results = {}
        for precision in ("fp32", "bf16"):
            results[precision] = run_backend(ck, emul, tmp, "emulated", precision)
        # the plain dense kernel (the runtimes' fallback where cuBLASLt has no algorithm)
        os.environ["PAI_GPU_PLAIN_GEMM"] = "1"
        for precision in ("fp32", "bf16"):
            run_backend(ck, emul, tmp, "emulated plain gemm", precision)
        del os.environ["PAI_GPU_PLAIN_GEMM"]
        os.environ["PAI_DWCONV"] = "cudnn"
        for precision in ("fp32", "bf16"):
            run_backend(ck, emul, tmp, "emulated cudnn conv", precision)
        del os.environ["PAI_DWCONV"]
        diff = max(float(np.abs(a[j] - b[j]).max())
                   for a, b in zip(results["fp32"], results["bf16"]) for j in a if j in b)
        ck.check(diff > 0, f"emulated bf16 differs from fp32 (max difference {diff:.2e})")
        case = F.CASES[0]
        proc = run([emul, "predict", "--model_folder", os.path.join(tmp, case[0]), "--seq_file",
                    os.path.join(tmp, case[0] + "_seqs.txt"), "--out", os.path.join(tmp, "x.h5"),
                    "--device", "cuda", "--precision", "fp16"])
        ck.check(proc.returncode == 2 and "--precision" in proc.stderr,
                 f"--precision fp16 refused with exit 2 (got {proc.returncode})")
        check_profile(ck, emul, tmp)
        del os.environ["PAI_GPU_EMULATE"]

        if real_gpus(pmodel):
            for precision in ("fp32", "bf16"):
                run_backend(ck, pmodel, tmp, "GPU", precision)
            os.environ["PAI_DWCONV"] = "cudnn"
            for precision in ("fp32", "bf16"):
                run_backend(ck, pmodel, tmp, "GPU cudnn conv", precision)
            del os.environ["PAI_DWCONV"]
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
