/* arena.c - see arena.h. */
#include "model/arena.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/log.h"

int pai_arena_init(pai_arena *a, size_t n_bytes) {
  memset(a, 0, sizeof *a);
  n_bytes = pai_arena_bytes(n_bytes ? n_bytes : 64, 1);
  a->base = aligned_alloc(64, n_bytes);
  if (!a->base) {
    PAI_ERR("cannot allocate %.1f MiB of activations (lower --batch_size)", n_bytes / 1048576.0);
    return PAI_ERR_NOMEM;
  }
  a->n_bytes = n_bytes;
  return 0;
}

void *pai_arena_take(pai_arena *a, size_t n_elems, size_t elem_size) {
  size_t n = pai_arena_bytes(n_elems, elem_size);
  assert(a->used + n <= a->n_bytes && "arena sized too small");
  void *p = a->base + a->used;
  a->used += n;
  return p;
}

void pai_arena_free(pai_arena *a) {
  free(a->base);
  memset(a, 0, sizeof *a);
}
