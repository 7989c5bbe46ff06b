/* finetune.h - the `pfinetune` run: GTEx-outlier fine-tuning of head 0 (REFERENCE.md section 5,
 * docs/training.md).
 *
 * Rows of the variant table with in_cds == 0 and spliceai < 0.05 are kept; of those, only genes
 * with at least one row with p_under < 0.01 or p_over < 0.01. Training rows are on chr1, chr3, ...,
 * chr19, validation rows on chr21 and chr22 (the published split; train_chroms / val_chroms
 * replace it, e.g. for a small genome; a chromosome in both lists trains). The prediction is the raw twin output of
 * REFERENCE.md section 3 (mean over O and T_0 of head0(alt) - head0(ref), no tanh, no rounding),
 * the target column z, the loss the mean squared error over the global batch. Only head 0's
 * projections train; the backbone and its batch-norm statistics are frozen (inference mode), so
 * each step runs the frozen forward pass and back-propagates through the heads only. */
#ifndef PAI_FINETUNE_H
#define PAI_FINETUNE_H

#include "model/backend.h"
#include "model/options.h"
#include "mpi/dist.h"

typedef struct {
  const char *model_folder, *var_file, *fasta_file;
  const char *out_folder;   /* "" or NULL: <model_folder>_finetune */
  const pai_str_list *train_chroms, *val_chroms;   /* NULL or n == 0: the published split */
  int input_length, batch_size, epochs, steps_per_epoch;
  double learning_rate, weight_decay, clipnorm;
  int64_t seed;
  int resume, stop_after, log_every;
  pai_backend backend;   /* where the frozen backbone's twin forward runs (gpu_index: local rank) */
} pai_finetune_opts;

int pai_finetune_run(const pai_dist *d, const pai_finetune_opts *o) PAI_WUR;

#endif
