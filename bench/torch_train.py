#!/usr/bin/env python3
"""Training throughput of the PromoterAI architecture (REFERENCE.md sections 2 and 5) in PyTorch,
float32 on the CPU, random weights and data: the yardstick `bench_train` is compared with. One step
= forward with training-mode batch norm (statistics over batch and positions, eps 1e-3, momentum
0.01 in torch's convention), the weighted MSE of head 0, backward, per-tensor gradient clipping and
AdamW (torch's; the Keras epsilon placement costs the same).
  torch_train.py N D L O T batch [steps] [threads]"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, D, dil):
        super().__init__()
        self.bn1 = nn.BatchNorm1d(D, eps=1e-3, momentum=0.01)
        self.dw = nn.Conv1d(D, D, 5, dilation=dil, padding=2 * dil, groups=D)
        self.bn2 = nn.BatchNorm1d(D, eps=1e-3, momentum=0.01)
        self.ffn1 = nn.Linear(D, 4 * D)
        self.ffn2 = nn.Linear(4 * D, D)

    def forward(self, x):                      # x: (B, D, L)
        m = x + self.dw(self.bn1(x))
        g = self.bn2(m).transpose(1, 2)        # (B, L, D)
        return m + self.ffn2(F.relu(self.ffn1(g))).transpose(1, 2)


class Net(nn.Module):
    def __init__(self, N, D, O, T):
        super().__init__()
        self.stem = nn.Linear(4, D)
        self.blocks = nn.ModuleList(Block(D, max(1, 2 ** (i // 2 - 1))) for i in range(N))
        self.shortcuts = list(range(N, 0, -4))
        self.proj = nn.ModuleDict({str(s): nn.Linear(D, T) for s in self.shortcuts})
        self.O = O

    def forward(self, x):                      # x: (B, L, 4)
        h = F.relu(self.stem(x)).transpose(1, 2)
        L = h.shape[2]
        crop = (L - self.O) // 2
        out = 0
        for i, blk in enumerate(self.blocks):
            h = blk(h)
            if str(i + 1) in self.proj:
                out = out + F.relu(self.proj[str(i + 1)](h[:, :, crop:crop + self.O].transpose(1, 2)))
        return out / len(self.shortcuts)


def main():
    N, D, L, O, T, B = (int(v) for v in sys.argv[1:7])
    steps = int(sys.argv[7]) if len(sys.argv) > 7 else 3
    threads = int(sys.argv[8]) if len(sys.argv) > 8 else torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Net(N, D, O, T)
    opt = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=5e-6, eps=1e-7)
    x = F.one_hot(torch.randint(0, 4, (B, L)), 4).float()
    y = torch.rand(B, O, T)
    t0 = 0.0
    for s in range(steps + 1):
        if s == 1:
            t0 = time.perf_counter()           # step 0 warms up
        opt.zero_grad()
        w = x.amax(dim=(1, 2))
        loss = (w * ((net(x) - y) ** 2).mean(dim=(1, 2))).sum() / B
        loss.backward()
        for p in net.parameters():
            torch.nn.utils.clip_grad_norm_([p], 1e-4)
        opt.step()
    dt = time.perf_counter() - t0
    print(f"torch_train N {N} D {D} L {L} O {O} T {T} batch {B} threads {threads}: "
          f"{B * steps / dt:.2f} samples/s ({dt / steps:.3f} s/step, torch {torch.__version__})")


if __name__ == "__main__":
    main()
