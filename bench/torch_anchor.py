#!/usr/bin/env python3
"""PyTorch anchor benchmark: the PromoterAI architecture (REFERENCE.md section 2) as a plain
PyTorch nn.Module, timed on one GPU, to give the figures the project's CUDA backend is compared
with.

What it measures (random weights and random data; every figure at the given shape):
  forward        inference: eval-mode batch norm (moving statistics), torch.inference_mode,
                 bf16 autocast on CUDA (float32 on the CPU); sequences/s.
  train_eager    one training step (REFERENCE.md section 5): train-mode batch norm (batch
                 statistics over batch and positions, moving = 0.99 moving + 0.01 batch), bf16
                 autocast, MSE of head 0 against random targets, backward, AdamW (lr 5e-4, betas
                 0.9/0.999, eps 1e-7, weight decay 5e-6); samples/s. No gradient clipping
                 unless --clipnorm is given (then each gradient tensor is clipped to that L2
                 norm, as the published training does with 1e-4).
  train_compile  the same step with the module wrapped in torch.compile (default mode, static
                 shapes, compiled afresh for each batch size; the optimizer step stays eager).
                 The first step's wall time (which includes compilation) is reported separately
                 from the steady-state step time. Recorded as unavailable on a torch without
                 torch.compile.
  twin           naive twin variant scoring: two full windows (ref and alt) per variant, i.e. one
                 forward over 2 V sequences plus the mean difference of head 0; variants/s.

Timing: warm-up steps first, then --iters timed steps, each bracketed by torch.cuda.synchronize;
the median (and the best) step time is reported. Peak GPU memory per measurement is
torch.cuda.max_memory_allocated after torch.cuda.reset_peak_memory_stats (model, gradients and
optimizer state included). An out-of-memory error at one batch size is recorded as "OOM" and the
run goes on. Measurements that would start after --time_budget seconds (counted from the script's
start) are skipped with a note, and timed loops stop early (after one step) once it is exceeded;
a measurement already started still finishes, and a torch.compile one can take minutes, which is
why train_compile runs last and the default budget (420 s) leaves room in a 10-minute command.

FLOPs (model FLOPs, the work of the full-length computation as PyTorch does it, counting a
multiply-add as 2): per forward N B L (16 D^2 + 10 D) + stem 8 B L D + heads n_short 2 B O D T
(heads on the cropped O positions only), n_short = len({N, N-4, ...} > 0); a training step counts
3x the forward. MFU = achieved FLOP/s / peak dense bf16 tensor FLOP/s (--peak_tflops, otherwise
guessed from the device name: H100 SXM 989.4, H100 PCIe 756, H200 989.4 TFLOP/s).

On the GPU (published size N 24, D 1024, L 20480, O 4096, T 498; fits a 10-minute command):
    python3 bench/torch_anchor.py --json torch_anchor.json
A tiny CPU smoke run:
    python3 bench/torch_anchor.py --device cpu --blocks 4 --dim 16 --input_length 256 \\
        --output_length 128 --tracks 5 --forward_batch 2 --train_batch 2 --warmup 1 --iters 2

The module can also take the weights of a model folder read by the project's test reference
(copy_from_reference), which is how tests/test_torch_anchor.py checks the architecture.
"""

import argparse
import contextlib
import gc
import importlib
import json
import platform
import statistics
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

KERNEL_SIZE = 5
SHORTCUT_FREQ = 4
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.01          # torch convention: moving = (1 - 0.01) * moving + 0.01 * batch
ALL_MODES = ("forward", "twin", "train_eager", "train_compile")

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name.
# First match wins, so the more specific names come first. Anything else: --peak_tflops.
PEAK_BF16_TFLOPS = (
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.5),
    ("H100 80GB HBM3", 989.4),   # the SXM5 board's name
    ("H100 SXM", 989.4),
    ("A100", 312.0),
)


# --------------------------------------------------------------------------------------------
# Architecture (REFERENCE.md section 2)
# --------------------------------------------------------------------------------------------

def dilation(i):
    """d_i = max(1, 2^(floor(i/2) - 1)): 1, 1, 1, 1, 2, 2, 4, 4, ..."""
    return 1 if i < 2 else 2 ** (i // 2 - 1)


def receptive_radius(num_blocks):
    return 2 * sum(dilation(i) for i in range(num_blocks))


def shortcut_layers(num_blocks):
    """Layers feeding the heads: s in {N, N-4, ...} while s > 0."""
    return list(range(num_blocks, 0, -SHORTCUT_FREQ))


class Block(nn.Module):
    """x -> m = x + dwconv(BN1(x)); out = m + W2 ReLU(W1 BN2(m)). Activations (B, L, D)."""

    def __init__(self, dim, dil, eps=BN_EPSILON):
        super().__init__()
        # Batch norm is applied to the (B*L, D) view: statistics over batch and positions, per
        # channel, with no transpose. Train mode normalizes with the biased batch variance, as
        # Keras does; torch's moving-variance update uses the unbiased one (Keras: biased), a
        # factor n/(n-1) with n = B*L positions, immaterial for timing.
        self.bn1 = nn.BatchNorm1d(dim, eps=eps, momentum=BN_MOMENTUM)
        self.dwconv = nn.Conv1d(dim, dim, KERNEL_SIZE, dilation=dil,
                                padding=(KERNEL_SIZE // 2) * dil, groups=dim)
        self.bn2 = nn.BatchNorm1d(dim, eps=eps, momentum=BN_MOMENTUM)
        self.ffn1 = nn.Linear(dim, 4 * dim)
        self.ffn2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        B, L, D = x.shape
        h = self.bn1(x.reshape(B * L, D)).view(B, L, D)
        # The depthwise convolution runs on the transposed view (B, D, L), which is a
        # channels-last layout; torch picks the kernel.
        h = self.dwconv(h.transpose(1, 2)).transpose(1, 2)
        m = x + h
        g = self.bn2(m.reshape(B * L, D)).view(B, L, D)
        g = self.ffn2(F.relu(self.ffn1(g)))
        return m + g


class PromoterAINet(nn.Module):
    """Stem Linear(4, D) + ReLU, N blocks, one head per output_dims entry.
    forward(x: (B, L, 4)) -> list of (B, O, T_j): the mean over s of ReLU(layer_s P_s + c_s)
    on the centre-cropped positions [crop, crop + O), crop = (L - O) // 2 (cropping before the
    projection gives the same result as projecting every position and cropping after)."""

    def __init__(self, num_blocks, dim, output_dims, output_length, eps=BN_EPSILON,
                 dilations=None):
        super().__init__()
        self.num_blocks = num_blocks
        self.dim = dim
        self.output_dims = list(output_dims)
        self.output_length = output_length
        self.dilations = (list(dilations) if dilations is not None
                          else [dilation(i) for i in range(num_blocks)])
        self.shortcuts = shortcut_layers(num_blocks)
        # Plain Python bools (constants to torch.compile): does block i's output feed the heads?
        self.feeds_heads = [(i + 1) in self.shortcuts for i in range(num_blocks)]
        self.stem = nn.Linear(4, dim)
        self.blocks = nn.ModuleList(Block(dim, d, eps) for d in self.dilations)
        self.heads = nn.ModuleList(
            nn.ModuleDict({str(s): nn.Linear(dim, T) for s in self.shortcuts})
            for T in self.output_dims)

    def crop(self, L):
        diff = L - self.output_length
        if diff < 0 or diff % 2:
            raise ValueError(f"input length {L} - output length {self.output_length} must be "
                             "even and >= 0")
        return diff // 2

    def forward(self, x):
        L = x.shape[1]
        c = self.crop(L)
        O = self.output_length
        h = F.relu(self.stem(x))
        sums = [None] * len(self.heads)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if self.feeds_heads[i]:
                kept = h[:, c:c + O]
                for j, head in enumerate(self.heads):
                    y = F.relu(head[str(i + 1)](kept))
                    sums[j] = y if sums[j] is None else sums[j] + y
        return [t / len(self.shortcuts) for t in sums]


def init_reference_weights(net):
    """Section 2.5 initialisation: Glorot-uniform stem, depthwise and head kernels (torch's fan
    computation matches Keras's for these shapes), FFN kernels truncated normal std 0.01 cut at
    2 std, biases 0, BN gamma 1, beta 0, moving mean 0, moving variance 1 (torch's defaults)."""
    with torch.no_grad():
        nn.init.xavier_uniform_(net.stem.weight)
        nn.init.zeros_(net.stem.bias)
        for b in net.blocks:
            nn.init.xavier_uniform_(b.dwconv.weight)
            nn.init.zeros_(b.dwconv.bias)
            for lin in (b.ffn1, b.ffn2):
                nn.init.trunc_normal_(lin.weight, std=0.01, a=-0.02, b=0.02)
                nn.init.zeros_(lin.bias)
        for head in net.heads:
            for lin in head.values():
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)


def copy_from_reference(net, ref):
    """Copy the weights of a reference model (tests/ref/promoterai_ref.py RefModel: a dict
    `weights` of float32 arrays named as in model.h5, channels-last Keras layout) into net."""
    w = ref.weights

    def put(param, array, transform=None):
        t = torch.as_tensor(array, dtype=torch.float32)
        if transform is not None:
            t = transform(t)
        if tuple(t.shape) != tuple(param.shape):
            raise ValueError(f"shape {tuple(t.shape)} does not fit parameter {tuple(param.shape)}")
        param.copy_(t.to(param.dtype))

    D = net.dim
    with torch.no_grad():
        put(net.stem.weight, w["stem/kernel"], lambda t: t.t())            # [4, D] -> [D, 4]
        put(net.stem.bias, w["stem/bias"])
        for i, b in enumerate(net.blocks):
            p = f"block_{i}"
            for name, bn in (("bn1", b.bn1), ("bn2", b.bn2)):
                put(bn.weight, w[f"{p}/{name}/gamma"])
                put(bn.bias, w[f"{p}/{name}/beta"])
                put(bn.running_mean, w[f"{p}/{name}/moving_mean"])
                put(bn.running_var, w[f"{p}/{name}/moving_variance"])
                bn.eps = float(ref.bn_epsilon)
            put(b.dwconv.weight, w[f"{p}/dwconv/kernel"],                   # [5, D] -> [D, 1, 5]
                lambda t: t.t().reshape(D, 1, KERNEL_SIZE))
            put(b.dwconv.bias, w[f"{p}/dwconv/bias"])
            put(b.ffn1.weight, w[f"{p}/ffn1/kernel"], lambda t: t.t())     # [D, 4D] -> [4D, D]
            put(b.ffn1.bias, w[f"{p}/ffn1/bias"])
            put(b.ffn2.weight, w[f"{p}/ffn2/kernel"], lambda t: t.t())
            put(b.ffn2.bias, w[f"{p}/ffn2/bias"])
        for j, head in enumerate(net.heads):
            for s, lin in head.items():
                put(lin.weight, w[f"head_{j}/proj_{s}/kernel"], lambda t: t.t())
                put(lin.bias, w[f"head_{j}/proj_{s}/bias"])
    return net


def net_from_reference(ref):
    """A PromoterAINet shaped like the reference model, holding its weights (float32, CPU)."""
    net = PromoterAINet(ref.num_blocks, ref.model_dim, ref.output_dims, ref.output_length,
                        eps=float(ref.bn_epsilon))
    return copy_from_reference(net, ref)


# --------------------------------------------------------------------------------------------
# FLOPs, peak, helpers
# --------------------------------------------------------------------------------------------

def forward_flops(N, D, L, O, T, B):
    """Model FLOPs of one forward over B sequences (full length L, heads on O positions)."""
    n_short = len(shortcut_layers(N))
    return (N * B * L * (16 * D * D + 10 * D) + 8 * B * L * D + n_short * 2 * B * O * D * T)


def guess_peak_tflops(device_name):
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


_OOM_TYPES = tuple(t for t in (getattr(torch.cuda, "OutOfMemoryError", None),) if t is not None)


def is_oom(exc):
    if _OOM_TYPES and isinstance(exc, _OOM_TYPES):
        return True
    return "out of memory" in str(exc).lower()


def free_memory(net=None):
    if net is not None:
        net.zero_grad(set_to_none=True)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_onehot(B, L, device, gen):
    idx = torch.randint(0, 4, (B, L), generator=gen)
    return F.one_hot(idx, 4).float().to(device)


def parse_int_list(text):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}")
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers: {text!r}")
    return values


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, device, net, start):
        self.args = args
        self.device = device
        self.net = net
        self.gen = torch.Generator().manual_seed(args.seed + 1)
        self.start = start                     # the script's start: the budget covers set-up too
        self.deadline = self.start + args.time_budget
        self.results = []
        if device.type == "cuda":
            self.autocast = lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        else:
            self.autocast = contextlib.nullcontext

    # -- timing ----------------------------------------------------------------------------
    def time_steps(self, step, rec, warmup=None):
        """warmup untimed steps, then up to --iters timed ones (fewer if the time budget runs
        out after at least one). Fills rec with median/best seconds and the count."""
        warmup = self.args.warmup if warmup is None else warmup
        for _ in range(warmup):
            step()
        sync(self.device)
        times = []
        for _ in range(self.args.iters):
            if times and time.perf_counter() > self.deadline:
                rec["note"] = (rec.get("note", "") + " timed steps cut short by the time "
                               "budget").strip()
                break
            t0 = time.perf_counter()
            step()
            sync(self.device)
            times.append(time.perf_counter() - t0)
        rec["iters"] = len(times)
        rec["median_s"] = statistics.median(times)
        rec["best_s"] = min(times)

    # -- one measurement with OOM / error / budget handling --------------------------------
    def measure(self, mode, batch, fn, flops, items, unit):
        rec = {"mode": mode, "batch": batch, "items_per_step": items, "unit": unit,
               "flops_per_step": flops}
        if time.perf_counter() > self.deadline:
            rec.update(status="skipped", note=f"time budget of {self.args.time_budget:g} s "
                                              "exceeded before this measurement")
            return self.record(rec)
        cuda = self.device.type == "cuda"
        free_memory(self.net)
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        failure = None
        try:
            fn(rec)
            rec["status"] = "ok"
        except Exception as exc:          # noqa: BLE001 - one failed measurement must not end the run
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            if is_oom(exc):
                failure = ("OOM", first_line)
            else:
                traceback.print_exc()
                failure = ("error", f"{type(exc).__name__}: {first_line}")
        if failure is not None:            # outside the except block: the traceback is gone
            rec["status"], rec["note"] = failure[0], failure[1]
            for key in ("median_s", "best_s", "iters"):
                rec.pop(key, None)
            free_memory(self.net)
        if cuda:
            rec["peak_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
        if rec.get("median_s"):
            rec["throughput"] = items / rec["median_s"]
            rec["tflops"] = flops / rec["median_s"] / 1e12
            peak = self.args.peak_tflops
            rec["mfu"] = rec["tflops"] / peak if peak else None
        return self.record(rec)

    def record(self, rec):
        self.results.append(rec)
        print(format_line(rec), flush=True)
        return rec

    # -- the modes -------------------------------------------------------------------------
    def forward(self, batch):
        a = self.args
        net = self.net

        def run(rec):
            x = random_onehot(batch, a.input_length, self.device, self.gen)
            net.eval()

            def step():
                with torch.inference_mode(), self.autocast():
                    net(x)
            self.time_steps(step, rec)

        flops = forward_flops(a.blocks, a.dim, a.input_length, a.output_length, a.tracks, batch)
        return self.measure("forward", batch, run, flops, batch, "seq/s")

    def twin(self, variants):
        a = self.args
        net = self.net

        def run(rec):
            ref = random_onehot(variants, a.input_length, self.device, self.gen)
            alt = ref.clone()
            centre = a.input_length // 2       # the variant's base: rotate A->C->G->T->A
            alt[:, centre] = torch.roll(ref[:, centre], 1, dims=-1)
            x = torch.cat([ref, alt], 0)
            net.eval()

            def step():
                with torch.inference_mode(), self.autocast():
                    h = net(x)[0].float()
                    raw = (h[variants:] - h[:variants]).mean(dim=(1, 2))
                return raw
            self.time_steps(step, rec)

        flops = forward_flops(a.blocks, a.dim, a.input_length, a.output_length, a.tracks,
                              2 * variants)
        return self.measure("twin", variants, run, flops, variants, "variants/s")

    def train(self, batch, compiled):
        a = self.args
        net = self.net
        mode = "train_compile" if compiled else "train_eager"
        flops = 3 * forward_flops(a.blocks, a.dim, a.input_length, a.output_length, a.tracks,
                                  batch)
        if compiled and not hasattr(torch, "compile"):
            return self.record({"mode": mode, "batch": batch, "items_per_step": batch,
                                "unit": "samples/s", "flops_per_step": flops,
                                "status": "unavailable",
                                "note": f"torch {torch.__version__} has no torch.compile"})

        def run(rec):
            x = random_onehot(batch, a.input_length, self.device, self.gen)
            y = torch.rand(batch, a.output_length, a.tracks, generator=self.gen).to(self.device)
            net.train()
            model = net
            dynamo = None
            if compiled:
                # Imported by name: `import torch._dynamo` here would make `torch` a local.
                dynamo = importlib.import_module("torch._dynamo")
                dynamo.reset()                 # a clean, static-shape compile per batch size
                model = torch.compile(net, dynamic=False)
            opt = torch.optim.AdamW(net.parameters(), lr=5e-4, betas=(0.9, 0.999), eps=1e-7,
                                    weight_decay=5e-6)
            params = list(net.parameters())

            def step():
                opt.zero_grad(set_to_none=True)
                with self.autocast():
                    out = model(x)[0]
                loss = F.mse_loss(out.float(), y)
                loss.backward()
                if a.clipnorm > 0:             # per-tensor clipping, only when asked for
                    for p in params:
                        torch.nn.utils.clip_grad_norm_([p], a.clipnorm)
                opt.step()

            try:
                warmup = a.warmup
                if compiled:
                    sync(self.device)
                    t0 = time.perf_counter()
                    step()                     # compiles forward and backward
                    sync(self.device)
                    rec["first_step_s"] = time.perf_counter() - t0
                    warmup = max(0, warmup - 1)
                self.time_steps(step, rec, warmup)
                if compiled:
                    rec["compile_s"] = rec["first_step_s"] - rec["median_s"]
            finally:                           # the optimizer state goes with this frame
                opt.zero_grad(set_to_none=True)
                if compiled:
                    dynamo.reset()

        return self.measure(mode, batch, run, flops, batch, "samples/s")


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _fmt(v, spec, missing="-"):
    return missing if v is None else format(v, spec)


def batch_label(rec):
    if rec["mode"] == "twin":
        return f"{rec['batch']} variants ({2 * rec['batch']} seq)"
    return str(rec["batch"])


def format_line(rec):
    head = f"{rec['mode']:<13} batch {batch_label(rec):>3}: "
    if rec.get("status") != "ok":
        text = head + rec.get("status", "?")
        if rec.get("note"):
            text += f" ({rec['note']})"
        if rec.get("peak_mem_gib") is not None and rec.get("status") == "OOM":
            text += f", peak before failure {rec['peak_mem_gib']:.1f} GiB"
        return text
    text = (head + f"{rec['median_s']:.4f} s/step median (best {rec['best_s']:.4f}, "
            f"{rec['iters']} steps), {rec['throughput']:.2f} {rec['unit']}, "
            f"{rec['tflops']:.4g} TFLOP/s")
    text += ", MFU " + (f"{100 * rec['mfu']:.1f}%" if rec.get("mfu") is not None else "unknown")
    if rec.get("peak_mem_gib") is not None:
        text += f", peak {rec['peak_mem_gib']:.2f} GiB"
    if rec.get("first_step_s") is not None:
        text += (f", first step {rec['first_step_s']:.1f} s (compile about "
                 f"{rec['compile_s']:.1f} s)")
    if rec.get("note"):
        text += f" [{rec['note']}]"
    return text


def markdown_table(results):
    lines = ["| mode | batch | status | s/step (median) | throughput | TFLOP/s | MFU | "
             "peak GiB | compile s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ok = r.get("status") == "ok"
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["mode"], batch_label(r), r.get("status", "?"),
            _fmt(r.get("median_s"), ".4f"),
            f"{r['throughput']:.2f} {r['unit']}" if ok else "-",
            _fmt(r.get("tflops"), ".4g"),
            f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "-",
            _fmt(r.get("peak_mem_gib"), ".1f"),
            _fmt(r.get("compile_s"), ".1f")))
    return "\n".join(lines)


def environment(device):
    env = {"torch": torch.__version__, "python": platform.python_version(),
           "cuda": torch.version.cuda, "cudnn": None, "device_type": device.type}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cudnn"] = torch.backends.cudnn.version()
        props = torch.cuda.get_device_properties(device)
        env["device_memory_gib"] = props.total_memory / 2 ** 30
        env["multiprocessors"] = props.multi_processor_count
        env["capability"] = ".".join(str(v) for v in torch.cuda.get_device_capability(device))
    else:
        env["device_name"] = f"cpu ({platform.processor() or platform.machine()}, " \
                             f"{torch.get_num_threads()} threads)"
    return env


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=24, help="N (default 24)")
    ap.add_argument("--dim", type=int, default=1024, help="D (default 1024)")
    ap.add_argument("--input_length", type=int, default=20480, help="L (default 20480)")
    ap.add_argument("--output_length", type=int, default=4096, help="O (default 4096)")
    ap.add_argument("--tracks", type=int, default=498, help="T of the one head (default 498)")
    ap.add_argument("--device", default=None,
                    help="cuda, cuda:K or cpu (default cuda if available, else cpu)")
    ap.add_argument("--modes", default=",".join(ALL_MODES),
                    help="comma list from " + ",".join(ALL_MODES) + " (default all, run in this "
                         "order)")
    ap.add_argument("--forward_batch", type=parse_int_list, default=[4, 8],
                    help="batch sizes of the forward (default 4,8)")
    ap.add_argument("--train_batch", type=parse_int_list, default=[4, 8],
                    help="batch sizes of the training step (default 4,8)")
    ap.add_argument("--twin_variants", type=parse_int_list, default=[8],
                    help="variants per twin-scoring step, 2 sequences each (default 8)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--iters", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--peak_tflops", type=float, default=None,
                    help="peak dense bf16 TFLOP/s for MFU (default: guessed from the device "
                         "name; unknown otherwise)")
    ap.add_argument("--clipnorm", type=float, default=0.0,
                    help="clip each gradient tensor to this L2 norm (default 0: no clipping)")
    ap.add_argument("--time_budget", type=float, default=420.0,
                    help="seconds; later measurements are skipped once exceeded (default 420)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write all results to this JSON file")
    args = ap.parse_args(argv)

    for name in ("blocks", "dim", "input_length", "output_length", "tracks", "iters"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name} must be positive")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    radius = receptive_radius(args.blocks)
    L, O = args.input_length, args.output_length
    if (L - O) % 2 or L < O + 2 * radius:
        ap.error(f"need input_length >= output_length + 2 * receptive radius and (input_length "
                 f"- output_length) even; with --blocks {args.blocks} the radius is {radius}, so "
                 f"e.g. --input_length {O + 2 * radius} for --output_length {O} (got L {L}, O {O})")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ALL_MODES]
    if bad or not modes:
        ap.error(f"--modes: unknown {bad}; choose from {','.join(ALL_MODES)}")
    args.modes = modes
    return args


def main(argv=None):
    start = time.perf_counter()
    args = parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())   # set_device needs an index
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # bf16 autocast is what is compared; float32 matmuls/convolutions stay true float32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True

    env = environment(device)
    peak_source = "given"
    if args.peak_tflops is None:
        args.peak_tflops = guess_peak_tflops(env["device_name"]) if device.type == "cuda" else None
        peak_source = "guessed from the device name" if args.peak_tflops else "unknown"

    N, D, L, O, T = args.blocks, args.dim, args.input_length, args.output_length, args.tracks
    precision = "bf16 autocast (float32 weights)" if device.type == "cuda" else "float32"
    mem = f", {env['device_memory_gib']:.1f} GiB" if "device_memory_gib" in env else ""
    print(f"torch_anchor: device {env['device_name']}{mem}; torch {env['torch']}, "
          f"CUDA {env['cuda']}, cuDNN {env['cudnn']}")
    print(f"shape N {N} D {D} L {L} O {O} T {T} (receptive radius {receptive_radius(N)}, "
          f"shortcut layers {shortcut_layers(N)}); precision {precision}; "
          f"peak dense bf16 TFLOP/s: "
          f"{f'{args.peak_tflops:g} ({peak_source})' if args.peak_tflops else 'unknown'}")
    f1 = forward_flops(N, D, L, O, T, 1)
    print(f"model FLOPs per sequence: forward {f1 / 1e12:.4g} TFLOP, training step "
          f"{3 * f1 / 1e12:.4g} TFLOP; gradient clipping "
          f"{'per tensor to ' + str(args.clipnorm) if args.clipnorm > 0 else 'off'}; "
          f"modes {','.join(args.modes)}; warmup {args.warmup}, iters {args.iters}, "
          f"time budget {args.time_budget:g} s", flush=True)

    torch.manual_seed(args.seed)
    net = PromoterAINet(N, D, [T], O)
    init_reference_weights(net)
    net = net.to(device)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"parameters: {n_params:,}", flush=True)

    bench = Bench(args, device, net, start)
    for mode in args.modes:
        if mode == "forward":
            for b in args.forward_batch:
                bench.forward(b)
        elif mode == "twin":
            for v in args.twin_variants:
                bench.twin(v)
        elif mode in ("train_eager", "train_compile"):
            for b in args.train_batch:
                bench.train(b, compiled=(mode == "train_compile"))

    total = time.perf_counter() - bench.start
    print(f"\ntotal measurement time {total:.1f} s\n")
    print(markdown_table(bench.results))
    print(f"\n(device {env['device_name']}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN "
          f"{env['cudnn']}; N {N} D {D} L {L} O {O} T {T}; {precision}; MFU against "
          f"{args.peak_tflops if args.peak_tflops else 'unknown'} TFLOP/s dense bf16 peak)")

    if args.json:
        doc = {
            "benchmark": "torch_anchor",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "environment": env,
            "shape": {"num_blocks": N, "model_dim": D, "input_length": L, "output_length": O,
                      "tracks": T, "receptive_radius": receptive_radius(N),
                      "shortcut_layers": shortcut_layers(N), "parameters": n_params},
            "settings": {"modes": args.modes, "forward_batch": args.forward_batch,
                         "train_batch": args.train_batch, "twin_variants": args.twin_variants,
                         "warmup": args.warmup, "iters": args.iters,
                         "time_budget_s": args.time_budget, "precision": precision,
                         "clipnorm": args.clipnorm, "seed": args.seed,
                         "optimizer": "torch.optim.AdamW(lr=5e-4, betas=(0.9, 0.999), eps=1e-7, "
                                      "weight_decay=5e-6), torch's default implementation",
                         "loss": "MSE of head 0 vs random targets (B, O, T)",
                         "compile": "torch.compile(module, dynamic=False), default mode, "
                                    "recompiled per batch size; optimizer step eager"},
            "peak_tflops": args.peak_tflops, "peak_source": peak_source,
            "flops": {"forward_per_sequence": f1, "train_step_per_sample": 3 * f1,
                      "formula": "forward = N*B*L*(16*D^2 + 10*D) + 8*B*L*D + "
                                 "n_short*2*B*O*D*T; training step = 3 x forward"},
            "results": bench.results,
            "total_s": total,
        }
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
