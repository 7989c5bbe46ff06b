"""The PyTorch anchor benchmark (bench/torch_anchor.py) computes the reference architecture.

Needs no C binary. Checks:
  1. dilations, receptive radius, shortcut layers and the FLOP formula of the anchor against
     REFERENCE.md section 2 (published size: radius 8192, shortcuts 24, 20, ..., 4).
  2. Eval mode: random model folders (tests/ref/promoterai_ref.py write_random_model; 8 blocks,
     so dilations 1, 2 and 4 all occur, two heads; input_length = O + 2*radius and a longer
     one) are loaded with load_model, copied into the anchor's nn.Module, and every head output
     is compared with RefModel.heads on random sequences mixing upper/lower-case ACGT with N and
     IUPAC letters, in float64 and in float32.
  3. The comparison is sensitive: anchors built with a wrong dilation schedule or a crop shifted
     by one position must disagree with the reference far beyond the tolerance.
  4. Train mode: the anchor's forward equals a hand-written batch-norm version of the reference
     (statistics over batch and positions, biased variance), and one train-mode forward moves
     every moving mean from 0 to 0.01 * batch mean (momentum 0.99 in Keras's convention).
  5. The script runs end to end on the CPU at a tiny shape (JSON statuses and FLOPs), rejects an
     inconsistent shape, records an out-of-memory error as "OOM" and goes on, and skips
     measurements once its time budget is spent.
Usage: /usr/bin/python3 tests/test_torch_anchor.py [--bin DIR (ignored)]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "ref"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import promoterai_ref as R  # noqa: E402
import torch_anchor as A  # noqa: E402
from harness import Checker  # noqa: E402

# TOLERANCES (max abs difference of head outputs, whose scale here is ~0.1..1).
# float64: both sides do the same arithmetic in a different order (the anchor crops before
# projecting, uses torch's batch-norm kernel and Linear layers), so they agree to ~1e-15;
# 1e-10 still leaves five orders of magnitude of headroom.
# float32: unit roundoff 6e-8 through 8 blocks with sums over up to 4D terms gives ~1e-7;
# 1e-5 is the bound the anchor must meet.
TOL64 = 1e-10
TOL32 = 1e-5
# A wrong architecture must miss by far more than the tolerance.
MUTANT_MIN_DIFF = 1e-3
# Moving-mean update after one train-mode forward (float64).
MOMENTUM_TOL = 1e-6

N_BLOCKS = 8          # dilations 1, 1, 1, 1, 2, 2, 4, 4: radius 32, shortcut layers 8 and 4
DIM = 8
OUTPUT_DIMS = [3, 2]
OUTPUT_LENGTH = 16
N_SEQS = 5


def make_x(rng, L, n):
    letters = list("ACGTACGTACGTacgtNRYnK")
    seqs = ["".join(rng.choice(letters, L)) for _ in range(n)]
    return torch.from_numpy(np.stack([R.encode(s) for s in seqs]))


def max_diffs(outs, refs):
    return [float((o.double() - r.double()).abs().max()) for o, r in zip(outs, refs)]


def check_spec(ck):
    print("--- 1. schedule and FLOPs")
    ck.check([A.dilation(i) for i in range(8)] == [1, 1, 1, 1, 2, 2, 4, 4],
             "dilations of blocks 0..7 are 1,1,1,1,2,2,4,4")
    ck.check(A.dilation(23) == 1024 and A.receptive_radius(24) == 8192
             and A.receptive_radius(24) == R.receptive_radius(24),
             f"published size: last dilation {A.dilation(23)}, radius {A.receptive_radius(24)}")
    ck.check(A.shortcut_layers(24) == [24, 20, 16, 12, 8, 4] and A.shortcut_layers(6) == [6, 2],
             f"shortcut layers {A.shortcut_layers(24)} (24 blocks), {A.shortcut_layers(6)} (6)")
    N, D, L, O, T, B = 24, 1024, 20480, 4096, 498, 2
    want = N * B * L * (16 * D * D + 10 * D) + 8 * B * L * D + 6 * 2 * B * O * D * T
    ck.check(A.forward_flops(N, D, L, O, T, B) == want,
             f"forward FLOPs at the published size, batch 2: {A.forward_flops(N, D, L, O, T, B)}")
    # The FFN and head terms are 2 x (multiply-adds of the Linear layers the module holds).
    net = A.PromoterAINet(4, 6, [5], 8)
    macs = sum(m.weight.numel() for b in net.blocks for m in (b.ffn1, b.ffn2))
    head_macs = sum(m.weight.numel() for m in net.heads[0].values())
    ck.check(16 * 6 * 6 * 4 == 2 * macs and 2 * head_macs == 2 * 6 * 5,
             "16 D^2 per block-position and 2 D T per head-position match the module's weights")


def compare_eval(ck, tmp, extra, seed):
    radius = R.receptive_radius(N_BLOCKS)
    L = OUTPUT_LENGTH + 2 * radius + extra
    folder = os.path.join(tmp, f"model_extra{extra}")
    rng = np.random.default_rng(seed)
    x = make_x(rng, L, N_SEQS)
    R.write_random_model(folder, N_BLOCKS, DIM, OUTPUT_DIMS, L, OUTPUT_LENGTH,
                         ["human", "mouse"], seed=seed)
    ref = R.load_model(folder)
    with torch.no_grad():
        want64 = ref.heads(x, torch.float64)
        want32 = ref.heads(x, torch.float32)
    label = f"L {L} = O {OUTPUT_LENGTH} + 2*radius {radius} + {extra}"
    print(f"--- 2. eval mode, {label}")
    scale = max(float(w.abs().max()) for w in want64)
    nonzero = min(float((w != 0).double().mean()) for w in want64)
    ck.check(scale > 0.05 and nonzero > 0.2,
             f"{label}: reference outputs are non-trivial (max {scale:.3f}, "
             f"{100 * nonzero:.0f}% non-zero)")

    net = A.net_from_reference(ref).eval()
    ck.check(net.dilations == [A.dilation(i) for i in range(N_BLOCKS)]
             and [b.dwconv.dilation[0] for b in net.blocks] == [1, 1, 1, 1, 2, 2, 4, 4]
             and [b.dwconv.padding[0] for b in net.blocks] == [2, 2, 2, 2, 4, 4, 8, 8],
             f"{label}: depthwise convolutions have the spec's dilation and padding")
    with torch.no_grad():
        got32 = net(x)
        got64 = net.double()(x.double())
    shapes = [tuple(g.shape) for g in got64]
    ck.check(shapes == [(N_SEQS, OUTPUT_LENGTH, T) for T in OUTPUT_DIMS],
             f"{label}: head shapes {shapes}")
    if shapes != [(N_SEQS, OUTPUT_LENGTH, T) for T in OUTPUT_DIMS]:
        return ref, x
    d64 = max_diffs(got64, want64)
    d32 = max_diffs(got32, want32)
    d32_vs64 = max_diffs(got32, want64)
    ck.check(max(d64) <= TOL64, f"{label}: float64 heads max abs diff "
                                f"{', '.join(f'{d:.2e}' for d in d64)} (tol {TOL64})")
    ck.check(max(d32) <= TOL32 and max(d32_vs64) <= TOL32,
             f"{label}: float32 heads max abs diff {', '.join(f'{d:.2e}' for d in d32)} vs the "
             f"float32 reference, {', '.join(f'{d:.2e}' for d in d32_vs64)} vs float64 "
             f"(tol {TOL32})")

    # 3. Mutants: each must be caught by the comparison above.
    class ShiftedCrop(A.PromoterAINet):
        def crop(self, L):
            return super().crop(L) + 1

    mutants = [
        ("all dilations 1", dict(dilations=[1] * N_BLOCKS)),
        ("dilation 2^(i//2)", dict(dilations=[2 ** (i // 2) for i in range(N_BLOCKS)])),
        ("blocks 0 and 1 with dilation 2",
         dict(dilations=[2, 2] + [A.dilation(i) for i in range(2, N_BLOCKS)])),
    ]
    for name, kw in mutants:
        mutant = A.PromoterAINet(N_BLOCKS, DIM, OUTPUT_DIMS, OUTPUT_LENGTH,
                                 eps=ref.bn_epsilon, **kw)
        A.copy_from_reference(mutant, ref)
        with torch.no_grad():
            d = max(max_diffs(mutant.double().eval()(x.double()), want64))
        ck.check(d > MUTANT_MIN_DIFF, f"{label}: mutant '{name}' is caught (max diff {d:.2e})")
    mutant = A.copy_from_reference(ShiftedCrop(N_BLOCKS, DIM, OUTPUT_DIMS, OUTPUT_LENGTH,
                                               eps=ref.bn_epsilon), ref)
    with torch.no_grad():
        d = max(max_diffs(mutant.double().eval()(x.double()), want64))
    ck.check(d > MUTANT_MIN_DIFF, f"{label}: mutant 'crop shifted by 1' is caught "
                                  f"(max diff {d:.2e})")
    return ref, x


class BatchStatsRef(R.RefModel):
    """The reference forward with training-mode batch norm: statistics of v over batch and
    positions, biased variance, eps from the file."""

    def __init__(self, ref):
        super().__init__({"num_blocks": ref.num_blocks, "model_dim": ref.model_dim,
                          "input_length": ref.input_length, "output_length": ref.output_length,
                          "output_dims": ref.output_dims, "head_names": ref.head_names,
                          "bn_epsilon": ref.bn_epsilon}, ref.weights)

    def _bn(self, v, prefix, dtype):
        mean = v.mean(dim=(0, 1))
        var = ((v - mean) ** 2).mean(dim=(0, 1))
        gamma = self._w(prefix + "/gamma", dtype)
        beta = self._w(prefix + "/beta", dtype)
        return (v - mean) / torch.sqrt(var + self.bn_epsilon) * gamma + beta


def check_train_mode(ck, ref, x):
    print("--- 4. train mode")
    net = A.net_from_reference(ref).double().train()
    with torch.no_grad():
        got = net(x.double())
        want = BatchStatsRef(ref).heads(x, torch.float64)
    d = max_diffs(got, want)
    ck.check(max(d) <= TOL64, f"train-mode heads vs hand-written batch-stat reference: max abs "
                              f"diff {', '.join(f'{v:.2e}' for v in d)} (tol {TOL64})")

    # Momentum: fresh moving statistics (mean 0), one train-mode forward.
    net = A.net_from_reference(ref).double().train()     # non-trivial weights...
    inputs = {}
    bns = []
    for i, b in enumerate(net.blocks):
        for name in ("bn1", "bn2"):
            bn = getattr(b, name)
            bn.running_mean.zero_()          # ...but moving statistics start at 0 and 1
            bn.running_var.fill_(1.0)
            bns.append((f"block_{i}/{name}", bn))
            bn.register_forward_hook(
                lambda mod, inp, out, key=f"block_{i}/{name}": inputs.__setitem__(key, inp[0]))
    with torch.no_grad():
        net(x.double())
    worst_mean = worst_var = 0.0
    for key, bn in bns:
        v = inputs[key]                      # (B*L, D)
        worst_mean = max(worst_mean, float((bn.running_mean - 0.01 * v.mean(0)).abs().max()))
        # torch updates the moving variance with the unbiased batch variance.
        worst_var = max(worst_var, float((bn.running_var - (0.99 + 0.01 * v.var(0, unbiased=True)))
                                         .abs().max()))
    stem_mean = torch.relu(x.double() @ torch.from_numpy(ref.weights["stem/kernel"]).double()
                           + torch.from_numpy(ref.weights["stem/bias"]).double()).mean(dim=(0, 1))
    d_stem = float((net.blocks[0].bn1.running_mean - 0.01 * stem_mean).abs().max())
    ck.check(worst_mean <= MOMENTUM_TOL and d_stem <= MOMENTUM_TOL,
             f"after one train-mode forward every moving mean = 0.01 * batch mean (max diff "
             f"{worst_mean:.1e}; block 0 bn1 vs the hand-computed stem mean {d_stem:.1e}; "
             f"tol {MOMENTUM_TOL})")
    ck.check(worst_var <= MOMENTUM_TOL,
             f"moving variance = 0.99 * 1 + 0.01 * batch variance (torch's unbiased; max diff "
             f"{worst_var:.1e})")


def check_script(ck, tmp):
    print("--- 5. the script")
    script = os.path.join(ROOT, "bench", "torch_anchor.py")
    out = os.path.join(tmp, "anchor.json")
    cmd = [sys.executable, script, "--device", "cpu", "--blocks", "4", "--dim", "16",
           "--input_length", "256", "--output_length", "128", "--tracks", "5",
           "--forward_batch", "2,3", "--train_batch", "2", "--twin_variants", "2",
           "--warmup", "1", "--iters", "2", "--threads", "1", "--clipnorm", "1e-4",
           "--json", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    print("\n".join("  | " + line for line in proc.stdout.strip().splitlines()[-8:]))
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
    if not ck.check(proc.returncode == 0 and os.path.isfile(out),
                    f"tiny CPU run exits 0 and writes JSON (rc {proc.returncode})"):
        return
    with open(out) as fh:
        doc = json.load(fh)
    status = {(r["mode"], r["batch"]): r["status"] for r in doc["results"]}
    compile_want = "ok" if hasattr(torch, "compile") else "unavailable"
    want = {("forward", 2): "ok", ("forward", 3): "ok", ("twin", 2): "ok",
            ("train_eager", 2): "ok", ("train_compile", 2): compile_want}
    ck.check(status == want, f"statuses {status}")
    rec = {(r["mode"], r["batch"]): r for r in doc["results"]}
    f3 = A.forward_flops(4, 16, 256, 128, 5, 3)
    ck.check(rec[("forward", 3)]["flops_per_step"] == f3
             and rec[("twin", 2)]["flops_per_step"] == A.forward_flops(4, 16, 256, 128, 5, 4)
             and rec[("train_eager", 2)]["flops_per_step"] == 3 * A.forward_flops(
                 4, 16, 256, 128, 5, 2),
             "FLOPs per step: forward, twin (2 sequences per variant), training (3x forward)")
    ok_recs = [r for r in doc["results"] if r["status"] == "ok"]
    ck.check(all(r["median_s"] > 0 and r["throughput"] > 0 and r["iters"] == 2 for r in ok_recs)
             and "| mode | batch |" in proc.stdout,
             "timings, throughputs and the markdown table are reported")

    bad = subprocess.run([sys.executable, script, "--device", "cpu", "--blocks", "4",
                          "--input_length", "142", "--output_length", "128"],
                         capture_output=True, text=True, timeout=60)
    ck.check(bad.returncode != 0 and "radius is 8" in bad.stderr,
             f"L < O + 2*radius is rejected with a clear message (rc {bad.returncode})")

    # OOM and time-budget handling, driven directly (no GPU here).
    try:
        args = A.parse_args(["--device", "cpu", "--blocks", "4", "--dim", "8",
                             "--input_length", "144", "--output_length", "128", "--tracks", "3",
                             "--iters", "1", "--warmup", "0"])
    except SystemExit:
        ck.check(False, "the anchor accepts L = O + 2*radius (144 = 128 + 2*8 for 4 blocks)")
        return
    net = A.PromoterAINet(4, 8, [3], 128)
    bench = A.Bench(args, torch.device("cpu"), net, time.perf_counter())

    def oom(rec):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
    r1 = bench.measure("train_eager", 8, oom, 1, 8, "samples/s")
    r2 = bench.forward(2)
    ck.check(r1["status"] == "OOM" and "median_s" not in r1 and r2["status"] == "ok",
             f"an out-of-memory error is recorded as {r1['status']!r} and the next measurement "
             f"runs ({r2['status']})")
    bench.deadline = time.perf_counter() - 1.0
    r3 = bench.train(2, compiled=False)
    ck.check(r3["status"] == "skipped", f"past the time budget a measurement is {r3['status']!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", help="ignored; accepted so all tests share one command line")
    ap.parse_args()
    torch.set_num_threads(2)
    ck = Checker()
    check_spec(ck)
    with tempfile.TemporaryDirectory() as tmp:
        ref, x = compare_eval(ck, tmp, extra=0, seed=11)
        compare_eval(ck, tmp, extra=10, seed=12)
        check_train_mode(ck, ref, x)
        check_script(ck, tmp)
    return ck.finish()


if __name__ == "__main__":
    sys.exit(main())
