/* dist.h - the distributed context: which rank this process is, of how many, and the few
 * collectives the pipeline needs on the CPU side (agreeing on an outcome, broadcasting bytes).
 *
 * Programs create one context in main() and pass it down; nothing reads MPI globals. A program
 * started without mpirun is a single rank (MPI's singleton mode). Error handling contract:
 * every rank calls pai_dist_agree() at the same points with its own status, and all of them
 * get back the worst status of any rank, so all ranks exit non-zero together and no rank waits
 * forever in a collective that a failed rank never reaches. */
#ifndef PAI_DIST_H
#define PAI_DIST_H

#include <stddef.h>

#include "model/pai.h"

typedef struct {
  int rank, size;
  int local_rank, local_size;   /* among the ranks on this node: picks this rank's GPU */
  int mpi;            /* 1 when MPI was initialised by pai_dist_init (finalize must run) */
} pai_dist;

/* MPI_Init (thread level FUNNELED), sets the log's rank. Returns PAI_ERR_RUNTIME on failure. */
int pai_dist_init(pai_dist *d, int *argc, char ***argv) PAI_WUR;
void pai_dist_finalize(pai_dist *d);

/* Collective: returns the lowest (worst) status over all ranks; 0 when every rank passed 0.
 * A status that is not a pai_status is treated as PAI_ERR_RUNTIME. */
int pai_dist_agree(const pai_dist *d, int status) PAI_WUR;

/* Collective: root's buffer *buf of *n bytes is copied to every rank. On non-root ranks *buf is
 * allocated here (malloc, caller frees; one extra byte holds a terminating NUL) and *n set. */
int pai_dist_bcast_bytes(const pai_dist *d, int root, char **buf, size_t *n) PAI_WUR;

/* Collective: waits for a local operation that cannot finish unless every rank takes part (an
 * NCCL communicator's set-up), by calling poll(arg) until it returns 1 (finished) or a
 * pai_status < 0 (failed); 0 means still going. A rank whose operation fails tells the others
 * at once, point to point, so that a rank still waiting calls cancel(arg) and stops instead of
 * waiting forever for a peer that will never come; so does a rank that has waited timeout_s
 * seconds (<= 0: no limit). Returns the worst status of any rank, as pai_dist_agree does. */
int pai_dist_await(const pai_dist *d, int (*poll)(void *arg), void (*cancel)(void *arg),
                   void *arg, double timeout_s) PAI_WUR;

/* Collective: out[i] = sum over ranks of in[i]. */
int pai_dist_sum_i64(const pai_dist *d, const int64_t *in, int64_t *out, int n) PAI_WUR;

#endif
