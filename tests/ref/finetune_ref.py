"""Reference side of the fine-tuning test, written from REFERENCE.md sections 3 and 5 (the
fine-tuning bullet) and model/finetune.h only; it knows nothing about the C implementation.
No side effects on import.

  * select_rows      -- the row filters and the chromosome split of section 5:
                        kept row  = in_cds == 0 and spliceai < 0.05 (strict; "NA" reads as NaN,
                                    and every comparison with NaN is false, so NA drops the row);
                        kept gene = a gene with at least one kept row having p_under < 0.01 or
                                    p_over < 0.01 (strict; NA = NaN = not an outlier);
                        training rows: kept rows of kept genes on chr1, chr3, ..., chr19;
                        validation rows: the same on chr21 and chr22 (any other chromosome is in
                        neither set). The gene filter looks at every kept row of the gene,
                        whatever its chromosome.
  * with_head0       -- a RefModel whose head-0 projections are replaced (everything else shared)
  * raw_outputs      -- section 3 raw twin output (mean over O and T_0 of head0(alt) - head0(ref),
                        no tanh, no rounding) via promoterai_ref.twin_scores, float64
  * mse, pearson     -- validation loss = mean over rows of (raw - z)^2; Pearson correlation
  * read_tensors     -- every dataset under a group of an HDF5 file, as stored (no conversion)
"""

import math
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promoterai_ref as R  # noqa: E402

COLUMNS = ["chrom", "pos", "ref", "alt", "strand", "z", "in_cds", "spliceai", "p_under",
           "p_over", "gene"]
TRAIN_CHROMS = frozenset(f"chr{i}" for i in range(1, 20, 2))
VAL_CHROMS = frozenset(("chr21", "chr22"))


def num(text):
    """A numeric filter cell: "NA" (and empty) -> NaN, otherwise float()."""
    t = str(text).strip()
    if t in ("NA", ""):
        return float("nan")
    return float(t)


def select_rows(header, rows, train_chroms=TRAIN_CHROMS, val_chroms=VAL_CHROMS):
    """(train, val): lists of row indices (0-based data rows) chosen by the section 5 filters,
    before any scorability check. The split defaults to the published one; a chromosome in both
    lists trains (docs/training.md)."""
    col = {name: header.index(name) for name in COLUMNS}
    in_cds = np.array([num(r[col["in_cds"]]) for r in rows], dtype=np.float64)
    splice = np.array([num(r[col["spliceai"]]) for r in rows], dtype=np.float64)
    p_under = np.array([num(r[col["p_under"]]) for r in rows], dtype=np.float64)
    p_over = np.array([num(r[col["p_over"]]) for r in rows], dtype=np.float64)
    genes = np.array([r[col["gene"]] for r in rows], dtype=object)
    chroms = [r[col["chrom"]] for r in rows]
    with np.errstate(invalid="ignore"):
        kept = (in_cds == 0) & (splice < 0.05)          # NaN compares false
        outlier = kept & ((p_under < 0.01) | (p_over < 0.01))
    good_genes = set(genes[outlier].tolist())
    chosen = kept & np.array([g in good_genes for g in genes], dtype=bool)
    train = [k for k in range(len(rows)) if chosen[k] and chroms[k] in train_chroms]
    val = [k for k in range(len(rows)) if chosen[k] and chroms[k] in val_chroms
           and chroms[k] not in train_chroms]
    return train, val


def head0_names(model):
    return [f"head_0/proj_{s}/{kind}" for s in R.shortcut_layers(model.num_blocks)
            for kind in ("kernel", "bias")]


def with_head0(model, params):
    """A new RefModel equal to `model` except for the head-0 tensors given in params."""
    meta = {"num_blocks": model.num_blocks, "model_dim": model.model_dim,
            "input_length": model.input_length, "output_length": model.output_length,
            "output_dims": list(model.output_dims), "head_names": list(model.head_names),
            "bn_epsilon": model.bn_epsilon}
    weights = dict(model.weights)
    for name, a in params.items():
        if name not in weights or not name.startswith("head_0/"):
            raise KeyError(f"not a head-0 tensor of the model: {name}")
        a = np.asarray(a, dtype=np.float32)
        if a.shape != weights[name].shape:
            raise ValueError(f"{name}: shape {a.shape}, model has {weights[name].shape}")
        weights[name] = a
    return R.RefModel(meta, weights)


def raw_outputs(model, genome, header, rows, idx, input_length, dtype=torch.float64):
    """Raw twin outputs (section 3, no tanh / rounding) of rows[idx]: list of float or None
    (None = the row cannot be scored; the reason is in the second list)."""
    col = {name: header.index(name) for name in ("chrom", "pos", "ref", "alt", "strand")}
    variants = [{k: rows[i][c] for k, c in col.items()} for i in idx]
    res = R.twin_scores(model, genome, variants, input_length, dtype=dtype, batch_size=64)
    return [r for r, _ in res], [why for _, why in res]


def mse(pred, z):
    pred = np.asarray(pred, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    return float(np.mean((pred - z) ** 2))


def pearson(a, b):
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b)) / den if den > 0 else 0.0


def read_tensors(path, group=""):
    """name (relative to group, no leading slash) -> numpy array exactly as stored."""
    out = {}
    with h5py.File(path, "r") as f:
        root = f[group] if group else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        root.visititems(visit)
    return out
