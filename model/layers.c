/* layers.c - see layers.h. */
#include "model/layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define KSIZE 5
#define HALF 2   /* (KSIZE - 1) / 2 */

void stem_forward_cpu(float *y, const uint8_t *codes, const float *w, const float *b, int D,
                      int lo, int hi) {
  /* onehot(code) W is row `code` of W, or nothing for code 4 (all-zero one-hot row). */
#pragma omp parallel for schedule(static)
  for (int p = lo; p < hi; p++) {
    float *yp = y + (size_t)p * D;
    int code = codes[p];
    if (code < 4) {
      const float *wr = w + (size_t)code * D;
      for (int c = 0; c < D; c++) yp[c] = pai_relu(wr[c] + b[c]);
    } else {
      for (int c = 0; c < D; c++) yp[c] = pai_relu(b[c]);
    }
  }
}

void bn_fold(float *scale, float *shift, const float *gamma, const float *beta,
             const float *mean, const float *var, double eps, int D) {
  for (int c = 0; c < D; c++) {
    double s = gamma[c] / sqrt((double)var[c] + eps);
    scale[c] = (float)s;
    shift[c] = (float)(beta[c] - mean[c] * s);
  }
}

void dwconv_bn_prepare(float *ws, float *wc, float *bfull, const float *w, const float *b,
                       const float *scale, const float *shift, int D) {
  for (int c = 0; c < D; c++) bfull[c] = b[c];
  for (int k = 0; k < KSIZE; k++)
    for (int c = 0; c < D; c++) {
      ws[k * D + c] = w[k * D + c] * scale[c];
      wc[k * D + c] = w[k * D + c] * shift[c];
      bfull[c] += wc[k * D + c];
    }
}

void dwconv_bn_res_forward_cpu(float *m, const float *x, const float *ws, const float *wc,
                               const float *bfull, const float *b, int L, int D, int dil,
                               int lo, int hi) {
#pragma omp parallel for schedule(static)
  for (int p = lo; p < hi; p++) {
    float *mp = m + (size_t)p * D;
    const float *xp = x + (size_t)p * D;
    if (p - HALF * dil >= 0 && p + HALF * dil < L) {
      /* interior: every tap is real input; the shift terms are folded into bfull */
      const float *x0 = x + (size_t)(p - 2 * dil) * D, *x1 = x + (size_t)(p - dil) * D;
      const float *x3 = x + (size_t)(p + dil) * D, *x4 = x + (size_t)(p + 2 * dil) * D;
      const float *w0 = ws, *w1 = ws + D, *w2 = ws + 2 * D, *w3 = ws + 3 * D, *w4 = ws + 4 * D;
      for (int c = 0; c < D; c++)
        mp[c] = xp[c] + bfull[c] + w0[c] * x0[c] + w1[c] * x1[c] + w2[c] * xp[c] +
                w3[c] * x3[c] + w4[c] * x4[c];
    } else {
      /* edge: taps in the zero padding contribute neither w*scale*x nor w*shift */
      for (int c = 0; c < D; c++) mp[c] = xp[c] + b[c];
      for (int k = 0; k < KSIZE; k++) {
        int q = p + (k - HALF) * dil;
        if (q < 0 || q >= L) continue;
        const float *xq = x + (size_t)q * D, *wk = ws + k * D, *ck = wc + k * D;
        for (int c = 0; c < D; c++) mp[c] += wk[c] * xq[c] + ck[c];
      }
    }
  }
}

void dwconv_bn_res_interior_cpu(float *m, const float *x, const float *ws, const float *bfull,
                                int B, int n, int D, int dil) {
  const int n_in = n + 4 * dil;
  const float *w0 = ws, *w1 = ws + D, *w2 = ws + 2 * D, *w3 = ws + 3 * D, *w4 = ws + 4 * D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++)
    for (int q = 0; q < n; q++) {
      const float *x0 = x + ((size_t)b * n_in + q) * D;   /* row q + 2 dil is the centre tap */
      const float *x1 = x0 + (size_t)dil * D, *xp = x0 + (size_t)2 * dil * D;
      const float *x3 = x0 + (size_t)3 * dil * D, *x4 = x0 + (size_t)4 * dil * D;
      float *mp = m + ((size_t)b * n + q) * D;
      for (int c = 0; c < D; c++)
        mp[c] = xp[c] + bfull[c] + w0[c] * x0[c] + w1[c] * x1[c] + w2[c] * xp[c] +
                w3[c] * x3[c] + w4[c] * x4[c];
    }
}

void ffn_res_forward_cpu(float *m, const float *scale2, const float *shift2, const float *w1,
                         const float *b1, const float *w2, const float *b2, int D, int F,
                         int lo, int hi, int chunk, float *gin, float *t) {
  for (int r0 = lo; r0 < hi; r0 += chunk) {
    const int rows = hi - r0 < chunk ? hi - r0 : chunk;
    float *mr = m + (size_t)r0 * D;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < D; c++)
        gin[(size_t)r * D + c] = mr[(size_t)r * D + c] * scale2[c] + shift2[c];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, F, D, 1.0f, gin, D, w1, F, 0.0f,
                t, F);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
      float *tr = t + (size_t)r * F;
      for (int f = 0; f < F; f++) tr[f] = pai_relu(tr[f] + b1[f]);
      float *mrow = mr + (size_t)r * D;   /* gin holds BN2(m): m itself may now change */
      for (int c = 0; c < D; c++) mrow[c] += b2[c];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, F, 1.0f, t, F, w2, D, 1.0f,
                mr, D);
  }
}

void head_accumulate_cpu(float *out, const float *x, const float *p, const float *c, int D,
                         int T, int crop, int O, float *tmp) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, T, D, 1.0f, x + (size_t)crop * D, D,
              p, T, 0.0f, tmp, T);
#pragma omp parallel for schedule(static)
  for (int o = 0; o < O; o++)
    for (int j = 0; j < T; j++) out[(size_t)o * T + j] += pai_relu(tmp[(size_t)o * T + j] + c[j]);
}
