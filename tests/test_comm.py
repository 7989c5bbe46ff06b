"""The GPU backend's NCCL communicator (mpi/comm_nccl.c) on GPU buffers.

Runs tests/comm_check.c, which sums floats and doubles over the ranks in place, then sums the
floats again, doubled by a kernel not waited for, through three started sums waited for together
(the training step's overlapped gradient sums), and checks every element against the closed form
(exact in float and double, so no tolerance):
  1. emulated (comm_check_emul, PAI_GPU_EMULATE=1) with 1 and 2 ranks: the driver and the
     emulation's stand-in (MPI over host memory). Always run.
  2. pai_dist_await, which guards the NCCL set-up against a rank failing inside it, on a
     stand-in operation (comm_check await MODE, no GPU needed): all ranks finishing at
     different times agree on success; one rank failing makes every other rank cancel and
     exit non-zero within seconds (their own limit is 60 s, so only the failure message can
     have stopped them); a rank that never finishes gives up after its 1 s limit, and all
     exit non-zero. Always run.
  3. on GPUs (comm_check, CUDA + NCCL): 1 rank, and 2 ranks when 2 GPUs are visible (NCCL
     refuses two ranks on one GPU). Skipped, with a message, when no GPU is visible.
Usage: /usr/bin/python3 tests/test_comm.py --bin BUILD_DIR
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from harness import MPI_ENV, Checker, exe_from_args, mpirun_prefix, require_binary, run_group
from test_gpu_forward import gpus_visible


def case(ck, exe, ranks, label):
    proc = run_group(mpirun_prefix(ranks) + [exe, "1000003"], timeout=300, env_extra=MPI_ENV)
    lines = [l for l in proc.stdout.splitlines() if "sums correct" in l]
    ck.check(proc.returncode == 0 and len(lines) == ranks,
             f"{label}, {ranks} rank(s): exit {proc.returncode}, {len(lines)} rank(s) report "
             f"correct sums" + (f" ({lines[0]})" if lines else ""))


def await_case(ck, exe, ranks, mode):
    t0 = time.monotonic()
    proc = run_group(mpirun_prefix(ranks) + [exe, "await", mode], timeout=120, env_extra=MPI_ENV)
    took = time.monotonic() - t0
    got = {}
    for m in re.finditer(r"await: rank (\d+) status (-?\d+) cancelled (\d)", proc.stdout):
        got[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    label = f"await {mode}, {ranks} rank(s)"
    ck.check(sorted(got) == list(range(ranks)), f"{label}: every rank reports ({got})")
    if mode == "ok":
        want = {r: (0, 0) for r in range(ranks)}
        ck.check(proc.returncode == 0 and got == want,
                 f"{label}: exit {proc.returncode}, all succeed uncancelled")
        return
    # the canceller: everyone but the failing last rank, or rank 0 that never finishes
    cancelled = set(range(ranks - 1)) if mode == "fail" else {0}
    ck.check(proc.returncode != 0 and all(st < 0 for st, _ in got.values()),
             f"{label}: exit {proc.returncode}, every rank's status is a failure")
    ck.check({r for r, (_, c) in got.items() if c} == cancelled,
             f"{label}: ranks {sorted(cancelled)} cancelled their wait")
    ck.check(took < 30, f"{label}: done in {took:.1f} s (< 30 s)")


def main():
    exe = exe_from_args(__doc__, "comm_check")
    emul = require_binary(os.path.dirname(exe), "comm_check_emul")
    pmodel = require_binary(os.path.dirname(exe), "pmodel")
    ck = Checker()
    os.environ["PAI_GPU_EMULATE"] = "1"
    for ranks in (1, 2):
        case(ck, emul, ranks, "emulated")
    for ranks in (1, 3):
        for mode in ("ok", "fail", "timeout"):
            await_case(ck, emul, ranks, mode)
    del os.environ["PAI_GPU_EMULATE"]
    n = gpus_visible(pmodel)
    if n == 0:
        print("SKIP the NCCL part: no GPU visible to this build (the emulated part above ran)")
    else:
        for ranks in sorted({1, min(2, n)}):
            case(ck, exe, ranks, f"NCCL on {n} GPU(s)")
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
