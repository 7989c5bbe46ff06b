"""Self-check of the independent reference (tests/ref/promoterai_ref.py); needs no C binary.

Checks, each against something other than the reference's own torch code path:
  1. encode/revcomp against hand-written expectations of REFERENCE.md section 1
     (channel order ACGT, lower case counts, other letters zero, revcomp = flip both axes).
  2. RefModel.heads against a deliberately naive float64 numpy implementation of section 2
     (explicit loops over positions and taps for the depthwise convolution, explicit BN formula),
     on tiny models, one per writer variant (int64 + variable-length strings, int32 + fixed-length
     strings), including a block count that is not a multiple of 4.
  3. The receptive radius 2*sum(d_i) of section 2.4: a change of one input base moves an output
     at distance exactly radius, and none farther away; and a window of length O + 2*radius cut
     from a longer sequence reproduces the long sequence's outputs exactly (translation
     equivariance; padding never reaches the kept outputs).
  4. Variant sequence construction of section 3 on a hand-made genome (SNV, deletion with N
     right-padding, insertion truncation, strand -1, N-padding beyond chromosome ends, the
     unscorable cases), twin score of alt == ref is exactly 0, and the float32 reference
     agrees with the float64 one.
  5. score_from_raw / format_score: round half to even at the 4th decimal, -0.0000 -> 0.0000.
Usage: /usr/bin/python3 tests/test_reference_self.py [--bin DIR (ignored)]
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import promoterai_ref as R  # noqa: E402

FAILURES = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
    if not ok:
        FAILURES.append(what)


# --------------------------------------------------------------------------------------------
# Naive numpy forward pass (float64), written independently of promoterai_ref.RefModel
# --------------------------------------------------------------------------------------------

def naive_heads(folder, x):
    """x: [L, 4] float64. Returns list of [O, T_j] float64 arrays."""
    import h5py
    with h5py.File(os.path.join(folder, "model.h5"), "r") as f:
        N = int(np.asarray(f.attrs["num_blocks"]))
        L_model = int(np.asarray(f.attrs["input_length"]))
        O = int(np.asarray(f.attrs["output_length"]))
        dims = [int(v) for v in np.asarray(f.attrs["output_dims"]).reshape(-1)]
        eps = float(np.asarray(f.attrs["bn_epsilon"]))
        w = {}
        f.visititems(lambda n, o: w.__setitem__(n, np.asarray(o[()], dtype=np.float64))
                     if isinstance(o, h5py.Dataset) else None)
    L = x.shape[0]
    assert L == L_model

    def bn(v, p):
        return (v - w[p + "/moving_mean"]) / np.sqrt(w[p + "/moving_variance"] + eps) \
            * w[p + "/gamma"] + w[p + "/beta"]

    layer = np.maximum(x @ w["stem/kernel"] + w["stem/bias"], 0.0)
    layers = [layer]
    for i in range(N):
        d = max(1, 2 ** (i // 2 - 1)) if i >= 2 else 1
        p = f"block_{i}"
        h = bn(layer, p + "/bn1")
        conv = np.zeros_like(h)
        K = w[p + "/dwconv/kernel"]
        for pos in range(L):
            acc = w[p + "/dwconv/bias"].copy()
            for k in range(5):
                q = pos + (k - 2) * d
                if 0 <= q < L:
                    acc += K[k] * h[q]
            conv[pos] = acc
        m = layer + conv
        g = bn(m, p + "/bn2")
        g = np.maximum(g @ w[p + "/ffn1/kernel"] + w[p + "/ffn1/bias"], 0.0)
        g = g @ w[p + "/ffn2/kernel"] + w[p + "/ffn2/bias"]
        layer = m + g
        layers.append(layer)
    crop = (L - O) // 2
    outs = []
    for j in range(len(dims)):
        s_list = [s for s in range(N, 0, -4)]
        acc = 0.0
        for s in s_list:
            acc = acc + np.maximum(layers[s] @ w[f"head_{j}/proj_{s}/kernel"]
                                   + w[f"head_{j}/proj_{s}/bias"], 0.0)
        outs.append((acc / len(s_list))[crop:crop + O])
    return outs


def random_seq(rng, L, alphabet="ACGTacgtNRY"):
    return "".join(rng.choice(list(alphabet), L))


def test_encoding():
    e = R.encode("ACGTacgtNRYn-")
    expect = np.zeros((13, 4), np.float32)
    for k, c in enumerate("ACGTACGT"):
        expect[k, "ACGT".index(c)] = 1
    check(np.array_equal(e, expect), "encode: ACGT/acgt one-hot, N R Y n - all-zero rows")
    rng = np.random.default_rng(1)
    s = random_seq(rng, 200)
    check(np.array_equal(R.encode(R.revcomp(s)), R.encode(s)[::-1, ::-1]),
          "encode(revcomp(s)) == encode(s) flipped on both axes")
    check(R.revcomp("AACgtN") == "NacGTT", "revcomp of a literal")


def test_forward_vs_naive(tmp):
    rng = np.random.default_rng(7)
    cases = [
        # N, D, dims, O, extra input beyond O + 2r, int dtype, vlen strings
        (4, 5, [3], 6, 0, np.int64, True),
        (6, 4, [2, 3], 4, 10, np.int32, False),   # N not a multiple of 4: layers 6, 2
        (8, 3, [2], 8, -30, np.int64, True),      # input shorter than O + 2r: padding reaches
    ]
    for n, (N, D, dims, O, extra, idt, vlen) in enumerate(cases):
        L = O + 2 * R.receptive_radius(N) + extra
        folder = os.path.join(tmp, f"naive{n}")
        names = ["human", "mouse"][:len(dims)]
        R.write_random_model(folder, N, D, dims, L, O, names, seed=100 + n,
                             int_dtype=idt, vlen_strings=vlen)
        model = R.load_model(folder)
        check(model.head_names == names and model.output_dims == dims,
              f"load_model reads head_names {model.head_names} and output_dims "
              f"({np.dtype(idt).name}, {'vlen' if vlen else 'fixed'} strings)")
        seqs = [random_seq(rng, L) for _ in range(2)]
        x = torch.from_numpy(np.stack([R.encode(s) for s in seqs]))
        got64 = model.heads(x, torch.float64)
        got32 = model.heads(x, torch.float32)
        for b, s in enumerate(seqs):
            ref = naive_heads(folder, R.encode(s).astype(np.float64))
            for j in range(len(dims)):
                err = np.abs(got64[j][b].numpy() - ref[j]).max()
                err32 = np.abs(got32[j][b].double().numpy() - ref[j]).max()
                scale = np.abs(ref[j]).max()
                # float64 vs float64 with a different summation order: ~1e-15 relative.
                check(err <= 1e-12 * max(1.0, scale),
                      f"case {n} seq {b} head {j}: torch f64 vs naive max abs err {err:.2e} "
                      f"(tol 1e-12 x scale {scale:.3f})")
                # float32 torch: a few hundred ulps of the O(1) activations at most.
                check(err32 <= 1e-5 * max(1.0, scale),
                      f"case {n} seq {b} head {j}: torch f32 vs naive max abs err {err32:.2e} "
                      f"(tol 1e-5 x scale)")


def test_receptive_field(tmp):
    N, D, O_model = 8, 6, 8
    r = R.receptive_radius(N)
    check(r == 2 * (1 + 1 + 1 + 1 + 2 + 2 + 4 + 4) and R.receptive_radius(24) == 8192,
          f"receptive_radius(8) = {r}, receptive_radius(24) = {R.receptive_radius(24)} (8192)")
    # Long model: O = Llong - 2r over a long sequence; perturb one base in the middle.
    Llong = 3 * 2 * r + 2
    folder = os.path.join(tmp, "rf_long")
    R.write_random_model(folder, N, D, [3], Llong, Llong, ["human"], seed=5)
    long_model = R.load_model(folder)
    rng = np.random.default_rng(3)
    s = random_seq(rng, Llong, "ACGT")
    c = Llong // 2
    s2 = s[:c] + {"A": "C", "C": "G", "G": "T", "T": "A"}[s[c]] + s[c + 1:]
    x = torch.from_numpy(np.stack([R.encode(s), R.encode(s2)]))
    h = long_model.heads_uncropped(x, torch.float64)[0]
    diff = (h[0] - h[1]).abs().max(dim=1).values.numpy()
    changed = np.nonzero(diff > 1e-12)[0]
    check(changed.min() == c - r and changed.max() == c + r,
          f"one changed base moves outputs exactly within +-radius ({changed.min() - c}.."
          f"{changed.max() - c}, radius {r})")
    # Window model: same weights, input O + 2r; its outputs equal the long outputs.
    L = O_model + 2 * r
    wfolder = os.path.join(tmp, "rf_win")
    R.write_random_model(wfolder, N, D, [3], L, O_model, ["human"], seed=5)
    win_model = R.load_model(wfolder)
    worst = 0.0
    for start in (0, 7, Llong - L):
        xw = torch.from_numpy(R.encode(s[start:start + L])[None])
        hw = win_model.heads(xw, torch.float64)[0][0]
        hl = h[0][start + r:start + r + O_model]
        worst = max(worst, (hw - hl).abs().max().item())
    # Same positions, same arithmetic on identical inputs: exact up to float64 summation order.
    check(worst <= 1e-12, f"window O+2r reproduces long-sequence outputs, max abs err {worst:.2e}")


def test_variants(tmp):
    L = 16
    chrom = "ACGTACGTAAcgtacgTTTTGGGGCCCCAAAA"     # 32 bp, positions 1..32
    genome = {"c1": chrom}
    # SNV at pos 11 (0-based 10, 'c'), window = chrom[2:18].
    r, a, why = R.variant_sequences(genome, "c1", 11, "C", "t", "1", L)
    check(why is None and r == chrom[2:18] and a == chrom[2:10] + "t" + chrom[11:18],
          "SNV window and alt (lower-case genome base, lower-case alt accepted)")
    # Deletion: ref 'cgt' at pos 11 -> pulled left, right-padded with N.
    r, a, why = R.variant_sequences(genome, "c1", 11, "CGT", "C", "+", L)
    check(why is None and a == chrom[2:10] + "C" + chrom[13:18] + "NN",
          "deletion pulls downstream bases left and pads with N")
    # Insertion: pushed out and truncated.
    r, a, why = R.variant_sequences(genome, "c1", 11, "c", "CAAA", "1", L)
    check(why is None and a == (chrom[2:10] + "CAAA" + chrom[11:18])[:L] and len(a) == L,
          "insertion pushes downstream bases out, truncated to L")
    # Strand -1: both reverse complemented.
    r2, a2, why = R.variant_sequences(genome, "c1", 11, "C", "T", "-1", L)
    check(why is None and r2 == R.revcomp(chrom[2:18]) and
          a2 == R.revcomp(chrom[2:10] + "T" + chrom[11:18]), "strand -1 reverse complements both")
    # Near the start: N padding on the left.
    r, a, why = R.variant_sequences(genome, "c1", 2, "C", "G", "1", L)
    check(why is None and r == "N" * 7 + chrom[:9], "window before position 1 is N-padded")
    # Near the end: N padding on the right.
    r, a, why = R.variant_sequences(genome, "c1", 31, "A", "G", "1", L)
    check(why is None and r == chrom[22:] + "N" * 6, "window past the end is N-padded")
    bad = [("c1", 11, "A", "G", "1", "ref mismatch"),
           ("c1", 11, "C", "N", "1", "alt N"),
           ("c1", 11, "C", "-", "1", "alt -"),
           ("c1", 11, "C", "", "1", "alt empty"),
           ("c1", 11, "-", "A", "1", "ref -"),
           ("c9", 11, "C", "A", "1", "chromosome absent"),
           ("c1", 32, "AG", "A", "1", "ref runs past the chromosome end")]
    for c, p, rf, al, st, what in bad:
        _, _, why = R.variant_sequences(genome, c, p, rf, al, st, L)
        check(why is not None, f"unscorable: {what} ({why})")

    # Twin scores: alt == ref gives exactly 0; float32 agrees with float64.
    N, O = 4, 8
    Lm = O + 2 * R.receptive_radius(N)
    folder = os.path.join(tmp, "twin")
    R.write_random_model(folder, N, 6, [3, 2], Lm, O, ["human", "mouse"], seed=11)
    model = R.load_model(folder)
    rng = np.random.default_rng(2)
    fasta = os.path.join(tmp, "g.fa")
    seq = "".join(rng.choice(list("ACGT"), 200))
    with open(fasta, "w") as fh:
        fh.write(">chrZ description\n" + "\n".join(seq[i:i + 60] for i in range(0, 200, 60)) + "\n")
    variants = [dict(chrom="chrZ", pos=100, ref=seq[99], alt=seq[99], strand="1"),
                dict(chrom="chrZ", pos=100, ref=seq[99], alt="ACG"[("ACGT".index(seq[99]) + 1) % 3],
                     strand="-"),
                dict(chrom="chrZ", pos=3, ref=seq[2:5], alt=seq[2], strand="1")]
    s64 = R.twin_scores(model, fasta, variants, Lm)
    s32 = R.twin_scores(model, fasta, variants, Lm, dtype=torch.float32)
    check(s64[0][0] == 0.0, "twin score of alt == ref is exactly 0")
    err = max(abs(a[0] - b[0]) for a, b in zip(s64, s32))
    check(all(v[0] is not None for v in s64) and err < 1e-6,
          f"twin float32 vs float64 max abs err {err:.2e} (tol 1e-6: O(1) outputs, f32 eps 6e-8)")
    check(all(v[0] != 0.0 for v in s64[1:]), f"non-trivial raw scores {[v[0] for v in s64]}")


def test_score_format():
    check(R.format_score(R.score_from_raw(-1e-9)) == "0.0000", "-0.0000 printed as 0.0000")
    # Exact binary halves at the 4th decimal: 1/32 = 0.03125 -> 0.0312 and 3/32 = 0.09375 ->
    # 0.0938 (half to even; half away from zero would give 0.0313).
    check(R.score_from_raw(0.03125) == float(np.tanh(np.float64(0.0312))), "0.03125 -> 0.0312")
    check(R.score_from_raw(0.09375) == float(np.tanh(np.float64(0.0938))), "0.09375 -> 0.0938")
    check(R.score_from_raw(0.123449) == float(np.tanh(np.float64(0.1234))), "round down below half")
    check(R.score_from_raw(-0.123451) == float(np.tanh(np.float64(-0.1235))), "negative rounding")
    check(R.format_score(R.score_from_raw(5.0)) == "0.9999", "tanh(5) = 0.99991 -> 0.9999")
    check(R.score_near_boundary(0.00125 + 1e-7) and not R.score_near_boundary(0.00121),
          "rounding-boundary detector")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", help="ignored; accepted so all tests share one command line")
    ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        test_encoding()
        test_forward_vs_naive(tmp)
        test_receptive_field(tmp)
        test_variants(tmp)
        test_score_format()
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all reference self-checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
