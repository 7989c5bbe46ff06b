/* shard.h - dealing work items to ranks, balanced by item count.
 *
 * The work is a list of groups (chromosomes) of items (TSSs, variants). A group larger than one
 * rank's share, share = ceil(total / n_ranks), is cut into ceil(n / share) contiguous parts of
 * near-equal size; parts and whole groups are then dealt largest first to the rank with the
 * least work so far (ties: lower group index, lower part, lower rank). The result depends only
 * on the counts and n_ranks, so every rank computes the same plan. With one rank nothing is cut. */
#ifndef PAI_SHARD_H
#define PAI_SHARD_H

#include <stdint.h>

#include "model/pai.h"

typedef struct {
  int group;              /* index into the caller's group list */
  int part, n_parts;      /* part k of n_parts of this group (0, 1 when whole) */
  int64_t first, count;   /* items [first, first + count) of the group */
  int rank;               /* the rank that owns this part */
} pai_shard_part;

/* counts[g] items in group g (groups with 0 items get no part). On success *parts (malloc'd,
 * caller frees) holds *n_parts entries ordered by group, then part. */
int pai_shard_plan(const int64_t *counts, int n_groups, int n_ranks, pai_shard_part **parts,
                   int *n_parts) PAI_WUR;

#endif
