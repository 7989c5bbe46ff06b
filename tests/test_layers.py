"""Each layer of the GPU backend, forward and backward, against an independent computation.

Runs tests/layer_check.c, which checks the stem, the depthwise convolution with batch norm 1
and the residual (hand-written kernel, and the library convolution plus the kernel around it;
inference rows, interior rows, and the training form with its input, kernel and bias
gradients, also in the kernels that produce batch norm's sums on the way), the dense half of a block (a row range, and every row), a head projection, batch
norm in training (statistics, moving statistics, output, backward) and the dense layers'
gradient products, against the CPU layers of model/layers.h or double-precision loops of the
formulas; the tolerances (fp32: 1e-4 of the reference's scale; bf16: a bound derived from bf16's
rounding per product, or 3e-2 of scale for a whole block's dense half) are justified in
layer_check.c's header. In two settings:
  1. emulated (layer_check_emul, PAI_GPU_EMULATE=1): the layers' code above model/gpu.h and the
     kernel bodies, on any machine. Always run.
  2. on a GPU (layer_check: CUDA kernels, cuBLASLt, cuDNN). Skipped, with a message, when no
     GPU is visible.
Each in fp32 and bf16; every check must print PASS and the program must exit 0.
Usage: /usr/bin/python3 tests/test_layers.py --bin BUILD_DIR
"""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from harness import Checker, exe_from_args, require_binary, run
from test_gpu_forward import real_gpus

EXPECTED_CHECKS = 28


def case(ck, exe, precision, label):
    proc = run([exe, precision], timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(("PASS", "FAIL"))]
    for l in lines:
        print("  " + l)
    failed = [l for l in lines if l.startswith("FAIL")]
    m = re.search(r"(\d+) of (\d+) checks passed", proc.stdout)
    ck.check(proc.returncode == 0 and not failed and len(lines) == EXPECTED_CHECKS and m,
             f"{label} {precision}: exit {proc.returncode}, {len(lines) - len(failed)} of "
             f"{len(lines)} layer checks pass (expected {EXPECTED_CHECKS})"
             + (f"; failed: {failed[0]}" if failed else ""))


def main():
    exe = exe_from_args(__doc__, "layer_check")
    emul = require_binary(os.path.dirname(exe), "layer_check_emul")
    pmodel = require_binary(os.path.dirname(exe), "pmodel")
    ck = Checker()
    os.environ["PAI_GPU_EMULATE"] = "1"
    for precision in ("fp32", "bf16"):
        case(ck, emul, precision, "emulated")
    del os.environ["PAI_GPU_EMULATE"]
    if real_gpus(pmodel):
        for precision in ("fp32", "bf16"):
            case(ck, exe, precision, "GPU")
        os.environ["PAI_GPU_PLAIN_GEMM"] = "1"
        case(ck, exe, "bf16", "GPU plain gemm")
        del os.environ["PAI_GPU_PLAIN_GEMM"]
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
