/* arena.h - one large allocation per run, carved into named buffers before the first step.
 *
 *   size_t need = ...;                       sum of pai_arena_bytes() of every buffer
 *   PAI_TRY(pai_arena_init(&arena, need));
 *   x = pai_arena_take(&arena, n_elems, sizeof(float));    (B, L, D)
 *
 * Buffers are 64-byte aligned and live until pai_arena_free. No allocation in a step loop. */
#ifndef PAI_ARENA_H
#define PAI_ARENA_H

#include "model/pai.h"

typedef struct {
  char *base;
  size_t n_bytes, used;
} pai_arena;

static inline size_t pai_arena_bytes(size_t n_elems, size_t elem_size) {
  return (n_elems * elem_size + 63) / 64 * 64;
}
int pai_arena_init(pai_arena *a, size_t n_bytes) PAI_WUR;
/* Returns an aligned buffer; asserts that the arena was sized for it (a programmer error). */
void *pai_arena_take(pai_arena *a, size_t n_elems, size_t elem_size);
void pai_arena_free(pai_arena *a);

#endif
