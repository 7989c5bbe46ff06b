/* counter.c - see counter.h. */
#include "mpi/counter.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/log.h"

#define MPI_OK(call, what)                                   \
  do {                                                       \
    if ((call) != MPI_SUCCESS) {                             \
      PAI_ERR("work counter: %s failed", what);              \
      return PAI_ERR_RUNTIME;                                \
    }                                                        \
  } while (0)

int pai_counter_init(pai_counter *c, const pai_dist *d) {
  memset(c, 0, sizeof *c);
  c->d = d;
  if (d->size == 1) return 0;
  if (!(c->win = malloc(sizeof(MPI_Win)))) return PAI_ERR_NOMEM;
  MPI_Win win;
  int64_t *base = NULL;
  const MPI_Aint bytes = d->rank == 0 ? (MPI_Aint)sizeof(int64_t) : 0;
  MPI_OK(MPI_Win_allocate(bytes, sizeof(int64_t), MPI_INFO_NULL, MPI_COMM_WORLD, &base, &win),
         "MPI_Win_allocate");
  if (d->rank == 0) {
    MPI_OK(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, win), "MPI_Win_lock");
    *base = 0;
    MPI_OK(MPI_Win_unlock(0, win), "MPI_Win_unlock");
  }
  MPI_OK(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");   /* nobody counts before it is 0 */
  MPI_OK(MPI_Win_lock_all(0, win), "MPI_Win_lock_all");
  c->base = base;
  memcpy(c->win, &win, sizeof win);
  c->ready = 1;
  return 0;
}

static int fetch_add(pai_counter *c, int64_t add, int64_t *value) {
  if (!c->ready) {
    *value = c->local;
    c->local += add;
    return 0;
  }
  MPI_Win win;
  memcpy(&win, c->win, sizeof win);
  MPI_OK(MPI_Fetch_and_op(&add, value, MPI_INT64_T, 0, 0, add ? MPI_SUM : MPI_NO_OP, win),
         "MPI_Fetch_and_op");
  MPI_OK(MPI_Win_flush(0, win), "MPI_Win_flush");
  return 0;
}

int pai_counter_next(pai_counter *c, int64_t *value) { return fetch_add(c, 1, value); }

void pai_counter_poll(pai_counter *c) {
  if (!c->ready) return;
  int flag = 0;
  MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
}
int pai_counter_peek(pai_counter *c, int64_t *value) { return fetch_add(c, 0, value); }

void pai_counter_free(pai_counter *c) {
  if (c->ready) {
    MPI_Win win;
    memcpy(&win, c->win, sizeof win);
    MPI_Win_unlock_all(win);
    MPI_Win_free(&win);
  }
  free(c->win);
  memset(c, 0, sizeof *c);
}
