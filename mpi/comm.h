/* comm.h - the sums data-parallel training needs, behind one interface.
 *
 * Training sums two kinds of buffer across replicas: parameter gradients (float, one or a few
 * large buffers per step) and batch-norm statistics (double, 2 x D per batch-norm layer, twice
 * per layer and step). The trainer calls only these functions; the implementation is chosen
 * once at start-up: MPI over host buffers here, NCCL over device buffers in the GPU backend.
 *
 *   pai_comm comm;
 *   PAI_TRY(pai_comm_init_mpi(&comm, &dist));
 *   PAI_TRY(pai_comm_sum_f32(&comm, grad, n));     in place: every rank gets the sum
 *   pai_comm_free(&comm);
 *
 * Every rank must make the same calls in the same order with the same counts (collectives).
 * A failure is returned, never aborted on; the caller agrees on it with pai_dist_agree. */
#ifndef PAI_COMM_H
#define PAI_COMM_H

#include <stddef.h>

#include "mpi/dist.h"

typedef struct pai_comm pai_comm;
struct pai_comm {
  int rank, size;
  const char *name;   /* "mpi", "nccl" */
  int (*sum_f32)(pai_comm *c, float *buf, size_t n);
  int (*sum_f64)(pai_comm *c, double *buf, size_t n);
  /* Optional (NULL: the sum runs at once): a sum queued after the work queued so far on the
   * caller's stream, running while later work proceeds; wait_all then returns when every
   * started sum is done (the host and the caller's stream may read the buffers). */
  int (*sum_f32_start)(pai_comm *c, float *buf, size_t n);
  int (*wait_all)(pai_comm *c);
  void (*free)(pai_comm *c);
  void *impl;
};

/* Sums over the ranks of d (all of MPI_COMM_WORLD); with one rank every sum is a no-op. */
int pai_comm_init_mpi(pai_comm *c, const pai_dist *d) PAI_WUR;

/* The same sums with NCCL over device buffers (the GPU backend, mpi/comm_nccl.c): one
 * communicator for the job, its id broadcast over MPI; each rank drives the GPU it opened
 * (model/gpu.h, device = node-local rank) and passes that GPU's stream (pai_gpu_stream). The
 * sums are ordered after the work queued on that stream, run on a stream of the communicator's
 * own, and are waited for (pai_comm_sum_f32_start: not until pai_comm_wait_all). Collective;
 * every rank gets the same status. The host emulation of the GPU runtime implements it with MPI
 * over its host "device" memory (every sum at once). */
int pai_comm_init_nccl(pai_comm *c, const pai_dist *d, void *stream) PAI_WUR;

static inline int pai_comm_sum_f32(pai_comm *c, float *buf, size_t n) {
  return c->size > 1 ? c->sum_f32(c, buf, n) : 0;
}
static inline int pai_comm_sum_f64(pai_comm *c, double *buf, size_t n) {
  return c->size > 1 ? c->sum_f64(c, buf, n) : 0;
}
/* Starts a sum that overlaps the caller's later work where the communicator can (NCCL), else
 * sums at once. The buffer must not be touched until pai_comm_wait_all. */
static inline int pai_comm_sum_f32_start(pai_comm *c, float *buf, size_t n) {
  if (c->size == 1) return 0;
  return c->sum_f32_start ? c->sum_f32_start(c, buf, n) : c->sum_f32(c, buf, n);
}
static inline int pai_comm_wait_all(pai_comm *c) {
  return c->size > 1 && c->wait_all ? c->wait_all(c) : 0;
}
static inline void pai_comm_free(pai_comm *c) {
  if (c->free) c->free(c);
}

#endif
