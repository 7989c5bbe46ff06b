/* layers.h - the network's layers on the CPU, over explicit buffers (REFERENCE.md section 2).
 *
 * Layout: activations are (L, C) per sequence, channels last, row p = position p. Every
 * function computes output rows [lo, hi) only and reads only the input rows it needs, so a
 * caller can skip positions that do not feed the cropped output (exact, see forward.c).
 * Outputs are overwritten unless the comment says "accumulates". The .c file is the reference:
 * plain loops and BLAS, OpenMP over positions. */
#ifndef PAI_LAYERS_H
#define PAI_LAYERS_H

#include <stdint.h>

/* Base codes: 0=A 1=C 2=G 3=T 4=other (the one-hot row of code 4 is all zero). */

/* max(v, 0) as a comparison, which the compiler vectorises (fmaxf is a library call without
 * -ffinite-math-only); NaN gives 0 either way. */
static inline float pai_relu(float v) { return v > 0.0f ? v : 0.0f; }

/* y[p] = ReLU(onehot(codes[p]) W + b) for p in [lo, hi).  W: (4, D)  b: (D)  y: (L, D) */
void stem_forward_cpu(float *y, const uint8_t *codes, const float *w, const float *b, int D,
                      int lo, int hi);

/* Inference batch norm as an affine map: BN(v) = v * scale + shift per channel,
 * scale = gamma / sqrt(var + eps), shift = beta - mean * scale. */
void bn_fold(float *scale, float *shift, const float *gamma, const float *beta,
             const float *mean, const float *var, double eps, int D);

/* Depthwise conv with batch norm in front and the residual added (block's first half):
 *   m[p] = x[p] + b + sum_k w[k] * BN1(x)[p + (k - 2) * dil]      for p in [lo, hi)
 * with zero "same" padding: taps outside [0, L) contribute nothing (padding is applied after
 * BN1, as in the published model). The caller passes BN1 pre-multiplied into the kernel:
 *   ws[k][c] = w[k][c] * scale[c],  wc[k][c] = w[k][c] * shift[c],  bfull[c] = b[c] + sum_k wc[k][c]
 * (see dwconv_bn_prepare). x, m: (L, D), distinct buffers. K is fixed at 5. */
void dwconv_bn_prepare(float *ws, float *wc, float *bfull, const float *w, const float *b,
                       const float *scale, const float *shift, int D);
void dwconv_bn_res_forward_cpu(float *m, const float *x, const float *ws, const float *wc,
                               const float *bfull, const float *b, int L, int D, int dil,
                               int lo, int hi);

/* The same map on interior rows only (every tap real input), for B items at once, written
 * compactly: m[b][q] is row q + 2 dil of x[b], q in [0, n). x: (B, n + 4 dil, D)  m: (B, n, D).
 * Used by the cone scorer (model/cone.c), whose gathered rows always have all their taps. */
void dwconv_bn_res_interior_cpu(float *m, const float *x, const float *ws, const float *bfull,
                                int B, int n, int D, int dil);

/* Feed-forward half of a block, in place on rows [lo, hi) of m (L, D):
 *   m[p] += ReLU(BN2(m[p]) W1 + b1) W2 + b2
 * W1: (D, F)  W2: (F, D). Works through chunks of `chunk` rows using the scratch buffers
 * gin (chunk, D) and t (chunk, F), so the (rows, F) intermediate never exists whole. */
void ffn_res_forward_cpu(float *m, const float *scale2, const float *shift2, const float *w1,
                         const float *b1, const float *w2, const float *b2, int D, int F,
                         int lo, int hi, int chunk, float *gin, float *t);

/* Head projection, accumulates: out[o] += ReLU(x[crop + o] P + c) for o in [0, O).
 * x: (L, D)  P: (D, T)  c: (T)  out: (O, T)  tmp: scratch (O, T). */
void head_accumulate_cpu(float *out, const float *x, const float *p, const float *c, int D,
                         int T, int crop, int O, float *tmp);

#endif
