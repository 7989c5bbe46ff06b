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
#include <math.h>
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

/* The same layer when a library computed the taps' products: y[b][p] = sum over taps inside
 * the sequence of ws[k] x[q] (model/gpu.h, pai_gpu_dwconv_lib); this adds the residual, the
 * bias and the folded BN1 shift's taps:  m[p] = x[p] + y[p] + b + sum over those taps of wc[k].
 * Rows [lo, lo + rows); x, y, m: (B, L, D). */
PAI_DEV void pai_k_dwconv_fix(int64_t i, float *PAI_RESTRICT m, const float *PAI_RESTRICT x,
                              const float *PAI_RESTRICT y, const float *PAI_RESTRICT wc,
                              const float *PAI_RESTRICT bias, int D, int L, int dil, int lo,
                              int rows) {
  const int c = (int)(i % D);
  const int64_t br = i / D;
  const int64_t b = br / rows, p = lo + br % rows;
  float acc = bias[c];
  for (int k = 0; k < 5; k++) {
    const int64_t q = p + (int64_t)(k - 2) * dil;
    if (q >= 0 && q < L) acc += wc[k * D + c];
  }
  const int64_t at = (b * L + p) * D + c;
  m[at] = x[at] + y[at] + acc;
}

/* m[i] = x[i] + y[i] + bias[i % D]: the training layer's residual and bias around a library's
 * convolution. */
PAI_DEV void pai_k_add3(int64_t i, float *PAI_RESTRICT m, const float *PAI_RESTRICT x,
                        const float *PAI_RESTRICT y, const float *PAI_RESTRICT bias, int D) {
  m[i] = x[i] + y[i] + bias[i % D];
}

/* out (cols, rows) = in (rows, cols) transposed. */
PAI_DEV void pai_k_transpose(int64_t i, float *PAI_RESTRICT out, const float *PAI_RESTRICT in,
                             int rows, int cols) {
  const int64_t r = i % rows, c = i / rows;
  out[i] = in[r * cols + c];
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

/* ---- training (model/train_gpu.c) ----------------------------------------------------------
 * Per-channel sums over rows run in two passes with no cooperation between threads: a *_part
 * kernel has one element per (chunk of rows, column) and sums its chunk in double; then
 * pai_k_sum_parts adds the chunks. Columns are the fast index, so neighbouring threads read
 * neighbouring addresses. */

PAI_DEV float pai_k_load(const void *p, int bf16, int64_t i) {
  return bf16 ? pai_from_bf16(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}
PAI_DEV void pai_k_store(void *p, int bf16, int64_t i, float v) {
  if (bf16)
    ((uint16_t *)p)[i] = pai_to_bf16(v);
  else
    ((float *)p)[i] = v;
}

/* out[i] = in[i] as float32 or bf16 */
PAI_DEV void pai_k_cast(int64_t i, void *out, int out_bf16, const float *in) {
  pai_k_store(out, out_bf16, i, in[i]);
}

/* out[i] = in[i] */
PAI_DEV void pai_k_copy(int64_t i, float *PAI_RESTRICT out, const float *PAI_RESTRICT in) {
  out[i] = in[i];
}

/* Chunk sums: part[ch][c] = sum over rows r of chunk ch of a[r][c], a (rows, cols) of type
 * a_bf16. Elements: n_chunks x cols. */
PAI_DEV void pai_k_colsum_part(int64_t i, double *part, const void *a, int a_bf16, int64_t rows,
                               int cols, int64_t chunk) {
  const int c = (int)(i % cols);
  const int64_t ch = i / cols, r1 = (ch + 1) * chunk < rows ? (ch + 1) * chunk : rows;
  double s = 0;
  for (int64_t r = ch * chunk; r < r1; r++) s += pai_k_load(a, a_bf16, r * cols + c);
  part[i] = s;
}

/* Batch-norm chunk sums over rows of (rows, D), width 2D:
 *   part[ch][c] = sum u[r][c],  part[ch][D + c] = sum u[r][c] vhat[r][c]
 * with vhat = (v - mean) istd, or v when mean is NULL. Elements: n_chunks x 2D. */
PAI_DEV void pai_k_bnsum_part(int64_t i, double *part, const float *u, const float *v,
                              const float *mean, const float *istd, int64_t rows, int D,
                              int64_t chunk) {
  const int w = (int)(i % (2 * D)), c = w % D, second = w >= D;
  const int64_t ch = i / (2 * D), r1 = (ch + 1) * chunk < rows ? (ch + 1) * chunk : rows;
  double s = 0;
  for (int64_t r = ch * chunk; r < r1; r++) {
    const float ur = u[r * D + c];
    if (!second)
      s += ur;
    else
      s += (double)ur * (mean ? (v[r * D + c] - mean[c]) * istd[c] : v[r * D + c]);
  }
  part[i] = s;
}

/* out[c] = sum over n_chunks of part[ch][c], c < width. */
PAI_DEV void pai_k_sum_parts(int64_t i, double *out, const double *part, int64_t n_chunks,
                             int width) {
  double s = 0;
  for (int64_t ch = 0; ch < n_chunks; ch++) s += part[ch * width + i];
  out[i] = s;
}

/* dst[i] += (float)src[i] */
PAI_DEV void pai_k_add_f64(int64_t i, float *dst, const double *src) { dst[i] += (float)src[i]; }

/* Batch statistics from the global sums s (2D: sum x, sum x^2) over n rows: mean and istd
 * (stat[0..D), stat[D..2D)), and the moving averages updated with momentum mom. Elements: D. */
PAI_DEV void pai_k_bn_stats(int64_t i, float *stat, float *mov_mean, float *mov_var,
                            const double *s, double n, double eps, double mom, int D) {
  const double mu = s[i] / n;
  double var = s[D + i] / n - mu * mu;
  if (var < 0) var = 0;
  stat[i] = (float)mu;
  stat[D + i] = (float)(1.0 / sqrt(var + eps));
  mov_mean[i] = (float)(mom * mov_mean[i] + (1.0 - mom) * mu);
  mov_var[i] = (float)(mom * mov_var[i] + (1.0 - mom) * var);
}

/* out = (x - mean) istd gamma + beta, as float32 or bf16. x: (rows, D). */
PAI_DEV void pai_k_bn_apply(int64_t i, void *out, int out_bf16, const float *x,
                            const float *stat, const float *gamma, const float *beta, int D) {
  const int c = (int)(i % D);
  pai_k_store(out, out_bf16, i, (x[i] - stat[c]) * stat[D + c] * gamma[c] + beta[c]);
}

/* Batch norm 1 applied as the taps read their rows, exactly as pai_k_bn_apply computes it. */
PAI_DEV float pai_k_bn_at(const float *x, int64_t at, int c, const float *stat,
                          const float *gamma, const float *beta, int D) {
  return (x[at] - stat[c]) * stat[D + c] * gamma[c] + beta[c];
}

/* Depthwise conv over B sequences of L rows with the residual (training: every row), batch
 * norm 1 fused in (h is never stored):
 *   m[r] = x[r] + bias + sum_k w[k] h[r + (k - 2) dil], taps inside the sequence only,
 *   h = (x - mean) istd gamma + beta   (stat: mean (D), istd (D)). */
PAI_DEV float pai_k_dwconv_train_at(int64_t r, int c, const float *PAI_RESTRICT x,
                                    const float *PAI_RESTRICT stat, const float *PAI_RESTRICT gamma,
                                    const float *PAI_RESTRICT beta, const float *PAI_RESTRICT w,
                                    const float *PAI_RESTRICT bias, int L, int D, int dil) {
  const int p = (int)(r % L);
  float acc = x[r * D + c] + bias[c];
  for (int k = 0; k < 5; k++) {
    const int off = (k - 2) * dil;
    if (p + off < 0 || p + off >= L) continue;
    acc += w[k * D + c] * pai_k_bn_at(x, (r + off) * D + c, c, stat, gamma, beta, D);
  }
  return acc;
}

PAI_DEV void pai_k_dwconv_train(int64_t i, float *PAI_RESTRICT m, const float *PAI_RESTRICT x,
                                const float *PAI_RESTRICT stat, const float *PAI_RESTRICT gamma,
                                const float *PAI_RESTRICT beta, const float *PAI_RESTRICT w,
                                const float *PAI_RESTRICT bias, int L, int D, int dil) {
  m[i] = pai_k_dwconv_train_at(i / D, (int)(i % D), x, stat, gamma, beta, w, bias, L, D, dil);
}

/* The same, one (chunk of rows, channel) per element, also summing what batch norm 2 needs
 * from its output, as pai_k_bnsum_part would from m (same order, same values):
 * part[ch][c] = sum m[r][c], part[ch][D + c] = sum m[r][c]^2. Elements: n_chunks x D. */
PAI_DEV void pai_k_dwconv_train_stats(int64_t i, double *part, float *PAI_RESTRICT m,
                                      const float *PAI_RESTRICT x, const float *PAI_RESTRICT stat,
                                      const float *PAI_RESTRICT gamma,
                                      const float *PAI_RESTRICT beta, const float *PAI_RESTRICT w,
                                      const float *PAI_RESTRICT bias, int64_t rows, int L, int D,
                                      int dil, int64_t chunk) {
  const int c = (int)(i % D);
  const int64_t ch = i / D, r1 = (ch + 1) * chunk < rows ? (ch + 1) * chunk : rows;
  double s = 0, q = 0;
  for (int64_t r = ch * chunk; r < r1; r++) {
    const float v = pai_k_dwconv_train_at(r, c, x, stat, gamma, beta, w, bias, L, D, dil);
    m[r * D + c] = v;
    s += v;
    q += (double)v * v;
  }
  part[ch * 2 * D + c] = s;
  part[ch * 2 * D + D + c] = q;
}

/* Its input gradient: dh[r] = sum_k w[k] dm[r - (k - 2) dil] over the taps that read row r. */
PAI_DEV float pai_k_dwconv_dh_at(int64_t r, int c, const float *PAI_RESTRICT dm,
                                 const float *PAI_RESTRICT w, int L, int D, int dil) {
  const int p = (int)(r % L);
  float acc = 0.0f;
  for (int k = 0; k < 5; k++) {
    const int off = (k - 2) * dil;
    if (p - off < 0 || p - off >= L) continue;
    acc += w[k * D + c] * dm[(r - off) * D + c];
  }
  return acc;
}

PAI_DEV void pai_k_dwconv_dh(int64_t i, float *PAI_RESTRICT dh, const float *PAI_RESTRICT dm,
                             const float *PAI_RESTRICT w, int L, int D, int dil) {
  dh[i] = pai_k_dwconv_dh_at(i / D, (int)(i % D), dm, w, L, D, dil);
}

/* The same, one (chunk of rows, channel) per element, also summing what batch norm 1's
 * backward needs, as pai_k_bnsum_part would from (dh, x): part[ch][c] = sum dh[r][c],
 * part[ch][D + c] = sum dh[r][c] xhat[r][c], xhat = (x - mean) istd. Elements: n_chunks x D. */
PAI_DEV void pai_k_dwconv_dh_stats(int64_t i, double *part, float *PAI_RESTRICT dh,
                                   const float *PAI_RESTRICT dm, const float *PAI_RESTRICT w,
                                   const float *PAI_RESTRICT x, const float *PAI_RESTRICT stat,
                                   int64_t rows, int L, int D, int dil, int64_t chunk) {
  const int c = (int)(i % D);
  const int64_t ch = i / D, r1 = (ch + 1) * chunk < rows ? (ch + 1) * chunk : rows;
  double s = 0, q = 0;
  for (int64_t r = ch * chunk; r < r1; r++) {
    const float v = pai_k_dwconv_dh_at(r, c, dm, w, L, D, dil);
    dh[r * D + c] = v;
    s += v;
    q += (double)v * ((x[r * D + c] - stat[c]) * stat[D + c]);
  }
  part[ch * 2 * D + c] = s;
  part[ch * 2 * D + D + c] = q;
}

/* Its kernel and bias gradients, chunk sums of width 6D: slot k < 5: sum_r h[r + off_k] dm[r]
 * (taps inside the sequence; h = batch norm 1 of x, computed here as in pai_k_dwconv_train),
 * slot 5: sum_r dm[r]. Elements: n_chunks x 6D. */
PAI_DEV void pai_k_dwgrad_part(int64_t i, double *part, const float *dm, const float *x,
                               const float *stat, const float *gamma, const float *beta,
                               int64_t rows, int L, int D, int dil, int64_t chunk) {
  const int w = (int)(i % (6 * D)), k = w / D, c = w % D;
  const int64_t ch = i / (6 * D), r1 = (ch + 1) * chunk < rows ? (ch + 1) * chunk : rows;
  const int off = (k - 2) * dil;
  double s = 0;
  for (int64_t r = ch * chunk; r < r1; r++) {
    if (k == 5) {
      s += dm[r * D + c];
      continue;
    }
    const int p = (int)(r % L);
    if (p + off >= 0 && p + off < L)
      s += (double)pai_k_bn_at(x, (r + off) * D + c, c, stat, gamma, beta, D) * dm[r * D + c];
  }
  part[i] = s;
}

/* Stem gradient chunk sums, width 5D: slot s = min(code, 4): sum of da[r][c] over rows with
 * that code where the stem's ReLU was open (a0 > 0). Elements: n_chunks x 5D. */
PAI_DEV void pai_k_stemgrad_part(int64_t i, double *part, const uint8_t *codes, const float *a0,
                                 const float *da, int64_t rows, int D, int64_t chunk) {
  const int w = (int)(i % (5 * D)), slot = w / D, c = w % D;
  const int64_t ch = i / (5 * D), r1 = (ch + 1) * chunk < rows ? (ch + 1) * chunk : rows;
  double s = 0;
  for (int64_t r = ch * chunk; r < r1; r++) {
    const int code = codes[r] < 4 ? codes[r] : 4;
    if (code == slot && a0[r * D + c] > 0.0f) s += da[r * D + c];
  }
  part[i] = s;
}

/* Stem parameters from those sums: gw[code][c] += s[code][c] (code < 4), gb[c] += all five. */
PAI_DEV void pai_k_stemgrad_apply(int64_t i, float *gw, float *gb, const double *s, int D) {
  double all = s[4 * D + i];
  for (int code = 0; code < 4; code++) {
    gw[code * D + i] += (float)s[code * D + i];
    all += s[code * D + i];
  }
  gb[i] += (float)all;
}

/* Backward of synchronised batch norm, coefficients from the global sums s (sum dy,
 * sum dy xhat) over n rows: coef = (gamma istd, mean dy, mean dy xhat). Elements: D. */
PAI_DEV void pai_k_bn_back_coef(int64_t i, float *coef, const double *s, const float *stat,
                                const float *gamma, double n, int D) {
  coef[i] = gamma[i] * stat[D + i];
  coef[D + i] = (float)(s[i] / n);
  coef[2 * D + i] = (float)(s[D + i] / n);
}

/* dx += gamma istd (dy - mean dy - xhat mean(dy xhat)). x, dy, dx: (rows, D). */
PAI_DEV void pai_k_bn_back_apply(int64_t i, float *dx, const float *dy, const float *x,
                                 const float *stat, const float *coef, int D) {
  const int c = (int)(i % D);
  const float xhat = (x[i] - stat[c]) * stat[D + c];
  dx[i] += coef[c] * (dy[i] - coef[D + c] - xhat * coef[2 * D + c]);
}

/* g = u > 0 ? g : 0, both of one type (the ReLU's backward through its output u). */
PAI_DEV void pai_k_relu_mask(int64_t i, void *g, const void *u, int bf16) {
  if (!(pai_k_load(u, bf16, i) > 0.0f)) pai_k_store(g, bf16, i, 0.0f);
}

/* A head's backward through its ReLU: d[i] = kept[i] > 0 ? dpred[i] s : 0, in place of kept. */
PAI_DEV void pai_k_head_grad(int64_t i, float *kept, const float *dpred, float s) {
  kept[i] = kept[i] > 0.0f ? dpred[i] * s : 0.0f;
}

/* The loss: pred = acc inv_n (acc: summed head outputs); dpred = scale[b] (pred - y); chunk
 * sums of (pred - y)^2 per sample: part[b][ch]. Elements: B x n_chunks, each over `chunk` of
 * the sample's per = O T values. */
PAI_DEV void pai_k_loss_part(int64_t i, double *part, float *pred, float *dpred, const float *y,
                             const float *scale, float inv_n, int64_t per, int64_t n_chunks,
                             int64_t chunk) {
  const int64_t b = i / n_chunks, ch = i % n_chunks;
  const int64_t e1 = (ch + 1) * chunk < per ? (ch + 1) * chunk : per;
  double s = 0;
  for (int64_t e = ch * chunk; e < e1; e++) {
    const int64_t at = b * per + e;
    pred[at] *= inv_n;
    const float d = pred[at] - y[at];
    s += (double)d * d;
    dpred[at] = scale[b] * d;
  }
  part[i] = s;
}

/* ---- cone scoring (model/cone_gpu.c) -------------------------------------------------------- */

/* Gather of one block's input per alternate b: rows [0, n_in) are the reference layer's union rows
 * cb[b] + lo_in + r, except rows [off, off + n_alt), which are the item's alternate rows x[b].
 * g: (B, n_in, D)  x: (B, n_alt, D)  ref: (U, D). */
PAI_DEV void pai_k_cone_gather(int64_t i, float *PAI_RESTRICT g, const float *PAI_RESTRICT x,
                               const float *PAI_RESTRICT ref, const int *cb, int lo_in, int n_in,
                               int off, int n_alt, int D) {
  const int c = (int)(i % D);
  const int64_t br = i / D;
  const int b = (int)(br / n_in), r = (int)(br % n_in);
  g[i] = r >= off && r < off + n_alt ? x[((int64_t)b * n_alt + r - off) * D + c]
                                     : ref[((int64_t)cb[b] + lo_in + r) * D + c];
}

/* The depthwise conv with BN1 folded in on interior rows, compactly (model/layers.h
 * dwconv_bn_res_interior_cpu): m[b][q] = x[b][q + 2 dil] + bfull + sum_k ws[k] x[b][q + k dil].
 * x: (B, n + 4 dil, D)  m: (B, n, D). */
PAI_DEV void pai_k_dwconv_interior(int64_t i, float *PAI_RESTRICT m, const float *PAI_RESTRICT x,
                                   const float *PAI_RESTRICT ws, const float *PAI_RESTRICT bfull,
                                   int n, int D, int dil) {
  const int c = (int)(i % D);
  const int64_t bq = i / D;
  const int64_t b = bq / n, q = bq % n;
  const float *x0 = x + (b * (n + 4 * (int64_t)dil) + q) * D + c;
  const int64_t step = (int64_t)dil * D;
  m[i] = x0[2 * step] + bfull[c] + ws[c] * x0[0] + ws[D + c] * x0[step] +
         ws[2 * D + c] * x0[2 * step] + ws[3 * D + c] * x0[3 * step] + ws[4 * D + c] * x0[4 * step];
}

/* Sums of rows of a (rows, W) matrix in chunks: part[row][ch] = sum of a[row][e] over the
 * chunk's e, in double. Elements: rows x n_chunks. */
PAI_DEV void pai_k_rowsum_part(int64_t i, double *part, const float *a, int64_t W,
                               int64_t n_chunks, int64_t chunk) {
  const int64_t row = i / n_chunks, ch = i % n_chunks;
  const int64_t e1 = (ch + 1) * chunk < W ? (ch + 1) * chunk : W;
  double s = 0;
  for (int64_t e = ch * chunk; e < e1; e++) s += a[row * W + e];
  part[i] = s;
}

/* ---- a plain dense product (model/gpu.h pai_gemm's row-major semantics), one output element
 * per call: the fallback where cuBLASLt has no algorithm for a problem (a 1-wide matrix, an odd
 * leading dimension in bf16), and a cross-check of the cuBLASLt path (PAI_GPU_PLAIN_GEMM=1).
 * Elements: M x N. */
PAI_DEV void pai_k_gemm_plain(int64_t i, int M, int N, int K, int trans_a, int trans_b,
                              int ab_bf16, int c_bf16, const void *a, int64_t lda, const void *b,
                              int64_t ldb, void *c, int64_t ldc, const void *bias, int relu,
                              float beta) {
  (void)M;
  const int64_t m = i / N, n = i % N;
  float acc = 0.0f;
  for (int64_t k = 0; k < K; k++)
    acc += pai_k_load(a, ab_bf16, trans_a ? k * lda + m : m * lda + k) *
           pai_k_load(b, ab_bf16, trans_b ? n * ldb + k : k * ldb + n);
  const int64_t at = m * ldc + n;
  if (beta != 0.0f) acc += beta * pai_k_load(c, c_bf16, at);
  if (bias) acc += pai_k_load(bias, c_bf16, n);
  if (relu) acc = pai_k_relu(acc);
  pai_k_store(c, c_bf16, at, acc);
}

/* ---- AdamW (model/optim.h) on the GPU ------------------------------------------------------- */

/* Chunk sums of squares of g (n values): part[ch], in double. Elements: n_chunks. */
PAI_DEV void pai_k_sumsq_part(int64_t i, double *part, const float *g, int64_t n, int64_t chunk) {
  const int64_t e1 = (i + 1) * chunk < n ? (i + 1) * chunk : n;
  double s = 0;
  for (int64_t e = i * chunk; e < e1; e++) s += (double)g[e] * g[e];
  part[i] = s;
}

/* One element of model/optim.c's pai_adamw_step, in the same double arithmetic. */
PAI_DEV void pai_k_adamw(int64_t i, float *w, float *m, float *v, const float *g, double clip,
                         double decay, double alpha, double beta1, double beta2, double eps) {
  const double ge = g[i] * clip;
  const double me = m[i] + (1.0 - beta1) * (ge - m[i]);
  const double ve = v[i] + (1.0 - beta2) * (ge * ge - v[i]);
  m[i] = (float)me;
  v[i] = (float)ve;
  w[i] = (float)(w[i] * decay - alpha * me / (sqrt(ve) + eps));
}

#endif
