/* trainrun.h - the `ptrain` run: data-parallel training from preprocess shards (docs/training.md).
 *
 * Every rank holds the whole model; each step, rank r computes the gradient of its B / R samples
 * of the global batch, the gradients and batch-norm statistics are summed over the ranks
 * (mpi/comm.h), and every rank applies the same AdamW step. Rank 0 writes the model folder. */
#ifndef PAI_TRAINRUN_H
#define PAI_TRAINRUN_H

#include "model/backend.h"
#include "model/options.h"
#include "mpi/dist.h"

typedef struct {
  const char *model_folder;
  const char *h5_human_folder;
  const pai_str_list *h5_nonhuman_folders;
  const pai_str_list *train_chroms, *val_chroms;   /* human; n == 0: the published defaults */
  int input_length, output_length, num_blocks, model_dim;
  int batch_size, epochs, steps_per_epoch;         /* steps_per_epoch 0: total batches / 10 */
  double learning_rate, weight_decay, clipnorm;
  int64_t seed;
  int resume, log_every;
  int stop_after;     /* > 0: stop once this many epochs are done (a later --resume goes on) */
  pai_backend backend;   /* cpu, or cuda: one GPU per rank (gpu_index = node-local rank) */
  int nccl;              /* cuda with several ranks: sums with NCCL (1) or staged MPI (0) */
} pai_train_opts;

int pai_train_run(const pai_dist *d, const pai_train_opts *o) PAI_WUR;

#endif
