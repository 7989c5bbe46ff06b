/* train.h - one training step's loss and gradient on the CPU (REFERENCE.md section 5).
 *
 *   pai_trainer tr;
 *   PAI_TRY(pai_trainer_init(&tr, &model.cfg, local_batch, &comm));
 *   PAI_TRY(pai_trainer_grad(&tr, &model.params, codes, y, B, head, global_B, &grad, &loss));
 *   ...optimizer step with grad...
 *   pai_trainer_free(&tr);
 *
 * Training mode differs from inference (forward.h) in two ways that forbid its shortcuts:
 * batch norm normalises with the statistics of the batch (all B x L rows of every rank, so every
 * position is computed, not only those feeding the crop), and every activation the backward
 * pass needs is kept: per block its input, the residual midpoint and the FFN hidden layer, about
 * (2 D + 4 D) x B x L floats a block (pai_trainer_bytes).
 *
 * Replicas: each rank passes its own B sequences; batch-norm statistics and their backward sums
 * go through comm (so all ranks normalise alike), the loss is divided by global_B, and the
 * gradient is summed over the ranks before it is returned. One rank with B = global_B and R
 * ranks with B = global_B / R give the same loss, gradient and moving statistics up to float
 * rounding. Results are deterministic for a given rank count and thread count. */
#ifndef PAI_TRAIN_H
#define PAI_TRAIN_H

#include <stdint.h>

#include "model/arena.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/optim.h"
#include "mpi/comm.h"

#define PAI_BN_MOMENTUM 0.99   /* moving = momentum * moving + (1 - momentum) * batch */

/* A sample's loss weight w_b = max over its one-hot input: 1 unless every base is "other". */
static inline int pai_sample_weight(const uint8_t *codes, int L) {
  for (int p = 0; p < L; p++)
    if (codes[p] < 4) return 1;
  return 0;
}

struct pai_trainer_gpu;

typedef struct {
  pai_config cfg;
  int max_batch;
  struct pai_trainer_gpu *gpu;   /* non-NULL: the step runs on the GPU (model/train_gpu.c) */
  int grad_stays_on_gpu;         /* cuda, set by the caller: pai_trainer_grad leaves the summed
                                  * gradient on the GPU for pai_trainer_step and does not write
                                  * grad or P's moving statistics on the host (see sync below) */
  pai_comm *comm;
  int n_threads;          /* OpenMP threads the per-thread partials were sized for */
  pai_arena arena;
  float **act;            /* [N + 1]: layer_i, (B, L, D) */
  float **mid;            /* [N]: m_i = layer_i + conv(BN1(layer_i)), (B, L, D) */
  float **hid;            /* [N]: ReLU(BN2(m_i) W1 + b1), (B, L, 4D) */
  float *stats;           /* [N][4][D]: mean1, inverse std1, mean2, inverse std2 */
  float **head_relu;      /* [n_short]: ReLU(layer_s P + c) of the trained head, (B, O, T) */
  float *pred, *dpred;    /* (B, O, T): head output and d loss / d output */
  float *nb;              /* (B, L, D): BN output, recomputed in the backward pass */
  float *da, *dg;         /* (B, L, D): gradient of the current layer; BN input gradient */
  float *ds;              /* (B, L, 4D): FFN hidden gradient */
  double *part;           /* per-thread partial sums: n_threads x (K + 2) x D */
  double *sums;           /* 2 x max(D, ...) staging for the batch-norm sums */
} pai_trainer;

/* Bytes of activations and scratch pai_trainer_init allocates for max_batch local sequences. */
size_t pai_trainer_bytes(const pai_config *cfg, int max_batch);

int pai_trainer_init(pai_trainer *t, const pai_config *cfg, int max_batch, pai_comm *comm) PAI_WUR;
/* The same on a backend: a cuda one keeps activations and the step's work on the GPU
 * (model/train_gpu.c); the grad interface, P, G and the results stay as below. comm may be an
 * NCCL communicator (device buffers, mpi/comm.h) or the MPI one (the GPU trainer then stages
 * its sums through host memory). */
int pai_trainer_init_backend(pai_trainer *t, const pai_config *cfg, int max_batch, pai_comm *comm,
                             const pai_backend *backend) PAI_WUR;
void pai_trainer_free(pai_trainer *t);

/* The optimizer step after pai_trainer_grad, on the trainer's device: the CPU trainer runs
 * pai_adamw_step(o, P, grad->data, m, v, step, NULL); the GPU trainer runs the same update on
 * the GPU and then keeps P, m and v there: the next grad and step use the GPU's copies, and the
 * host's P, m and v are out of date until pai_trainer_sync copies them back (before saving or
 * validating). m and v are read from the host at the first GPU step. */
int pai_trainer_step(pai_trainer *t, const pai_adamw *o, pai_params *P, const pai_params *grad,
                     float *m, float *v, int64_t step) PAI_WUR;
int pai_trainer_sync(pai_trainer *t, pai_params *P, float *m, float *v) PAI_WUR;

/* The GPU side (model/train_gpu.c), called by the functions of this header. */
int pai_trainer_gpu_init(pai_trainer *t, const pai_backend *backend) PAI_WUR;
int pai_trainer_gpu_grad(pai_trainer *t, pai_params *P, const uint8_t *codes, const float *y,
                         int B, int head, int global_B, pai_params *grad, double *loss) PAI_WUR;
void pai_trainer_gpu_free(pai_trainer *t);
int pai_trainer_gpu_step(pai_trainer *t, const pai_adamw *o, pai_params *P, float *m, float *v,
                         int64_t step) PAI_WUR;
int pai_trainer_gpu_sync(pai_trainer *t, pai_params *P, float *m, float *v) PAI_WUR;
/* The GPU trainer's stream, for pai_comm_init_nccl; the caller may then point t->comm at that
 * communicator. */
void *pai_trainer_gpu_stream(pai_trainer *t);
/* Waits for the GPU work the trainer has queued (for timing); 0 at once on the CPU. */
int pai_trainer_wait(pai_trainer *t) PAI_WUR;
/* Bytes of GPU memory the GPU trainer has held at most (0 on the CPU). */
size_t pai_trainer_gpu_mem_peak(const pai_trainer *t);

/* One step's forward and backward over this rank's B sequences (codes (B, L), base codes 0..4)
 * with targets y (B, O, T_head) for head `head` (a batch holds one species). Batch-norm moving
 * statistics in P are updated (momentum PAI_BN_MOMENTUM). grad (a pai_params of P's layout) is
 * overwritten with d loss / d parameter summed over all ranks, zero for the other heads and the
 * moving statistics; *loss is the global loss (every rank gets it):
 *   loss = sum_b w_b mean_{o,t} (pred_bot - y_bot)^2 / global_B,  w_b = max one-hot of sample b. */
int pai_trainer_grad(pai_trainer *t, pai_params *P, const uint8_t *codes, const float *y, int B,
                     int head, int global_B, pai_params *grad, double *loss) PAI_WUR;

#endif
