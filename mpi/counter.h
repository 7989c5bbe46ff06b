/* counter.h - a shared work counter for dynamic load balancing across ranks.
 *
 *   pai_counter wc;
 *   PAI_TRY(pai_counter_init(&wc, &dist));           collective
 *   int64_t i;
 *   while (pai_counter_next(&wc, &i) == 0 && i < n_items) work(i);
 *   pai_counter_free(&wc);                           collective
 *
 * Each call to pai_counter_next returns a value no other call on any rank returned (0, 1, 2, ...
 * in the order the calls reach rank 0's memory), so ranks that finish early simply take more
 * items. The MPI implementation is one 64-bit integer in an RMA window on rank 0, advanced with
 * MPI_Fetch_and_op under a passive-target lock. Shared memory and RDMA networks complete that
 * without rank 0; other transports (Open MPI's osc/pt2pt, e.g. over TCP) need rank 0 to enter
 * MPI now and then, which is what pai_counter_poll is for: call it often (every few tenths of a
 * second) in rank 0's work. */
#ifndef PAI_COUNTER_H
#define PAI_COUNTER_H

#include <stdint.h>

#include "mpi/dist.h"

typedef struct {
  const pai_dist *d;
  void *win;          /* MPI_Win (NULL for a single rank) */
  int64_t *base;      /* rank 0's counter memory */
  int64_t local;      /* the counter of a single-rank run */
  int ready;          /* the window exists and is locked */
} pai_counter;

int pai_counter_init(pai_counter *c, const pai_dist *d) PAI_WUR;
int pai_counter_next(pai_counter *c, int64_t *value) PAI_WUR;
/* Lets MPI make progress on other ranks' requests (cheap; a no-op for a single rank). */
void pai_counter_poll(pai_counter *c);
/* The number of values handed out so far (for progress lines). */
int pai_counter_peek(pai_counter *c, int64_t *value) PAI_WUR;
void pai_counter_free(pai_counter *c);

#endif
