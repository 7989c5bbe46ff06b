/* shard.c - see shard.h. Longest-processing-time-first dealing: within 4/3 of the optimum
 * makespan, and with parts no larger than one share, within one share of perfect balance. */
#include "mpi/shard.h"

#include <stdlib.h>

static int by_size_desc(const void *pa, const void *pb) {
  const pai_shard_part *a = pa, *b = pb;
  if (a->count != b->count) return a->count > b->count ? -1 : 1;
  if (a->group != b->group) return a->group < b->group ? -1 : 1;
  return a->part - b->part;
}

static int by_group(const void *pa, const void *pb) {
  const pai_shard_part *a = pa, *b = pb;
  if (a->group != b->group) return a->group < b->group ? -1 : 1;
  return a->part - b->part;
}

int pai_shard_plan(const int64_t *counts, int n_groups, int n_ranks, pai_shard_part **parts,
                   int *n_parts) {
  *parts = NULL;
  *n_parts = 0;
  if (n_ranks < 1) return PAI_ERR_USAGE;
  int64_t total = 0;
  for (int g = 0; g < n_groups; g++) total += counts[g];
  const int64_t share = total > 0 ? (total + n_ranks - 1) / n_ranks : 1;
  int n = 0;
  for (int g = 0; g < n_groups; g++)
    if (counts[g] > 0) n += (int)((counts[g] + share - 1) / share);
  pai_shard_part *p = calloc(n > 0 ? (size_t)n : 1, sizeof *p);
  int64_t *load = calloc((size_t)n_ranks, sizeof *load);
  if (!p || !load) {
    free(p);
    free(load);
    return PAI_ERR_NOMEM;
  }
  int k = 0;
  for (int g = 0; g < n_groups; g++) {
    if (counts[g] <= 0) continue;
    const int np = (int)((counts[g] + share - 1) / share);
    for (int j = 0; j < np; j++) {
      /* near-equal contiguous cuts: part j holds [j*n/np, (j+1)*n/np) */
      const int64_t lo = counts[g] * j / np, hi = counts[g] * (j + 1) / np;
      p[k++] = (pai_shard_part){g, j, np, lo, hi - lo, 0};
    }
  }
  qsort(p, (size_t)n, sizeof *p, by_size_desc);
  for (int i = 0; i < n; i++) {
    int best = 0;
    for (int r = 1; r < n_ranks; r++)
      if (load[r] < load[best]) best = r;
    p[i].rank = best;
    load[best] += p[i].count;
  }
  qsort(p, (size_t)n, sizeof *p, by_group);
  free(load);
  *parts = p;
  *n_parts = n;
  return 0;
}
