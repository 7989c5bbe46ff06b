/* rng.c - see rng.h. xoshiro256** by Blackman and Vigna (public domain algorithm). */
#include "model/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void pai_rng_seed(pai_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL + 0x632be59bd9b4e019ULL);
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pai_rng_next(pai_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double pai_rng_uniform(pai_rng *r) { return (double)(pai_rng_next(r) >> 11) * 0x1.0p-53; }

double pai_rng_normal(pai_rng *r) {
  double u1 = 1.0 - pai_rng_uniform(r);   /* (0, 1]: log is finite */
  double u2 = pai_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

void pai_rng_permutation(pai_rng *r, int64_t *perm, int64_t n) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    const int64_t k = (int64_t)(pai_rng_uniform(r) * (double)(i + 1)), tmp = perm[i];
    perm[i] = perm[k];
    perm[k] = tmp;
  }
}
