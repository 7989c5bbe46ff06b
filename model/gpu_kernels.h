/* gpu_kernels.h - the GPU backend's element-wise kernels, one output element per call.
 *
 * Each pai_k_* function computes element i of its output and touches nothing else, so the same
 * body runs as a grid-stride CUDA kernel (model/gpu_cuda.cu) and as a plain loop on the host
 * (model/gpu_emul.c, which the CPU test suite runs). The file is written in the common subset
 * of C17 and CUDA C++ for that reason: no templates, no references, explicit casts.
 *
 * Layout as on the CPU (model/layers.h): activations (B, L, D), channels last. Kernels that
 * work on the rows [lo, lo + rows) of each sequence index their elements as (b, r, c) with
 * i = (b * rows + r) * D + c. bf16 values are stored as their bit patterns (uint16_t): the
 * upper half of the float32, rounded to nearest even. */
#ifndef PAI_GPU_KERNELS_H
#define PAI_GPU_KERNELS_H

#include <stdint.h>

#ifdef __CUDACC__
#define PAI_DEV static __device__ __forceinline__
#define PAI_RESTRICT __restrict__
PAI_DEV uint32_t pai_f2u(float f) { return __float_as_uint(f); }
PAI_DEV float pai_u2f(uint32_t u) { return __uint_as_float(u); }
#else
#include <string.h>
#define PAI_DEV static inline
#define PAI_RESTRICT restrict
PAI_DEV uint32_t pai_f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
PAI_DEV float pai_u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
#endif

/* float32 -> bf16, round to nearest even; NaN stays NaN (quiet), infinities stay. */
PAI_DEV uint16_t pai_to_bf16(float f) {
  uint32_t u = pai_f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
PAI_DEV float pai_from_bf16(uint16_t h) { return pai_u2f((uint32_t)h << 16); }

PAI_DEV float pai_k_relu(float v) { return v > 0.0f ? v : 0.0f; }

/* Stem on rows [lo, lo + rows):  y[b][p][c] = ReLU(W[code][c] + bias[c]), code 4 -> bias only.
 * y: (B, L, D)  codes: (B, L)  W: (4, D). */
PAI_DEV void pai_k_stem(int64_t i, float *PAI_RESTRICT y, const uint8_t *PAI_RESTRICT codes,
                        const float *PAI_RESTRICT w, const float *PAI_RESTRICT bias, int D,
                        int L, int lo, int rows) {
  const int c = (int)(i % D);
  const int64_t br = i / D;
  const int64_t b = br / rows, p = lo + br % rows;
  const int code = codes[b * L + p];
  const float v = bias[c] + (code < 4 ? w[code * D + c] : 0.0f);
  y[(b * L + p) * D + c] = pai_k_relu(v);
}

/* Depthwise conv with BN1 folded in and the residual (model/layers.h dwconv_bn_res_forward_cpu):
 *   m[p] = x[p] + b + sum over taps k with 0 <= q = p + (k - 2) dil < L of (ws[k] x[q] + wc[k])
 * on rows [lo, lo + rows). x, m: (B, L, D), distinct.  ws, wc: (5, D)  b: (D). */
PAI_DEV void pai_k_dwconv(int64_t i, float *PAI_RESTRICT m, const float *PAI_RESTRICT x,
                          const float *PAI_RESTRICT ws, const float *PAI_RESTRICT wc,
                          const float *PAI_RESTRICT bias, int D, int L, int dil, int lo,
                          int rows) {
  const int c = (int)(i % D);
  const int64_t br = i / D;
  const int64_t b = br / rows, p = lo + br % rows;
  const float *xb = x + b * L * (int64_t)D;
  float acc = bias[c];
  for (int k = 0; k < 5; k++) {
    const int64_t q = p + (int64_t)(k - 2) * dil;
    if (q < 0 || q >= L) continue;
    acc += ws[k * D + c] * xb[q * D + c] + wc[k * D + c];
  }
  m[(b * L + p) * D + c] = xb[p * D + c] + acc;
}

/* Per-channel affine map of rows [lo, lo + rows) of x (B, L, D) into the packed matrix
 * out (B * rows, D), as float32 (out_bf16 == 0) or bf16: the input of a dense layer.
 *   out[b * rows + r][c] = x[b][lo + r][c] * scale[c] + shift[c]   (scale NULL: 1, shift NULL: 0) */
PAI_DEV void pai_k_affine_pack(int64_t i, void *PAI_RESTRICT out, int out_bf16,
                               const float *PAI_RESTRICT x, const float *PAI_RESTRICT scale,
                               const float *PAI_RESTRICT shift, int D, int L, int lo, int rows) {
  const int c = (int)(i % D);
  const int64_t br = i / D;
  const int64_t b = br / rows, p = lo + br % rows;
  float v = x[(b * L + p) * D + c];
  if (scale) v *= scale[c];
  if (shift) v += shift[c];
  if (out_bf16)
    ((uint16_t *)out)[i] = pai_to_bf16(v);
  else
    ((float *)out)[i] = v;
}

/* acc[i] += v[i]  (first: acc[i] = v[i]) */
PAI_DEV void pai_k_accumulate(int64_t i, float *PAI_RESTRICT acc, const float *PAI_RESTRICT v,
                              int first) {
  acc[i] = first ? v[i] : acc[i] + v[i];
}

/* y[i] *= s */
PAI_DEV void pai_k_scale(int64_t i, float *y, float s) { y[i] *= s; }

#endif
