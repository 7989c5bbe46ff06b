"""Independent PyTorch reference for PromoterAI, written from REFERENCE.md sections 1-3 only.

What it provides (no side effects on import):
  * encode / revcomp              -- section 1 (one-hot ACGT, lower case counts, others all-zero)
  * load_model / RefModel.heads   -- section 2 (backbone + heads), computed the plain unfolded way
                                     over every input position, float32 by default or float64
  * receptive_radius              -- section 2.4
  * read_fasta / variant_sequences / twin_scores / score_from_raw / format_score
                                  -- section 3 (twin variant scoring, N-padded windows)
  * write_random_model            -- writes a model.h5 in the project's model-folder format with
                                     random, non-trivial weights, for tests.

The model file format (channels last, Keras layout, float32 datasets):
  root attributes format_version, num_blocks, model_dim, kernel_size, shortcut_freq,
  input_length, output_length, bn_epsilon, output_dims, head_names;
  /stem/{kernel [4,D], bias [D]};
  /block_i/{bn1,bn2}/{gamma,beta,moving_mean,moving_variance} [D];
  /block_i/dwconv/{kernel [5,D], bias [D]};
  /block_i/ffn1/{kernel [D,4D], bias [4D]}; /block_i/ffn2/{kernel [4D,D], bias [D]};
  /head_j/proj_s/{kernel [D,T_j], bias [T_j]} for s in N, N-4, ..., > 0.

This module deliberately knows nothing about the C implementation; it is the yardstick.
"""

import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

KERNEL_SIZE = 5
SHORTCUT_FREQ = 4
DEFAULT_BN_EPSILON = 1e-3


# --------------------------------------------------------------------------------------------
# Section 1: sequence encoding
# --------------------------------------------------------------------------------------------

_ENCODE_TABLE = np.zeros((256, 4), dtype=np.float32)
for _i, _b in enumerate("ACGT"):
    _ENCODE_TABLE[ord(_b), _i] = 1.0
    _ENCODE_TABLE[ord(_b.lower()), _i] = 1.0

_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A",
               "a": "t", "c": "g", "g": "c", "t": "a"}


def encode(seq):
    """One-hot [L, 4] float32, channels A, C, G, T; lower case counts; any other letter -> zeros."""
    codes = np.frombuffer(seq.encode("latin-1"), dtype=np.uint8)
    return _ENCODE_TABLE[codes].copy()


def revcomp(seq):
    """Reverse complement of a string. A<->T, C<->G (case kept); any other letter is kept as is,
    which is harmless because every non-ACGT letter encodes to an all-zero row anyway."""
    return "".join(_COMPLEMENT.get(c, c) for c in reversed(seq))


# --------------------------------------------------------------------------------------------
# Section 2: architecture
# --------------------------------------------------------------------------------------------

def dilation(i):
    """d_i = max(1, 2^(floor(i/2) - 1)) -> 1,1,1,1,2,2,4,4,..."""
    e = i // 2 - 1
    return 1 if e < 0 else 2 ** e


def receptive_radius(num_blocks):
    """2 * sum over blocks of d_i (section 2.4)."""
    return 2 * sum(dilation(i) for i in range(num_blocks))


def shortcut_layers(num_blocks):
    """The layers feeding the heads: s in {N, N-4, N-8, ...} while s > 0 (layer_0 never used)."""
    return list(range(num_blocks, 0, -SHORTCUT_FREQ))


def _attr_int(value):
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"expected a scalar integer attribute, got shape {arr.shape}")
    return int(arr.reshape(-1)[0])


def _attr_int_list(value):
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _to_str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.bytes_):
        return bytes(v).decode("utf-8")
    return str(v)


def _attr_str_list(value):
    if isinstance(value, (str, bytes)):
        return [_to_str(value)]
    return [_to_str(v).rstrip("\x00") for v in np.asarray(value, dtype=object).reshape(-1)]


class RefModel:
    """Weights of one model folder plus the reference forward pass."""

    def __init__(self, meta, weights):
        self.num_blocks = meta["num_blocks"]
        self.model_dim = meta["model_dim"]
        self.input_length = meta["input_length"]
        self.output_length = meta["output_length"]
        self.output_dims = meta["output_dims"]
        self.head_names = meta["head_names"]
        self.bn_epsilon = meta["bn_epsilon"]
        self.weights = weights            # name -> float32 numpy array, names as in the file
        self._cache = {}

    def _w(self, name, dtype):
        key = (name, dtype)
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(self.weights[name]).to(dtype)
        return self._cache[key]

    def crop(self):
        """Positions removed at each end: (L - O) / 2 with L, O from the model file."""
        diff = self.input_length - self.output_length
        if diff < 0 or diff % 2:
            raise ValueError("input_length - output_length must be even and >= 0")
        return diff // 2

    def _bn(self, v, prefix, dtype):
        # Inference-mode batch normalization over the channel (last) axis.
        gamma = self._w(prefix + "/gamma", dtype)
        beta = self._w(prefix + "/beta", dtype)
        mean = self._w(prefix + "/moving_mean", dtype)
        var = self._w(prefix + "/moving_variance", dtype)
        return (v - mean) / torch.sqrt(var + self.bn_epsilon) * gamma + beta

    def _dwconv(self, h, i, dtype):
        # Keras DepthwiseConv1D, padding 'same', dilation d:
        #   y[p, c] = b[c] + sum_k w[k, c] * h[p + (k - 2) d, c], h = 0 outside [0, L).
        # torch conv1d (groups = D) computes the same cross-correlation.
        d = dilation(i)
        kernel = self._w(f"block_{i}/dwconv/kernel", dtype)     # [5, D]
        bias = self._w(f"block_{i}/dwconv/bias", dtype)         # [D]
        D = kernel.shape[1]
        w = kernel.t().reshape(D, 1, KERNEL_SIZE)               # [D, 1, 5]
        y = F.conv1d(h.transpose(1, 2), w, bias=bias, padding=(KERNEL_SIZE // 2) * d,
                     dilation=d, groups=D)
        return y.transpose(1, 2)

    def layers(self, x, dtype=torch.float32):
        """All activations layer_0 .. layer_N, each [B, L, D], computed over every position."""
        x = torch.as_tensor(x).to(dtype)
        out = torch.relu(x @ self._w("stem/kernel", dtype) + self._w("stem/bias", dtype))
        acts = [out]
        for i in range(self.num_blocks):
            p = f"block_{i}"
            h = self._bn(out, p + "/bn1", dtype)
            h = self._dwconv(h, i, dtype)
            m = out + h
            g = self._bn(m, p + "/bn2", dtype)
            g = g @ self._w(p + "/ffn1/kernel", dtype) + self._w(p + "/ffn1/bias", dtype)
            g = torch.relu(g)
            g = g @ self._w(p + "/ffn2/kernel", dtype) + self._w(p + "/ffn2/bias", dtype)
            out = m + g
            acts.append(out)
        return acts

    def heads_uncropped(self, x, dtype=torch.float32):
        """Head outputs [B, L, T_j] over all positions, before cropping."""
        acts = self.layers(x, dtype)
        result = []
        for j in range(len(self.output_dims)):
            terms = []
            for s in shortcut_layers(self.num_blocks):
                kernel = self._w(f"head_{j}/proj_{s}/kernel", dtype)
                bias = self._w(f"head_{j}/proj_{s}/bias", dtype)
                terms.append(torch.relu(acts[s] @ kernel + bias))
            result.append(torch.stack(terms, 0).mean(0))
        return result

    def heads(self, x, dtype=torch.float32):
        """List of head outputs [B, O, T_j]: averaged shortcut projections, centre-cropped by
        (L - O)/2 on each side (L, O from the model file). x: [B, L, 4] one-hot."""
        x = torch.as_tensor(x)
        if x.shape[1] != self.input_length:
            raise ValueError(f"input has {x.shape[1]} positions, model input_length is "
                             f"{self.input_length}")
        c = self.crop()
        full = self.heads_uncropped(x, dtype)
        return [h[:, c:c + self.output_length, :] for h in full]


def load_model(folder):
    """Read <folder>/model.h5. Integer attributes of any integer type; strings fixed or variable
    length, bytes or str. bn_epsilon defaults to 1e-3 when absent."""
    path = os.path.join(folder, "model.h5")
    with h5py.File(path, "r") as f:
        a = f.attrs
        meta = {
            "num_blocks": _attr_int(a["num_blocks"]),
            "model_dim": _attr_int(a["model_dim"]),
            "input_length": _attr_int(a["input_length"]),
            "output_length": _attr_int(a["output_length"]),
            "output_dims": _attr_int_list(a["output_dims"]),
            "head_names": _attr_str_list(a["head_names"]) if "head_names" in a else [],
            "bn_epsilon": float(np.asarray(a["bn_epsilon"]).reshape(-1)[0])
            if "bn_epsilon" in a else DEFAULT_BN_EPSILON,
        }
        if "kernel_size" in a and _attr_int(a["kernel_size"]) != KERNEL_SIZE:
            raise ValueError("reference supports kernel_size 5 only")
        if "shortcut_freq" in a and _attr_int(a["shortcut_freq"]) != SHORTCUT_FREQ:
            raise ValueError("reference supports shortcut_freq 4 only")
        weights = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                weights[name] = np.asarray(obj[()], dtype=np.float32)
        f.visititems(visit)

    N, D = meta["num_blocks"], meta["model_dim"]
    expected = {"stem/kernel": (4, D), "stem/bias": (D,)}
    for i in range(N):
        for bn in ("bn1", "bn2"):
            for v in ("gamma", "beta", "moving_mean", "moving_variance"):
                expected[f"block_{i}/{bn}/{v}"] = (D,)
        expected[f"block_{i}/dwconv/kernel"] = (KERNEL_SIZE, D)
        expected[f"block_{i}/dwconv/bias"] = (D,)
        expected[f"block_{i}/ffn1/kernel"] = (D, 4 * D)
        expected[f"block_{i}/ffn1/bias"] = (4 * D,)
        expected[f"block_{i}/ffn2/kernel"] = (4 * D, D)
        expected[f"block_{i}/ffn2/bias"] = (D,)
    for j, T in enumerate(meta["output_dims"]):
        for s in shortcut_layers(N):
            expected[f"head_{j}/proj_{s}/kernel"] = (D, T)
            expected[f"head_{j}/proj_{s}/bias"] = (T,)
    for name, shape in expected.items():
        if name not in weights:
            raise ValueError(f"{path}: missing dataset /{name}")
        if weights[name].shape != shape:
            raise ValueError(f"{path}: /{name} has shape {weights[name].shape}, expected {shape}")
    return RefModel(meta, weights)


# --------------------------------------------------------------------------------------------
# Random model writer (test fixture)
# --------------------------------------------------------------------------------------------

def write_random_model(folder, num_blocks, model_dim, output_dims, input_length, output_length,
                       head_names, seed, int_dtype=np.int64, vlen_strings=True,
                       bn_epsilon=DEFAULT_BN_EPSILON, head_scale=1.0):
    """Write <folder>/model.h5 with random weights that keep activations O(1).

    Every parameter is random (BN gamma/beta/mean random, moving_variance in [0.5, 1.5], all
    biases random) so that no part of the computation is trivially an identity or zero.
    int_dtype: numpy integer type for the integer attributes (np.int64 by default; np.int32 etc.
    to exercise a reader's tolerance). vlen_strings False writes head_names as fixed-length
    ASCII strings instead of variable-length UTF-8. head_scale multiplies the head projections
    (kernels and biases), i.e. the output scale, e.g. to make variant effects large enough that
    tanh visibly differs from its argument. Returns the path of model.h5."""
    rng = np.random.default_rng(seed)
    D = model_dim
    N = num_blocks

    def uni(shape, limit):
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.h5")
    with h5py.File(path, "w") as f:
        f.attrs.create("format_version", 1, dtype=int_dtype)
        f.attrs.create("num_blocks", N, dtype=int_dtype)
        f.attrs.create("model_dim", D, dtype=int_dtype)
        f.attrs.create("kernel_size", KERNEL_SIZE, dtype=int_dtype)
        f.attrs.create("shortcut_freq", SHORTCUT_FREQ, dtype=int_dtype)
        f.attrs.create("input_length", input_length, dtype=int_dtype)
        f.attrs.create("output_length", output_length, dtype=int_dtype)
        f.attrs.create("bn_epsilon", float(bn_epsilon), dtype=np.float64)
        f.attrs.create("output_dims", np.asarray(output_dims, dtype=int_dtype))
        if vlen_strings:
            f.attrs.create("head_names", list(head_names), dtype=h5py.string_dtype("utf-8"))
        else:
            width = max(1, max(len(n) for n in head_names))
            f.attrs.create("head_names", np.array([n.encode("ascii") for n in head_names],
                                                  dtype=f"S{width}"))

        # Stem: Glorot-uniform-like, small random bias.
        f["stem/kernel"] = uni((4, D), math.sqrt(6.0 / (4 + D)))
        f["stem/bias"] = uni((D,), 0.1)
        for i in range(N):
            p = f"block_{i}"
            for bn in ("bn1", "bn2"):
                f[f"{p}/{bn}/gamma"] = rng.uniform(0.5, 1.5, size=D).astype(np.float32)
                f[f"{p}/{bn}/beta"] = uni((D,), 0.2)
                f[f"{p}/{bn}/moving_mean"] = uni((D,), 0.3)
                f[f"{p}/{bn}/moving_variance"] = rng.uniform(0.5, 1.5, size=D).astype(np.float32)
            # Branch scales are kept below Glorot so the residual stream grows only slowly with
            # depth (12 blocks stay O(1)); every tap and every bias is still non-zero.
            f[f"{p}/dwconv/kernel"] = uni((KERNEL_SIZE, D), 0.3)
            f[f"{p}/dwconv/bias"] = uni((D,), 0.1)
            f[f"{p}/ffn1/kernel"] = uni((D, 4 * D), math.sqrt(6.0 / (5 * D)))
            f[f"{p}/ffn1/bias"] = uni((4 * D,), 0.1)
            f[f"{p}/ffn2/kernel"] = uni((4 * D, D), 0.35 * math.sqrt(6.0 / (5 * D)))
            f[f"{p}/ffn2/bias"] = uni((D,), 0.1)
        for j, T in enumerate(output_dims):
            for s in shortcut_layers(N):
                kernel = uni((D, T), math.sqrt(6.0 / (D + T)))
                bias = rng.uniform(0.0, 0.4, size=T).astype(np.float32)
                f[f"head_{j}/proj_{s}/kernel"] = (head_scale * kernel).astype(np.float32)
                f[f"head_{j}/proj_{s}/bias"] = (head_scale * bias).astype(np.float32)
    return path


# --------------------------------------------------------------------------------------------
# Section 3: variant scoring
# --------------------------------------------------------------------------------------------

def read_fasta(path):
    """Plain FASTA parser: {name: sequence}, name = first word after '>', case kept."""
    seqs = {}
    name = None
    parts = []
    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if line.startswith(">"):
                if name is not None:
                    seqs[name] = "".join(parts)
                name = line[1:].split()[0] if line[1:].split() else ""
                parts = []
            elif name is not None:
                parts.append(line.strip())
    if name is not None:
        seqs[name] = "".join(parts)
    return seqs


def genome_window(chrom_seq, start, end):
    """chrom_seq[start:end] with 'N' for every position outside [0, len(chrom_seq))."""
    n = len(chrom_seq)
    left = "N" * max(0, min(end, 0) - start)
    right = "N" * max(0, end - max(start, n))
    core = chrom_seq[max(start, 0):min(end, n)] if start < n and end > 0 else ""
    return left + core + right


def _strand_sign(strand):
    s = str(strand).strip()
    if s in ("1", "+1", "+"):
        return 1
    if s in ("-1", "-"):
        return -1
    return 0


def variant_sequences(genome, chrom, pos, ref, alt, strand, input_length):
    """Build the (ref, alt) input strings of one variant (section 3) or explain why not.
    Returns (ref_seq, alt_seq, None) or (None, None, reason)."""
    L = input_length
    half = L // 2
    ref = "" if ref is None else str(ref).strip()
    alt = "" if alt is None else str(alt).strip()
    if chrom not in genome:
        return None, None, f"chromosome {chrom} not in FASTA"
    try:
        p = int(str(pos).strip()) - 1
    except ValueError:
        return None, None, f"bad position {pos!r}"
    sign = _strand_sign(strand)
    if sign == 0:
        return None, None, f"bad strand {strand!r}"
    if ref in ("", "-"):
        return None, None, "empty ref"
    if alt in ("", "-"):
        return None, None, "empty alt"
    if any(c not in "ACGTacgt" for c in alt):
        return None, None, f"alt {alt} is not A/C/G/T"
    window = genome_window(genome[chrom], p - half, p + half)
    if window[half:half + len(ref)].upper() != ref.upper():
        return None, None, f"ref {ref} does not match genome {window[half:half + len(ref)]}"
    alt_seq = window[:half] + alt + window[half + len(ref):]
    alt_seq = (alt_seq + "N" * L)[:L]
    ref_seq = window
    if sign < 0:
        ref_seq, alt_seq = revcomp(ref_seq), revcomp(alt_seq)
    return ref_seq, alt_seq, None


def twin_scores(model, fasta_path, variants, input_length, dtype=torch.float64, batch_size=16):
    """Section 3 raw twin scores. variants: iterable of dicts with chrom, pos, ref, alt, strand.
    Returns a list of (raw, reason): raw a float (mean over O positions and T_0 tracks of
    head0(alt) - head0(ref)) and reason None, or raw None and a reason string.
    input_length must equal the model file's input_length (REFERENCE.md does not say how a
    different scoring length would be cropped; heads() raises rather than guess)."""
    genome = read_fasta(fasta_path) if isinstance(fasta_path, (str, os.PathLike)) else fasta_path
    results = [None] * len(variants)
    todo = []
    for k, v in enumerate(variants):
        r, a, reason = variant_sequences(genome, v["chrom"], v["pos"], v["ref"], v["alt"],
                                         v["strand"], input_length)
        if reason is not None:
            results[k] = (None, reason)
        else:
            todo.append((k, r, a))
    for b in range(0, len(todo), batch_size):
        chunk = todo[b:b + batch_size]
        xr = torch.from_numpy(np.stack([encode(r) for _, r, _ in chunk]))
        xa = torch.from_numpy(np.stack([encode(a) for _, _, a in chunk]))
        with torch.no_grad():
            hr = model.heads(xr, dtype)[0]
            ha = model.heads(xa, dtype)[0]
        raw = (ha - hr).mean(dim=(1, 2))
        for (k, _, _), value in zip(chunk, raw.tolist()):
            results[k] = (float(value), None)
    return results


def score_from_raw(raw):
    """tanh(round(raw, 4)), numpy rounding (round half to even on the binary value)."""
    return float(np.tanh(np.round(np.float64(raw), 4)))


def format_score(s):
    """Four decimals; -0.0000 is written 0.0000."""
    text = f"{s:.4f}"
    return "0.0000" if text == "-0.0000" else text


def score_near_boundary(raw, raw_tol=2e-6, print_tol=1e-6):
    """True when a tiny numerical difference in raw could change the printed score: raw lies
    within raw_tol of a 4th-decimal rounding boundary ((k + 0.5) * 1e-4), or the rounded score
    tanh(round(raw, 4)) lies within print_tol of a 4-decimal printing boundary."""
    scaled = raw * 1e4
    if abs(scaled - math.floor(scaled) - 0.5) * 1e-4 < raw_tol:
        return True
    s = score_from_raw(raw) * 1e4
    return abs(s - math.floor(s) - 0.5) * 1e-4 < print_tol
