"""`pprecompute --device cuda` (cone scoring on the GPU backend, model/cone_gpu.c) against naive
twin scoring, as tests/test_precompute.py checks the CPU path.

Fixture: tests/test_precompute.py's genome (both strands, TSSs near both chromosome ends, N runs
and IUPAC letters), its T1 TSS table and its models m2 (8 blocks, D 12) and m3 (10 blocks, D 16,
two heads). Checks, with that test's check_table (row set, order, columns, each raw within 1e-5
of `promoterai --raw` on the CPU, i.e. two full windows per variant, and the printed scores):
  1. emulated (pprecompute_emul, PAI_GPU_EMULATE=1), fp32: m2 with 1 rank, m3 with 2 ranks, and
     m3 with one rank byte-identical to its 2-rank table;
  2. on a GPU (the real pprecompute), the same. Skipped, with a message, when no GPU is visible.
A --precision bf16 run of m2 must give the same rows with raws within 0.1 x max|raw| of the
naive fp32 raws: a raw is a difference of two head means whose bf16 errors (a few 1e-3 of the
head scale, tests/test_gpu_forward.py) do not cancel, and SNV effects are small next to the
head scale, so the error is a sizeable fraction of a raw (measured in emulation: 3e-2).
Usage: /usr/bin/python3 tests/test_gpu_precompute.py --bin BUILD_DIR
"""

import os
import sys
import tempfile

import numpy as np
import torch

import test_precompute as TP
from harness import Checker, exe_from_args, require_binary  # noqa: E402
from test_gpu_forward import real_gpus

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref as R  # noqa: E402


BF16_RAW_TOL = 0.1


def main():
    exe = exe_from_args(__doc__, "pprecompute")
    bin_dir = os.path.dirname(exe)
    emul = require_binary(bin_dir, "pprecompute_emul")
    promoterai = require_binary(bin_dir, "promoterai")
    pmodel = require_binary(bin_dir, "pmodel")
    torch.set_num_threads(1)
    ck = Checker()
    rng = np.random.default_rng(20251)
    with tempfile.TemporaryDirectory() as tmp:
        fasta, genome, order = TP.make_genome(tmp, rng)
        models = {n: TP.make_model(tmp, n, TP.MODELS[n]) for n in ("m2", "m3")}
        refs = {n: R.load_model(f) for n, (f, _) in models.items()}
        t1 = os.path.join(tmp, "tss_t1.tsv")
        rows1 = TP.t1_rows(rng)
        TP.write_table(t1, TP.T1_HEADER, rows1)
        exp1, cnt1 = TP.expected_table(genome, order, TP.T1_HEADER, rows1, TP.FLANK)
        os.environ.pop("PAI_GPU_EMULATE", None)
        naive = {n: TP.naive_scores(promoterai, tmp, f"{n}_t1", models[n][0], models[n][1], fasta,
                                    exp1) for n in models}
        if not ck.check(all(v is not None for v in naive.values()),
                        "fixture: promoterai (CPU) scored the naive variant sets"):
            return ck.finish()

        def runs(label, program):
            run = TP.Runner(program, tmp)
            outs = {}
            for name, ranks, precision in (("m2", 0, "fp32"), ("m3", 2, "fp32"),
                                           ("m3", 0, "fp32")):
                d = os.path.join(tmp, "runs", f"{label}_{name}_{ranks}")
                os.makedirs(d)
                out = os.path.join(d, "scores.tsv.gz")
                TP.DEVICE_ARGS = ["--device", "cuda", "--precision", precision]
                p = run.run(t1, fasta, [models[name][0]], out,
                            ["--flank", str(TP.FLANK), "--raw"], ranks=ranks)
                tag = f"[{label}] {name} on T1 -np {max(ranks, 1)}"
                if TP.check_clean_success(ck, tag, p, out):
                    TP.check_table(ck, tag, out, [name], exp1, [naive[name]], [refs[name]],
                                   genome, True)
                    TP.check_summary(ck, tag, p, cnt1, os.path.basename(t1))
                    outs[(name, ranks)] = out
            if ("m3", 2) in outs and ("m3", 0) in outs:
                ck.check(open(outs[("m3", 2)], "rb").read() == open(outs[("m3", 0)], "rb").read(),
                         f"[{label}] m3 on T1: -np 1 and -np 2 OUT byte-identical")
            # bf16: the same rows, raws near the naive fp32 ones (tolerance in the docstring)
            d = os.path.join(tmp, "runs", f"{label}_bf16")
            os.makedirs(d)
            out = os.path.join(d, "scores.tsv.gz")
            TP.DEVICE_ARGS = ["--device", "cuda", "--precision", "bf16"]
            p = run.run(t1, fasta, [models["m2"][0]], out, ["--flank", str(TP.FLANK), "--raw"])
            TP.DEVICE_ARGS = ["--device", "cpu"]
            if ck.check(p.returncode == 0 and os.path.isfile(out),
                        f"[{label}] bf16 run completes (exit {p.returncode})"):
                rows = TP.read_out(out)[1]
                hdr, body = rows[0], rows[1:]
                ci, pi, ai, si, ri = (hdr.index(c) for c in ("chrom", "pos", "alt", "strand",
                                                             "raw"))
                got = np.array([float(r[ri]) for r in body])
                ref = np.array([naive["m2"][(r[ci], r[pi], r[ai], r[si])][1] for r in body])
                scale = float(np.abs(ref).max())
                err = float(np.abs(got - ref).max())
                ck.check(len(body) == len(exp1) and err <= BF16_RAW_TOL * scale,
                         f"[{label}] bf16: {len(body)} rows, raw within {BF16_RAW_TOL} x "
                         f"max|raw| = {BF16_RAW_TOL * scale:.2e} of naive fp32 (worst "
                         f"{err:.2e}, {err / scale:.2e} of max|raw|)")

        os.environ["PAI_GPU_EMULATE"] = "1"
        runs("emulated", emul)
        del os.environ["PAI_GPU_EMULATE"]
        if real_gpus(pmodel):
            runs("GPU", exe)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
