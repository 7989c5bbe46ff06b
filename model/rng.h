/* rng.h - a small, seedable, reproducible generator (xoshiro256**, seeded by splitmix64).
 * The same seed gives the same stream on every machine; the state is plain data, so it can be
 * saved with a training state and restored. */
#ifndef PAI_RNG_H
#define PAI_RNG_H

#include <stdint.h>

typedef struct {
  uint64_t s[4];
} pai_rng;

void pai_rng_seed(pai_rng *r, uint64_t seed, uint64_t stream);
uint64_t pai_rng_next(pai_rng *r);
double pai_rng_uniform(pai_rng *r);   /* [0, 1), 53 bits */
double pai_rng_normal(pai_rng *r);    /* standard normal (Box-Muller, one value per call) */

/* perm = a uniformly random permutation of 0..n-1 (Fisher-Yates). */
void pai_rng_permutation(pai_rng *r, int64_t *perm, int64_t n);

#endif
