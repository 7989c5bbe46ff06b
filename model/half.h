/* half.h - IEEE binary16 ("float16") conversion, for shard targets stored as float16.
 * pai_f32_to_f16 rounds to nearest, ties to even, as numpy's float32 -> float16 cast does;
 * finite values of magnitude >= 65520 become infinity (check with pai_f16_overflows). */
#ifndef PAI_HALF_H
#define PAI_HALF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t pai_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return sign | 0x7c00u | (a > 0x7f800000u ? 0x0200u : 0);   /* inf, NaN */
  if (a >= 0x477ff000u) return sign | 0x7c00u;   /* rounds past 65504: infinity */
  if (a < 0x38800000u) {
    /* below 2^-14: subnormal; scaling by 2^24 is exact, rintf rounds half to even */
    float af;
    memcpy(&af, &a, sizeof af);
    return sign | (uint16_t)rintf(af * 16777216.0f);
  }
  /* normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits */
  a += 0xc8000fffu + ((a >> 13) & 1u);
  return sign | (uint16_t)(a >> 13);
}

/* Exact float16 -> float32 (every float16 value is a float32 value). */
static inline float pai_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t x;
  if (e == 0x1fu) {
    x = sign | 0x7f800000u | (m << 13);   /* inf, NaN */
  } else if (e != 0) {
    x = sign | ((e + 112u) << 23) | (m << 13);
  } else {
    const float f = (float)m * 0x1p-24f;   /* zero or subnormal: exact */
    memcpy(&x, &f, sizeof x);
    x |= sign;
  }
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

/* 1 when the finite value f does not fit in float16 (would become infinity). */
static inline int pai_f16_overflows(float f) { return isfinite(f) && fabsf(f) >= 65520.0f; }

#endif
