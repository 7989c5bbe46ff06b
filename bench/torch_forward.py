#!/usr/bin/env python3
"""Forward throughput of the PromoterAI architecture (REFERENCE.md section 2) in PyTorch, float32,
random weights, at a given shape and thread count: the yardstick the C forward is compared with.
Computes all L positions, as a framework implementation does.
  torch_forward.py N D L O T [batch] [repeats] [threads]"""
import sys
import time

import torch
import torch.nn.functional as F


def main():
    N, D, L, O, T = (int(v) for v in sys.argv[1:6])
    B = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    reps = int(sys.argv[7]) if len(sys.argv) > 7 else 3
    threads = int(sys.argv[8]) if len(sys.argv) > 8 else torch.get_num_threads()
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    r = lambda *s, scale=0.05: torch.randn(*s, generator=g) * scale
    stem_w, stem_b = r(4, D), r(D)
    blocks = [dict(s1=1 + r(D), t1=r(D), dw=r(D, 1, 5, scale=0.2), dwb=r(D), s2=1 + r(D), t2=r(D),
                   w1=r(D, 4 * D), b1=r(4 * D), w2=r(4 * D, D), b2=r(D)) for _ in range(N)]
    shortcuts = [s for s in range(N, 0, -4)]
    proj = {s: (r(D, T), r(T)) for s in shortcuts}
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (B, L), generator=g), 4).float()
    crop = (L - O) // 2

    def forward(x):
        h = torch.relu(x @ stem_w + stem_b)                      # (B, L, D)
        out = 0
        for i, p in enumerate(blocks):
            d = max(1, 2 ** (i // 2 - 1))
            a = (h * p["s1"] + p["t1"]).transpose(1, 2)          # inference BN as affine
            a = F.conv1d(a, p["dw"], p["dwb"], padding=2 * d, dilation=d, groups=D)
            m = h + a.transpose(1, 2)
            g2 = torch.relu((m * p["s2"] + p["t2"]) @ p["w1"] + p["b1"])
            h = m + g2 @ p["w2"] + p["b2"]
            if i + 1 in proj:
                w, b = proj[i + 1]
                out = out + torch.relu(h[:, crop:crop + O] @ w + b)
        return out / len(shortcuts)

    with torch.inference_mode():
        forward(x)
        best = min(_time(forward, x) for _ in range(reps))
    flops = B * N * L * (16.0 * D * D + 10.0 * D)
    print(f"torch {torch.__version__} N={N} D={D} L={L} O={O} T={T} batch={B} threads={threads}: "
          f"{best:.4f} s, {B * O / best:.0f} output positions/s, {B / best:.3f} seq/s, "
          f"{flops / best * 1e-9:.1f} GFLOP/s")


def _time(f, x):
    t0 = time.perf_counter()
    f(x)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
