/* layer_check - every layer of the GPU backend, forward and backward, against an independent
 * computation on random data:
 *   forward layers (stem, depthwise conv + batch norm 1 + residual, its interior form, the
 *   dense half of a block, a head) against the CPU's layers (model/layers.h: plain loops and
 *   BLAS); training layers (batch norm statistics and its backward, the depthwise conv with
 *   batch norm 1 fused, its input and kernel gradients, the dense layers' gradient products)
 *   against double-precision loops of their formulas (REFERENCE.md section 2, train.h).
 * The depthwise layers run both through the hand-written kernels and through the library
 * convolution (cuDNN on a GPU) of model/gpu.h.
 *
 *   layer_check fp32|bf16
 *
 * One line per check, "PASS|FAIL layer [precision]: max err E (allowed A)"; exit 0 when all
 * pass. Linked twice: layer_check (CUDA) and layer_check_emul (the host emulation,
 * PAI_GPU_EMULATE=1). Tolerances:
 *   fp32: 1e-4 x the largest reference value (float32 sums of at most a few hundred terms
 *     in another order are off by ~1e-6 of it).
 *   bf16, dense products: both operands rounded to bf16 (relative error <= 2^-9 each), so
 *     each product term is off by at most (2^-8 + 2^-18) of its size, and a sum of terms by at
 *     most that times the sum of their sizes: allowed |err| <= 2^-7 sum_k |a_ik b_kj| per
 *     element (twice the bound) + 1e-6 x scale for the float32 accumulation.
 *   bf16, a block's dense half: the same per product, plus the hidden layer's rounding to
 *     bf16 before the second product; measured errors are a few 1e-3 of the increment's
 *     largest value; allowed 3e-2 of it, far below the O(1) error of a wrong shape or
 *     transpose. Only the dense layers change with precision: the other layers are float32 in
 *     both and are checked at the fp32 tolerance. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/gpu.h"
#include "model/layers.h"
#include "model/train.h"
#include "mpi/log.h"

enum { B = 2, L = 67, D = 24, F = 4 * D, DIL = 4, LO = 9, HI = 58, ROWS = HI - LO, O = 19, T = 7 };
#define NROWS ((int64_t)B * L)

static int failures, checks;
static pai_dtype dt;
static const char *prec;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rnd(void) { /* uniform in [-1, 1) */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng_state >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

static float *host(size_t n, float scale) {
  float *a = malloc(n * sizeof *a);
  if (!a) {
    fprintf(stderr, "layer_check: out of memory\n");
    exit(2);
  }
  for (size_t i = 0; i < n; i++) a[i] = scale * rnd();
  return a;
}

static double *dhost(size_t n) {
  double *a = calloc(n, sizeof *a);
  if (!a) {
    fprintf(stderr, "layer_check: out of memory\n");
    exit(2);
  }
  return a;
}

static void *dev(pai_gpu *g, const float *h, size_t n, pai_dtype t) {
  void *d = pai_gpu_put(g, h, n, t, "layer check");
  if (!d) exit(2);
  return d;
}

static void *scratch(pai_gpu *g, size_t bytes) {
  void *d = pai_gpu_alloc(g, bytes, "layer check");
  if (!d) exit(2);
  return d;
}

/* Fills device memory with NaN (all bits set), so that an output a call fails to write fails
 * its comparison instead of passing on an earlier call's values. */
static void poison(pai_gpu *g, void *d, size_t bytes) {
  unsigned char *h = malloc(bytes);
  if (!h) {
    fprintf(stderr, "layer_check: out of memory\n");
    exit(2);
  }
  memset(h, 0xff, bytes);
  if (pai_gpu_upload(g, d, h, bytes) < 0) exit(2);
  free(h);
}

static float *back(pai_gpu *g, const void *d, size_t n) {
  float *h = host(n, 0);
  if (pai_gpu_download(g, h, d, n * sizeof *h) < 0) exit(2);
  return h;
}

#define GPU(call)                                          \
  do {                                                     \
    if ((call) < 0) {                                      \
      fprintf(stderr, "layer_check: %s failed\n", #call); \
      exit(2);                                             \
    }                                                      \
  } while (0)

/* got vs ref, n values; allowed: tol x max|ref|, or per element bound[i] when bound is set. */
static void compare(const char *what, const char *p, const float *got, const double *ref,
                    size_t n, double tol, const double *bound) {
  double scale = 0, err = 0, allowed = 0, worst_ratio = -1;
  int nan = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
  for (size_t i = 0; i < n; i++) {
    const double e = fabs((double)got[i] - ref[i]);
    const double a = bound ? bound[i] + 1e-6 * scale : tol * scale;
    nan |= isnan(e);
    if (e / a > worst_ratio) {
      worst_ratio = e / a;
      err = e;
      allowed = a;
    }
  }
  const int ok = n > 0 && !nan && worst_ratio <= 1.0 && scale > 0;
  checks++;
  failures += !ok;
  printf("%s %s [%s]: max err %.2e (allowed %.2e, scale %.3g)%s\n", ok ? "PASS" : "FAIL", what,
         p, err, allowed, scale, nan ? ", NaN" : "");
}

static void compare_f(const char *what, const char *p, const float *got, const float *ref,
                      size_t n, double tol) {
  double *r = dhost(n);
  for (size_t i = 0; i < n; i++) r[i] = ref[i];
  compare(what, p, got, r, n, tol, NULL);
  free(r);
}

/* rows [lo, hi) of each sequence of a (B, L, w) array, packed */
static float *rows_of(const float *a, int lo, int hi, int w) {
  float *out = host((size_t)B * (hi - lo) * w, 0);
  for (int b = 0; b < B; b++)
    memcpy(out + (size_t)b * (hi - lo) * w, a + ((size_t)b * L + lo) * w,
           (size_t)(hi - lo) * w * sizeof *a);
  return out;
}

static const double TOL32 = 1e-4;

/* ---- forward layers against model/layers.h ---------------------------------------------- */

static void check_stem(pai_gpu *g) {
  uint8_t codes[B * L];
  for (int i = 0; i < B * L; i++) codes[i] = (uint8_t)((rnd() + 1.0f) * 2.5f) % 5;
  float *w = host(4 * D, 1), *bias = host(D, 0.5f), *y = host((size_t)B * L * D, 0);
  for (int b = 0; b < B; b++) stem_forward_cpu(y + (size_t)b * L * D, codes + b * L, w, bias, D, LO, HI);
  uint8_t *codes_d = scratch(g, sizeof codes);
  GPU(pai_gpu_upload(g, codes_d, codes, sizeof codes));
  float *y_d = scratch(g, (size_t)B * L * D * sizeof(float));
  poison(g, y_d, (size_t)B * L * D * sizeof(float));
  GPU(pai_gpu_stem(g, (int64_t)B * ROWS * D, y_d, codes_d, dev(g, w, 4 * D, PAI_F32),
                   dev(g, bias, D, PAI_F32), D, L, LO, ROWS));
  float *got = back(g, y_d, (size_t)B * L * D), *a = rows_of(got, LO, HI, D),
        *r = rows_of(y, LO, HI, D);
  compare_f("stem forward", "fp32", a, r, (size_t)B * ROWS * D, TOL32);
  free(w), free(bias), free(y), free(got), free(a), free(r);
}

/* The depthwise layer with batch norm 1 folded in, rows [LO, HI): the kernel, and the library
 * convolution plus the kernel that completes the layer. */
static void check_dwconv(pai_gpu *g) {
  float *x = host((size_t)B * L * D, 1), *w = host(5 * D, 0.5f), *bias = host(D, 0.3f);
  float *gamma = host(D, 0.5f), *beta = host(D, 0.3f), *mean = host(D, 0.2f), *var = host(D, 0.3f);
  for (int c = 0; c < D; c++) {
    gamma[c] += 1.0f;
    var[c] += 1.0f;
  }
  float scale[D], shift[D], ws[5 * D], wc[5 * D], bfull[D];
  bn_fold(scale, shift, gamma, beta, mean, var, 1e-3, D);
  dwconv_bn_prepare(ws, wc, bfull, w, bias, scale, shift, D);
  float *m = host((size_t)B * L * D, 0);
  for (int b = 0; b < B; b++)
    dwconv_bn_res_forward_cpu(m + (size_t)b * L * D, x + (size_t)b * L * D, ws, wc, bfull, bias,
                              L, D, DIL, LO, HI);
  float *r = rows_of(m, LO, HI, D);
  const size_t n = (size_t)B * L * D;
  float *x_d = dev(g, x, n, PAI_F32), *ws_d = dev(g, ws, 5 * D, PAI_F32),
        *wc_d = dev(g, wc, 5 * D, PAI_F32), *b_d = dev(g, bias, D, PAI_F32);
  float *m_d = scratch(g, n * sizeof(float)), *y_d = scratch(g, n * sizeof(float));
  poison(g, m_d, n * sizeof(float));
  GPU(pai_gpu_dwconv(g, (int64_t)B * ROWS * D, m_d, x_d, ws_d, wc_d, b_d, D, L, DIL, LO, ROWS));
  float *got = back(g, m_d, n), *a = rows_of(got, LO, HI, D);
  compare_f("depthwise conv + BN1 + residual forward (kernel)", "fp32", a, r,
            (size_t)B * ROWS * D, TOL32);
  free(got), free(a);
  poison(g, y_d, n * sizeof(float));
  poison(g, m_d, n * sizeof(float));
  GPU(pai_gpu_dwconv_lib(g, y_d, x_d, ws_d, B, L, D, DIL, LO, ROWS));
  GPU(pai_gpu_dwconv_fix(g, (int64_t)B * ROWS * D, m_d, x_d, y_d, wc_d, b_d, D, L, DIL, LO,
                         ROWS));
  got = back(g, m_d, n), a = rows_of(got, LO, HI, D);
  compare_f("depthwise conv + BN1 + residual forward (library + kernel)", "fp32", a, r,
            (size_t)B * ROWS * D, TOL32);
  free(got), free(a), free(r), free(m);

  /* the interior form (the SNV table's cones): n rows with all their taps */
  enum { NI = 21 };
  const size_t nin = (size_t)B * (NI + 4 * DIL) * D, nout = (size_t)B * NI * D;
  float *xi = host(nin, 1), *mi = host(nout, 0);
  dwconv_bn_res_interior_cpu(mi, xi, ws, bfull, B, NI, D, DIL);
  float *mi_d = scratch(g, nout * sizeof(float));
  poison(g, mi_d, nout * sizeof(float));
  GPU(pai_gpu_dwconv_interior(g, (int64_t)nout, mi_d, dev(g, xi, nin, PAI_F32), ws_d,
                              dev(g, bfull, D, PAI_F32), NI, D, DIL));
  got = back(g, mi_d, nout);
  compare_f("depthwise conv interior rows forward", "fp32", got, mi, nout, TOL32);
  free(got), free(xi), free(mi);
  free(x), free(w), free(bias), free(gamma), free(beta), free(mean), free(var);
}

/* The dense half of a block on rows [lo, hi): the increment m_out - m_in against the CPU's. */
static void check_ffn(pai_gpu *g, int lo, int hi) {
  const int rows = hi - lo;
  const size_t n = (size_t)B * L * D;
  float *m = host(n, 1), *scale2 = host(D, 0.5f), *shift2 = host(D, 0.3f);
  float *w1 = host((size_t)D * F, 0.3f), *b1 = host(F, 0.2f), *w2 = host((size_t)F * D, 0.2f),
        *b2 = host(D, 0.2f);
  for (int c = 0; c < D; c++) scale2[c] += 1.0f;
  float *cpu = host(n, 0), *gin = host(16 * D, 0), *t = host(16 * F, 0);
  memcpy(cpu, m, n * sizeof *cpu);
  for (int b = 0; b < B; b++)
    ffn_res_forward_cpu(cpu + (size_t)b * L * D, scale2, shift2, w1, b1, w2, b2, D, F, lo, hi, 16,
                        gin, t);
  pai_gpu_block blk = {.scale2 = dev(g, scale2, D, PAI_F32), .shift2 = dev(g, shift2, D, PAI_F32),
                       .b2 = dev(g, b2, D, PAI_F32), .w1 = dev(g, w1, (size_t)D * F, dt),
                       .b1 = dev(g, b1, F, dt), .w2 = dev(g, w2, (size_t)F * D, dt), .dt = dt};
  float *m_d = dev(g, m, n, PAI_F32);
  void *gin_d = scratch(g, (size_t)B * rows * D * pai_dtype_size(dt));
  void *t_d = scratch(g, (size_t)B * rows * F * pai_dtype_size(dt));
  GPU(pai_gpu_block_ffn(g, &blk, m_d, B, L, lo, rows, D, gin_d, t_d));
  float *got = back(g, m_d, n);
  float *a = rows_of(got, lo, hi, D), *r = rows_of(cpu, lo, hi, D), *m0 = rows_of(m, lo, hi, D);
  const size_t k = (size_t)B * rows * D;
  double *inc = dhost(k);
  for (size_t i = 0; i < k; i++) {
    inc[i] = (double)r[i] - m0[i];
    a[i] -= m0[i];
  }
  char what[96];
  snprintf(what, sizeof what, "dense half of a block forward, rows [%d, %d) (increment)", lo, hi);
  compare(what, prec, a, inc, k, dt == PAI_BF16 ? 3e-2 : TOL32, NULL);
  free(m), free(scale2), free(shift2), free(w1), free(b1), free(w2), free(b2), free(cpu), free(gin);
  free(t), free(got), free(a), free(r), free(m0), free(inc);
}

static void check_head(pai_gpu *g) {
  const int crop = (L - O) / 2;
  const size_t n = (size_t)B * L * D;
  float *x = host(n, 1), *p = host((size_t)D * T, 0.3f), *c = host(T, 0.2f);
  float *out = host((size_t)B * O * T, 0), *tmp = host((size_t)O * T, 0);
  for (int b = 0; b < B; b++)
    head_accumulate_cpu(out + (size_t)b * O * T, x + (size_t)b * L * D, p, c, D, T, crop, O, tmp);
  void *hin_d = scratch(g, (size_t)B * O * D * pai_dtype_size(dt));
  float *h_d = scratch(g, (size_t)B * O * T * sizeof(float));
  float *out_d = scratch(g, (size_t)B * O * T * sizeof(float));
  poison(g, h_d, (size_t)B * O * T * sizeof(float));
  poison(g, out_d, (size_t)B * O * T * sizeof(float));
  GPU(pai_gpu_affine_pack(g, (int64_t)B * O * D, hin_d, dt == PAI_BF16, dev(g, x, n, PAI_F32),
                          NULL, NULL, D, L, crop, O));
  const pai_gemm pg = {.M = B * O, .N = T, .K = D, .ab_type = dt, .c_type = PAI_F32, .a = hin_d,
                       .lda = D, .b = dev(g, p, (size_t)D * T, dt), .ldb = T, .c = h_d, .ldc = T,
                       .bias = dev(g, c, T, PAI_F32), .relu = 1};
  GPU(pai_gpu_gemm(g, &pg));
  GPU(pai_gpu_accumulate(g, (int64_t)B * O * T, out_d, h_d, 1));
  float *got = back(g, out_d, (size_t)B * O * T);
  /* bf16: one product of D terms; its bound, from the CPU's operands */
  double *bound = NULL;
  if (dt == PAI_BF16) {
    bound = dhost((size_t)B * O * T);
    for (int b = 0; b < B; b++)
      for (int o = 0; o < O; o++)
        for (int j = 0; j < T; j++) {
          double s = 0;
          for (int k = 0; k < D; k++)
            s += fabs((double)x[((size_t)b * L + crop + o) * D + k] * p[(size_t)k * T + j]);
          bound[((size_t)b * O + o) * T + j] = ldexp(s, -7);
        }
  }
  double *r = dhost((size_t)B * O * T);
  for (size_t i = 0; i < (size_t)B * O * T; i++) r[i] = out[i];
  compare("head projection forward", prec, got, r, (size_t)B * O * T, TOL32, bound);
  free(x), free(p), free(c), free(out), free(tmp), free(got), free(r), free(bound);
}

/* ---- training layers against double loops ----------------------------------------------- */

typedef struct {
  int64_t n_chunks, chunk;
} chunks;

static chunks chunking(int64_t rows, int64_t n_chunks) {
  chunks ch = {n_chunks, (rows + n_chunks - 1) / n_chunks};
  ch.n_chunks = (rows + ch.chunk - 1) / ch.chunk;
  return ch;
}

/* Batch norm in training: statistics, moving statistics, output; then its backward. Then the
 * depthwise layer with batch norm 1 fused, its input gradient and its kernel/bias gradients. */
static void check_train_bn_dwconv(pai_gpu *g) {
  const int64_t R = NROWS;
  const size_t n = (size_t)R * D;
  float *x = host(n, 1), *gamma = host(D, 0.5f), *beta = host(D, 0.3f);
  float *mov_mean = host(D, 0.2f), *mov_var = host(D, 0.2f);
  for (int c = 0; c < D; c++) {
    gamma[c] += 1.0f;
    mov_var[c] += 1.0f;
  }
  for (size_t i = 0; i < n; i++) x[i] += 0.5f * (float)(i % D) / D;   /* per-channel offsets */
  const double eps = 1e-3;
  /* reference, in double */
  double *mu = dhost(D), *var = dhost(D), *istd = dhost(D), *h = dhost(n);
  for (size_t i = 0; i < n; i++) mu[i % D] += x[i];
  for (int c = 0; c < D; c++) mu[c] /= (double)R;
  for (size_t i = 0; i < n; i++) var[i % D] += (x[i] - mu[i % D]) * (x[i] - mu[i % D]);
  for (int c = 0; c < D; c++) istd[c] = 1.0 / sqrt(var[c] / (double)R + eps);
  for (size_t i = 0; i < n; i++)
    h[i] = (x[i] - mu[i % D]) * istd[i % D] * gamma[i % D] + beta[i % D];

  const chunks ch = chunking(R, 5);
  float *x_d = dev(g, x, n, PAI_F32), *g_d = dev(g, gamma, D, PAI_F32),
        *b_d = dev(g, beta, D, PAI_F32);
  float *mm_d = dev(g, mov_mean, D, PAI_F32), *mv_d = dev(g, mov_var, D, PAI_F32);
  float *stat_d = scratch(g, 2 * D * sizeof(float)), *h_d = scratch(g, n * sizeof(float));
  double *part_d = scratch(g, (size_t)ch.n_chunks * 6 * D * sizeof(double));
  double *sums_d = scratch(g, 6 * D * sizeof(double));
  poison(g, part_d, (size_t)ch.n_chunks * 6 * D * sizeof(double));
  poison(g, sums_d, 6 * D * sizeof(double));
  poison(g, stat_d, 2 * D * sizeof(float));
  poison(g, h_d, n * sizeof(float));
  GPU(pai_gpu_bnsum_part(g, ch.n_chunks * 2 * D, part_d, x_d, x_d, NULL, NULL, R, D, ch.chunk));
  GPU(pai_gpu_sum_parts(g, 2 * D, sums_d, part_d, ch.n_chunks, 2 * D));
  GPU(pai_gpu_bn_stats(g, D, stat_d, mm_d, mv_d, sums_d, (double)R, eps, PAI_BN_MOMENTUM, D));
  GPU(pai_gpu_bn_apply(g, (int64_t)n, h_d, 0, x_d, stat_d, g_d, b_d, D));
  float *stat = back(g, stat_d, 2 * D), *mm = back(g, mm_d, D), *mv = back(g, mv_d, D),
        *hg = back(g, h_d, n);
  double *r = dhost(2 * D);
  for (int c = 0; c < D; c++) r[c] = mu[c], r[D + c] = istd[c];
  compare("batch norm statistics (mean, 1/std)", "fp32", stat, r, 2 * D, TOL32, NULL);
  for (int c = 0; c < D; c++) {
    r[c] = PAI_BN_MOMENTUM * mov_mean[c] + (1 - PAI_BN_MOMENTUM) * mu[c];
    r[D + c] = PAI_BN_MOMENTUM * mov_var[c] + (1 - PAI_BN_MOMENTUM) * var[c] / (double)R;
  }
  compare("batch norm moving mean", "fp32", mm, r, D, TOL32, NULL);
  compare("batch norm moving variance", "fp32", mv, r + D, D, TOL32, NULL);
  compare("batch norm forward", "fp32", hg, h, n, TOL32, NULL);

  /* backward: dx += gamma istd (dy - mean dy - xhat mean(dy xhat)); dbeta = sum dy,
   * dgamma = sum dy xhat */
  float *dy = host(n, 1), *dx0 = host(n, 1);
  double *sdy = dhost(D), *sdyx = dhost(D), *dx = dhost(n);
  for (size_t i = 0; i < n; i++) {
    sdy[i % D] += dy[i];
    sdyx[i % D] += dy[i] * (x[i] - mu[i % D]) * istd[i % D];
  }
  for (size_t i = 0; i < n; i++) {
    const int c = (int)(i % D);
    const double xhat = (x[i] - mu[c]) * istd[c];
    dx[i] = dx0[i] + gamma[c] * istd[c] * (dy[i] - sdy[c] / (double)R - xhat * sdyx[c] / (double)R);
  }
  float *dy_d = dev(g, dy, n, PAI_F32), *dx_d = dev(g, dx0, n, PAI_F32);
  float *coef_d = scratch(g, 3 * D * sizeof(float));
  poison(g, part_d, (size_t)ch.n_chunks * 6 * D * sizeof(double));
  poison(g, sums_d, 6 * D * sizeof(double));
  poison(g, coef_d, 3 * D * sizeof(float));
  GPU(pai_gpu_bnsum_part(g, ch.n_chunks * 2 * D, part_d, dy_d, x_d, stat_d, stat_d + D, R, D,
                         ch.chunk));
  GPU(pai_gpu_sum_parts(g, 2 * D, sums_d, part_d, ch.n_chunks, 2 * D));
  GPU(pai_gpu_bn_back_coef(g, D, coef_d, sums_d, stat_d, g_d, (double)R, D));
  GPU(pai_gpu_bn_back_apply(g, (int64_t)n, dx_d, dy_d, x_d, stat_d, coef_d, D));
  float *dxg = back(g, dx_d, n);
  compare("batch norm backward (input gradient)", "fp32", dxg, dx, n, TOL32, NULL);
  double sums[2 * D];
  GPU(pai_gpu_download(g, sums, sums_d, sizeof sums));
  float fs[2 * D];
  for (int c = 0; c < 2 * D; c++) fs[c] = (float)sums[c];
  for (int c = 0; c < D; c++) r[c] = sdy[c], r[D + c] = sdyx[c];
  compare("batch norm backward (beta, gamma gradients)", "fp32", fs, r, 2 * D, TOL32, NULL);

  /* the depthwise layer with batch norm 1 fused: m = x + bias + sum_k w[k] h[p + (k-2) dil] */
  float *w = host(5 * D, 0.5f), *bias = host(D, 0.3f);
  double *m = dhost(n), *dh = dhost(n), *dw = dhost(6 * D);
  for (int64_t rr = 0; rr < R; rr++) {
    const int p = (int)(rr % L);
    for (int c = 0; c < D; c++) {
      double acc = (double)x[rr * D + c] + bias[c], accd = 0;
      for (int k = 0; k < 5; k++) {
        const int off = (k - 2) * DIL;
        if (p + off >= 0 && p + off < L) {
          acc += (double)w[k * D + c] * h[(rr + off) * D + c];
          dw[k * D + c] += h[(rr + off) * D + c] * dy[rr * D + c];
        }
        if (p - off >= 0 && p - off < L) accd += (double)w[k * D + c] * dy[(rr - off) * D + c];
      }
      m[rr * D + c] = acc;
      dh[rr * D + c] = accd;
      dw[5 * D + c] += dy[rr * D + c];
    }
  }
  float *w_d = dev(g, w, 5 * D, PAI_F32), *bias_d = dev(g, bias, D, PAI_F32);
  float *m_d = scratch(g, n * sizeof(float)), *y_d = scratch(g, n * sizeof(float));
  poison(g, m_d, n * sizeof(float));
  GPU(pai_gpu_dwconv_train(g, (int64_t)n, m_d, x_d, stat_d, g_d, b_d, w_d, bias_d, L, D, DIL));
  float *got = back(g, m_d, n);
  compare("depthwise conv + BN1 + residual, training forward (kernel)", "fp32", got, m, n, TOL32,
          NULL);
  free(got);
  poison(g, y_d, n * sizeof(float));
  poison(g, m_d, n * sizeof(float));
  GPU(pai_gpu_dwconv_lib(g, y_d, h_d, w_d, B, L, D, DIL, 0, L));
  GPU(pai_gpu_add3(g, (int64_t)n, m_d, x_d, y_d, bias_d, D));
  got = back(g, m_d, n);
  compare("depthwise conv + residual, training forward (library + kernel)", "fp32", got, m, n,
          TOL32, NULL);
  free(got);
  /* the same with batch norm 2's sums (sum m, sum m^2 per channel) from the same kernel */
  poison(g, part_d, (size_t)ch.n_chunks * 6 * D * sizeof(double));
  poison(g, sums_d, 6 * D * sizeof(double));
  poison(g, m_d, n * sizeof(float));
  GPU(pai_gpu_dwconv_train_stats(g, ch.n_chunks * D, part_d, m_d, x_d, stat_d, g_d, b_d, w_d,
                                 bias_d, R, L, D, DIL, ch.chunk));
  GPU(pai_gpu_sum_parts(g, 2 * D, sums_d, part_d, ch.n_chunks, 2 * D));
  got = back(g, m_d, n);
  compare("depthwise conv + BN1 + residual with BN2 sums, training forward (kernel)", "fp32",
          got, m, n, TOL32, NULL);
  free(got);
  {
    double s2[2 * D], r2[2 * D] = {0};
    float f2[2 * D];
    GPU(pai_gpu_download(g, s2, sums_d, sizeof s2));
    for (size_t i = 0; i < n; i++) r2[i % D] += m[i], r2[D + i % D] += m[i] * m[i];
    for (int c = 0; c < 2 * D; c++) f2[c] = (float)s2[c];
    compare("  its BN2 sums: sum m", "fp32", f2, r2, D, TOL32, NULL);
    compare("  its BN2 sums: sum m^2", "fp32", f2 + D, r2 + D, D, TOL32, NULL);
  }
  poison(g, part_d, (size_t)ch.n_chunks * 6 * D * sizeof(double));
  poison(g, sums_d, 6 * D * sizeof(double));
  poison(g, y_d, n * sizeof(float));
  GPU(pai_gpu_dwconv_dh_stats(g, ch.n_chunks * D, part_d, y_d, dy_d, w_d, x_d, stat_d, R, L, D,
                              DIL, ch.chunk));
  GPU(pai_gpu_sum_parts(g, 2 * D, sums_d, part_d, ch.n_chunks, 2 * D));
  got = back(g, y_d, n);
  compare("depthwise conv backward, input gradient with BN1 backward sums (kernel)", "fp32", got,
          dh, n, TOL32, NULL);
  free(got);
  {
    double s2[2 * D], r2[2 * D] = {0};
    float f2[2 * D];
    GPU(pai_gpu_download(g, s2, sums_d, sizeof s2));
    for (size_t i = 0; i < n; i++) {
      const int c = (int)(i % D);
      r2[c] += dh[i];
      r2[D + c] += dh[i] * (x[i] - mu[c]) * istd[c];
    }
    for (int c = 0; c < 2 * D; c++) f2[c] = (float)s2[c];
    compare("  its BN1 backward sums: sum dh", "fp32", f2, r2, D, TOL32, NULL);
    compare("  its BN1 backward sums: sum dh xhat", "fp32", f2 + D, r2 + D, D, TOL32, NULL);
  }
  poison(g, y_d, n * sizeof(float));
  GPU(pai_gpu_dwconv_dh(g, (int64_t)n, y_d, dy_d, w_d, L, D, DIL));
  got = back(g, y_d, n);
  compare("depthwise conv backward, input gradient (kernel)", "fp32", got, dh, n, TOL32, NULL);
  free(got);
  poison(g, y_d, n * sizeof(float));
  GPU(pai_gpu_dwconv_lib_dx(g, y_d, dy_d, w_d, B, L, D, DIL));
  got = back(g, y_d, n);
  compare("depthwise conv backward, input gradient (library)", "fp32", got, dh, n, TOL32, NULL);
  free(got);
  poison(g, part_d, (size_t)ch.n_chunks * 6 * D * sizeof(double));
  poison(g, sums_d, 6 * D * sizeof(double));
  GPU(pai_gpu_dwgrad_part(g, ch.n_chunks * 6 * D, part_d, dy_d, x_d, stat_d, g_d, b_d, R, L, D,
                          DIL, ch.chunk));
  GPU(pai_gpu_sum_parts(g, 6 * D, sums_d, part_d, ch.n_chunks, 6 * D));
  double s6[6 * D];
  GPU(pai_gpu_download(g, s6, sums_d, sizeof s6));
  float f6[6 * D];
  for (int i = 0; i < 6 * D; i++) f6[i] = (float)s6[i];
  compare("depthwise conv backward, kernel gradient (kernel, BN1 fused)", "fp32", f6, dw, 5 * D,
          TOL32, NULL);
  compare("depthwise conv backward, bias gradient", "fp32", f6 + 5 * D, dw + 5 * D, D, TOL32,
          NULL);
  float *dwl_d = scratch(g, 5 * D * sizeof(float));
  poison(g, dwl_d, 5 * D * sizeof(float));
  GPU(pai_gpu_dwconv_lib_dw(g, dwl_d, dy_d, h_d, B, L, D, DIL));
  got = back(g, dwl_d, 5 * D);
  compare("depthwise conv backward, kernel gradient (library)", "fp32", got, dw, 5 * D, TOL32,
          NULL);
  free(got);
  free(x), free(gamma), free(beta), free(mov_mean), free(mov_var), free(mu), free(var);
  free(istd), free(h), free(stat), free(mm), free(mv), free(hg), free(r), free(dy), free(dx0);
  free(sdy), free(sdyx), free(dx), free(dxg), free(w), free(bias), free(m), free(dh), free(dw);
}

/* The dense layers' gradient products, as the trainer forms them: dW = A^T dY (accumulating
 * into dW) and dA = dY W^T. */
static void check_dense_backward(pai_gpu *g) {
  enum { M = 37, K = 24, N = 40 };
  float *a = host((size_t)M * K, 1), *w = host((size_t)K * N, 0.5f), *dy = host((size_t)M * N, 1);
  float *dw0 = host((size_t)K * N, 0.1f);
  pai_dtype t = dt;
  /* the reference from the unrounded operands; in bf16 the GPU's rounding of them is what the
   * per-element bound allows for */
  double *rdw = dhost((size_t)K * N), *bdw = dhost((size_t)K * N);
  double *rda = dhost((size_t)M * K), *bda = dhost((size_t)M * K);
  for (int i = 0; i < K; i++)
    for (int j = 0; j < N; j++) {
      double s = dw0[i * N + j], b = 0;
      for (int r = 0; r < M; r++) {
        s += (double)a[r * K + i] * dy[r * N + j];
        b += fabs((double)a[r * K + i] * dy[r * N + j]);
      }
      rdw[i * N + j] = s;
      bdw[i * N + j] = ldexp(b, -7);
    }
  for (int r = 0; r < M; r++)
    for (int i = 0; i < K; i++) {
      double s = 0, b = 0;
      for (int j = 0; j < N; j++) {
        s += (double)dy[r * N + j] * w[i * N + j];
        b += fabs((double)dy[r * N + j] * w[i * N + j]);
      }
      rda[r * K + i] = s;
      bda[r * K + i] = ldexp(b, -7);
    }
  void *a_d = dev(g, a, (size_t)M * K, t), *w_d = dev(g, w, (size_t)K * N, t),
       *dy_d = dev(g, dy, (size_t)M * N, t);
  float *dw_d = dev(g, dw0, (size_t)K * N, PAI_F32), *da_d = scratch(g, (size_t)M * K * 4);
  const pai_gemm gw = {.M = K, .N = N, .K = M, .trans_a = 1, .ab_type = t, .c_type = PAI_F32,
                       .a = a_d, .lda = K, .b = dy_d, .ldb = N, .c = dw_d, .ldc = N, .beta = 1.0f};
  const pai_gemm ga = {.M = M, .N = K, .K = N, .trans_b = 1, .ab_type = t, .c_type = PAI_F32,
                       .a = dy_d, .lda = N, .b = w_d, .ldb = N, .c = da_d, .ldc = K};
  GPU(pai_gpu_gemm(g, &gw));
  poison(g, da_d, (size_t)M * K * sizeof(float));
  GPU(pai_gpu_gemm(g, &ga));
  float *gdw = back(g, dw_d, (size_t)K * N), *gda = back(g, da_d, (size_t)M * K);
  compare("dense backward, kernel gradient A^T dY (accumulating)", prec, gdw, rdw, (size_t)K * N,
          TOL32, t == PAI_BF16 ? bdw : NULL);
  compare("dense backward, input gradient dY W^T", prec, gda, rda, (size_t)M * K, TOL32,
          t == PAI_BF16 ? bda : NULL);
  free(a), free(w), free(dy), free(dw0), free(rdw), free(bdw), free(rda), free(bda), free(gdw);
  free(gda);
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "fp32") && strcmp(argv[1], "bf16"))) {
    fprintf(stderr, "usage: layer_check fp32|bf16\n");
    return 2;
  }
  prec = argv[1];
  dt = strcmp(prec, "bf16") ? PAI_F32 : PAI_BF16;
  pai_gpu *g = NULL;
  if (pai_gpu_open(&g, 0) < 0) return 2;
  printf("layer_check on %s, %s\n", pai_gpu_name(g), prec);
  check_stem(g);
  check_dwconv(g);
  check_ffn(g, LO, HI);
  check_ffn(g, 0, L);   /* every row: the second product runs once over all sequences */
  check_head(g);
  check_train_bn_dwconv(g);
  check_dense_backward(g);
  pai_gpu_close(g);
  printf("%d of %d checks passed\n", checks - failures, checks);
  return failures ? 1 : 0;
}
