/* train.c - see train.h. Forward in training mode, then the backward pass, block by block.
 *
 * Notation per block i (REFERENCE.md section 2), rows r = (sequence b, position p):
 *   x = layer_i;  h = BN1(x);  m = x + dwconv(h) + b_dw;  g = BN2(m);
 *   u = ReLU(g W1 + b1);  layer_{i+1} = m + u W2 + b2.
 * Kept from the forward pass: x, m, u and the four BN statistics; h and g are recomputed from
 * them when the backward pass needs them (one cheap element-wise pass each).
 *
 * Synchronised batch norm: mean and (biased) variance over all rows of all ranks, from summed
 * per-channel sums and sums of squares (accumulated in double). Its backward pass needs the
 * global sums of dy and dy * xhat as well:
 *   dx = gamma * istd * (dy - sum(dy) / n - xhat * sum(dy * xhat) / n),   n = rows of all ranks.
 * The parameter gradients (dgamma = sum dy * xhat, dbeta = sum dy) take this rank's partial sums
 * only, because the whole gradient buffer is summed over the ranks at the end of the step.
 *
 * Per-channel reductions over rows use per-thread partials in double, added in thread order:
 * the result depends on the thread count, not on scheduling. */
#include "model/train.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/layers.h"
#include "mpi/log.h"

#define KSIZE 5
#define HALF 2

/* Doubles of per-thread partials one thread needs: the widest reduction is the depthwise
 * backward (K kernel rows + bias + spare) or a head's bias (T). */
static size_t part_width(const pai_config *c) {
  size_t w = (size_t)(KSIZE + 2) * c->model_dim;
  if ((size_t)4 * c->model_dim > w) w = (size_t)4 * c->model_dim;
  if ((size_t)pai_max_output_dim(c) > w) w = (size_t)pai_max_output_dim(c);
  return w;
}

size_t pai_trainer_bytes(const pai_config *c, int max_batch) {
  const size_t N = (size_t)c->num_blocks, D = (size_t)c->model_dim, F = 4 * D;
  const size_t rows = (size_t)max_batch * (size_t)c->input_length;
  const size_t head = (size_t)max_batch * (size_t)c->output_length * (size_t)pai_max_output_dim(c);
  const size_t n_short = (size_t)pai_n_shortcuts(c);
  return (N + 1) * pai_arena_bytes(rows * D, sizeof(float)) +
         N * pai_arena_bytes(rows * D, sizeof(float)) +
         N * pai_arena_bytes(rows * F, sizeof(float)) +
         pai_arena_bytes(N * 4 * D, sizeof(float)) +
         (n_short + 2) * pai_arena_bytes(head, sizeof(float)) +
         3 * pai_arena_bytes(rows * D, sizeof(float)) + pai_arena_bytes(rows * F, sizeof(float));
}

/* The fields every backend sets. */
static int trainer_base(pai_trainer *t, const pai_config *cfg, int max_batch, pai_comm *comm) {
  memset(t, 0, sizeof *t);
  if (max_batch < 1) {
    PAI_ERR("batch size must be >= 1 (got %d)", max_batch);
    return PAI_ERR_USAGE;
  }
  t->cfg = *cfg;
  t->max_batch = max_batch;
  t->comm = comm;
  return 0;
}

int pai_trainer_init(pai_trainer *t, const pai_config *cfg, int max_batch, pai_comm *comm) {
  PAI_TRY(trainer_base(t, cfg, max_batch, comm));
  t->n_threads = omp_get_max_threads();
  const int N = cfg->num_blocks, n_short = pai_n_shortcuts(cfg);
  const size_t D = (size_t)cfg->model_dim, F = 4 * D;
  const size_t rows = (size_t)max_batch * (size_t)cfg->input_length;
  const size_t head = (size_t)max_batch * (size_t)cfg->output_length * (size_t)pai_max_output_dim(cfg);

  t->act = calloc((size_t)N + 1, sizeof *t->act);
  t->mid = calloc((size_t)N, sizeof *t->mid);
  t->hid = calloc((size_t)N, sizeof *t->hid);
  t->head_relu = calloc((size_t)n_short, sizeof *t->head_relu);
  t->part = malloc((size_t)t->n_threads * part_width(cfg) * sizeof(double));
  t->sums = malloc(2 * part_width(cfg) * sizeof(double));
  const size_t bytes = pai_trainer_bytes(cfg, max_batch);
  if (!t->act || !t->mid || !t->hid || !t->head_relu || !t->part || !t->sums ||
      pai_arena_init(&t->arena, bytes) < 0) {
    PAI_ERR("cannot allocate %.2f GiB of training activations for %d sequences of %d positions "
            "(model_dim %d, %d blocks); use a smaller batch per rank or more ranks",
            (double)bytes / (1u << 30), max_batch, cfg->input_length, cfg->model_dim, N);
    pai_trainer_free(t);
    return PAI_ERR_NOMEM;
  }
  for (int i = 0; i <= N; i++) t->act[i] = pai_arena_take(&t->arena, rows * D, sizeof(float));
  for (int i = 0; i < N; i++) t->mid[i] = pai_arena_take(&t->arena, rows * D, sizeof(float));
  for (int i = 0; i < N; i++) t->hid[i] = pai_arena_take(&t->arena, rows * F, sizeof(float));
  t->stats = pai_arena_take(&t->arena, (size_t)N * 4 * D, sizeof(float));
  for (int k = 0; k < n_short; k++) t->head_relu[k] = pai_arena_take(&t->arena, head, sizeof(float));
  t->pred = pai_arena_take(&t->arena, head, sizeof(float));
  t->dpred = pai_arena_take(&t->arena, head, sizeof(float));
  t->nb = pai_arena_take(&t->arena, rows * D, sizeof(float));
  t->da = pai_arena_take(&t->arena, rows * D, sizeof(float));
  t->dg = pai_arena_take(&t->arena, rows * D, sizeof(float));
  t->ds = pai_arena_take(&t->arena, rows * F, sizeof(float));
  return 0;
}

int pai_trainer_init_backend(pai_trainer *t, const pai_config *cfg, int max_batch, pai_comm *comm,
                             const pai_backend *backend) {
  if (backend->device == PAI_DEVICE_CPU) return pai_trainer_init(t, cfg, max_batch, comm);
  PAI_TRY(trainer_base(t, cfg, max_batch, comm));
  int rc = pai_trainer_gpu_init(t, backend);
  if (rc < 0) pai_trainer_free(t);
  return rc;
}

int pai_trainer_step(pai_trainer *t, const pai_adamw *o, pai_params *P, const pai_params *grad,
                     float *m, float *v, int64_t step) {
  if (t->gpu) return pai_trainer_gpu_step(t, o, P, m, v, step);
  pai_adamw_step(o, P, grad->data, m, v, step, NULL);
  return 0;
}

int pai_trainer_sync(pai_trainer *t, pai_params *P, float *m, float *v) {
  return t->gpu ? pai_trainer_gpu_sync(t, P, m, v) : 0;
}

void pai_trainer_free(pai_trainer *t) {
  pai_trainer_gpu_free(t);
  free(t->act);
  free(t->mid);
  free(t->hid);
  free(t->head_relu);
  free(t->part);
  free(t->sums);
  pai_arena_free(&t->arena);
  memset(t, 0, sizeof *t);
}

/* ---- per-channel reductions ---------------------------------------------------------------- */

/* Adds the per-thread partials (n_used threads, width w) into out (double). */
static void reduce_parts(const pai_trainer *t, int n_used, size_t w, double *out) {
  for (int th = 0; th < n_used; th++) {
    const double *p = t->part + (size_t)th * w;
    for (size_t c = 0; c < w; c++) out[c] += p[c];
  }
}

/* out[c] += sum over rows of a[r][c]  (a: rows x cols). */
static void colsum_add(pai_trainer *t, const float *a, size_t rows, int cols, float *out) {
  int n_used = 1;
#pragma omp parallel num_threads(t->n_threads)
  {
    double *acc = t->part + (size_t)omp_get_thread_num() * cols;
    memset(acc, 0, (size_t)cols * sizeof *acc);
#pragma omp single
    n_used = omp_get_num_threads();
#pragma omp for schedule(static)
    for (size_t r = 0; r < rows; r++) {
      const float *ar = a + r * cols;
      for (int c = 0; c < cols; c++) acc[c] += ar[c];
    }
  }
  double *s = t->sums;
  memset(s, 0, (size_t)cols * sizeof *s);
  reduce_parts(t, n_used, (size_t)cols, s);
  for (int c = 0; c < cols; c++) out[c] += (float)s[c];
}

/* ---- batch norm ----------------------------------------------------------------------------- */

/* Per-channel sums over rows x D, this rank only, into t->sums:
 *   s[c] = sum_r u[r][c],   s[D + c] = sum_r u[r][c] * vhat[r][c]
 * with vhat = (v - mean) * istd, or vhat = v when mean is NULL. Batch norm needs (x, x^2) going
 * forward and (dy, dy * xhat) going back. */
static double *pair_sums(pai_trainer *t, const float *u, const float *v, const float *mean,
                         const float *istd, size_t rows) {
  const int D = t->cfg.model_dim;
  int n_used = 1;
#pragma omp parallel num_threads(t->n_threads)
  {
    double *acc = t->part + (size_t)omp_get_thread_num() * 2 * D;
    memset(acc, 0, (size_t)2 * D * sizeof *acc);
#pragma omp single
    n_used = omp_get_num_threads();
#pragma omp for schedule(static)
    for (size_t r = 0; r < rows; r++) {
      const float *ur = u + r * D, *vr = v + r * D;
      if (mean) {
        for (int c = 0; c < D; c++) {
          acc[c] += ur[c];
          acc[D + c] += (double)ur[c] * ((vr[c] - mean[c]) * istd[c]);
        }
      } else {
        for (int c = 0; c < D; c++) {
          acc[c] += ur[c];
          acc[D + c] += (double)ur[c] * vr[c];
        }
      }
    }
  }
  double *s = t->sums;
  memset(s, 0, (size_t)2 * D * sizeof *s);
  reduce_parts(t, n_used, (size_t)2 * D, s);
  return s;
}

/* Batch statistics of x (rows x D) over all ranks: mean and 1/sqrt(var + eps) into stat[0..2D),
 * and the moving statistics updated. */
static int bn_forward_stats(pai_trainer *t, const float *x, size_t rows, size_t global_rows,
                            float *mean, float *istd, float *mov_mean, float *mov_var) {
  const int D = t->cfg.model_dim;
  double *s = pair_sums(t, x, x, NULL, NULL, rows);
  PAI_TRY(pai_comm_sum_f64(t->comm, s, (size_t)2 * D));
  const double n = (double)global_rows, mom = PAI_BN_MOMENTUM;
  for (int c = 0; c < D; c++) {
    const double mu = s[c] / n;
    double var = s[D + c] / n - mu * mu;
    if (var < 0) var = 0;   /* rounding, for a constant channel */
    mean[c] = (float)mu;
    istd[c] = (float)(1.0 / sqrt(var + t->cfg.bn_epsilon));
    mov_mean[c] = (float)(mom * mov_mean[c] + (1.0 - mom) * mu);
    mov_var[c] = (float)(mom * mov_var[c] + (1.0 - mom) * var);
  }
  return 0;
}

/* y = (x - mean) * istd * gamma + beta over rows x D. */
static void bn_apply(float *y, const float *x, size_t rows, int D, const float *mean,
                     const float *istd, const float *gamma, const float *beta) {
#pragma omp parallel for schedule(static)
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    for (int c = 0; c < D; c++) yr[c] = (xr[c] - mean[c]) * istd[c] * gamma[c] + beta[c];
  }
}

/* Backward of synchronised batch norm: dx += d/dx given dy (the gradient of the BN output);
 * dgamma, dbeta += this rank's sums. */
static int bn_backward(pai_trainer *t, float *dx, const float *dy, const float *x, size_t rows,
                       size_t global_rows, const float *mean, const float *istd,
                       const float *gamma, float *dgamma, float *dbeta) {
  const int D = t->cfg.model_dim;
  double *s = pair_sums(t, dy, x, mean, istd, rows);
  for (int c = 0; c < D; c++) {
    dbeta[c] += (float)s[c];
    dgamma[c] += (float)s[D + c];
  }
  PAI_TRY(pai_comm_sum_f64(t->comm, s, (size_t)2 * D));
  const double n = (double)global_rows;
  float *k0 = (float *)t->part, *k1 = k0 + D, *k2 = k1 + D;   /* part is free again */
  for (int c = 0; c < D; c++) {
    k0[c] = gamma[c] * istd[c];
    k1[c] = (float)(s[c] / n);
    k2[c] = (float)(s[D + c] / n);
  }
#pragma omp parallel for schedule(static)
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * D, *dyr = dy + r * D;
    float *dxr = dx + r * D;
    for (int c = 0; c < D; c++) {
      const float xhat = (xr[c] - mean[c]) * istd[c];
      dxr[c] += k0[c] * (dyr[c] - k1[c] - xhat * k2[c]);
    }
  }
  return 0;
}

/* ---- depthwise convolution over B sequences of L rows ---------------------------------------- */

/* m = x + b + sum_k w[k] * h[p + (k - 2) dil], zero padding at each sequence's ends. */
static void dwconv_res_forward(float *m, const float *x, const float *h, const float *w,
                               const float *bias, int B, int L, int D, int dil) {
#pragma omp parallel for schedule(static)
  for (size_t r = 0; r < (size_t)B * L; r++) {
    const int p = (int)(r % (size_t)L);
    const float *xr = x + r * D;
    float *mr = m + r * D;
    for (int c = 0; c < D; c++) mr[c] = xr[c] + bias[c];
    for (int k = 0; k < KSIZE; k++) {
      const int off = (k - HALF) * dil;
      if (p + off < 0 || p + off >= L) continue;
      const float *hq = h + (size_t)((ptrdiff_t)r + off) * D, *wk = w + (size_t)k * D;
      for (int c = 0; c < D; c++) mr[c] += wk[c] * hq[c];
    }
  }
}

/* Given dm (gradient of m): dbias, dw += sums; dh = sum_k w[k] * dm[q - (k - 2) dil]. */
static void dwconv_backward(pai_trainer *t, float *dh, const float *dm, const float *h,
                            const float *w, float *dw, float *dbias, int B, int L, int D,
                            int dil) {
  const size_t width = (size_t)(KSIZE + 1) * D;
  int n_used = 1;
#pragma omp parallel num_threads(t->n_threads)
  {
    double *acc = t->part + (size_t)omp_get_thread_num() * width;
    memset(acc, 0, width * sizeof *acc);
#pragma omp single
    n_used = omp_get_num_threads();
#pragma omp for schedule(static)
    for (size_t r = 0; r < (size_t)B * L; r++) {
      const int p = (int)(r % (size_t)L);
      const float *dmr = dm + r * D;
      float *dhr = dh + r * D;
      double *ab = acc + (size_t)KSIZE * D;
      for (int c = 0; c < D; c++) {
        ab[c] += dmr[c];
        dhr[c] = 0.0f;
      }
      for (int k = 0; k < KSIZE; k++) {
        const int off = (k - HALF) * dil;
        const float *wk = w + (size_t)k * D;
        double *ak = acc + (size_t)k * D;
        if (p + off >= 0 && p + off < L) {   /* tap k of output row p read h at p + off */
          const float *hq = h + (size_t)((ptrdiff_t)r + off) * D;
          for (int c = 0; c < D; c++) ak[c] += (double)hq[c] * dmr[c];
        }
        if (p - off >= 0 && p - off < L) {   /* row p of h fed output row p - off via tap k */
          const float *dmq = dm + (size_t)((ptrdiff_t)r - off) * D;
          for (int c = 0; c < D; c++) dhr[c] += wk[c] * dmq[c];
        }
      }
    }
  }
  double *s = t->sums;
  memset(s, 0, width * sizeof *s);
  reduce_parts(t, n_used, width, s);
  for (size_t e = 0; e < (size_t)KSIZE * D; e++) dw[e] += (float)s[e];
  for (int c = 0; c < D; c++) dbias[c] += (float)s[(size_t)KSIZE * D + c];
}

/* ---- the step -------------------------------------------------------------------------------- */

/* Head `head`'s projection of layer_s (shortcut k): head_relu[k] = ReLU(layer_s P + c) at the
 * cropped rows of each sequence, added into pred. */
static void head_forward(pai_trainer *t, const pai_params *P, int head, int k, int B) {
  const pai_config *c = &t->cfg;
  const int D = c->model_dim, L = c->input_length, O = c->output_length, T = c->output_dims[head];
  const int s = pai_shortcut_layer(c, k);
  const pai_proj_params *pp = pai_proj(P, head, k);
  for (int b = 0; b < B; b++) {
    float *hr = t->head_relu[k] + (size_t)b * O * T, *pr = t->pred + (size_t)b * O * T;
    const float *xs = t->act[s] + ((size_t)b * L + pai_crop(c)) * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, T, D, 1.0f, xs, D, pp->kernel, T,
                0.0f, hr, T);
#pragma omp parallel for schedule(static)
    for (int o = 0; o < O; o++)
      for (int j = 0; j < T; j++) {
        float v = pai_relu(hr[(size_t)o * T + j] + pp->bias[j]);
        hr[(size_t)o * T + j] = v;
        pr[(size_t)o * T + j] += v;
      }
  }
}

/* Backward of head_forward for shortcut k: gradients of P, c and (added) of layer_s's rows. */
static void head_backward(pai_trainer *t, const pai_params *P, pai_params *G, int head, int k,
                          int B) {
  const pai_config *c = &t->cfg;
  const int D = c->model_dim, L = c->input_length, O = c->output_length, T = c->output_dims[head];
  const int s = pai_shortcut_layer(c, k);
  const float inv = 1.0f / (float)pai_n_shortcuts(c);
  const pai_proj_params *pp = pai_proj(P, head, k);
  pai_proj_params *gp = pai_proj(G, head, k);
  /* dpre = dpred / n_short where the ReLU was open, in place of the kept activations */
  float *dpre = t->head_relu[k];
  const size_t n = (size_t)B * O * T;
#pragma omp parallel for schedule(static)
  for (size_t e = 0; e < n; e++) dpre[e] = dpre[e] > 0.0f ? t->dpred[e] * inv : 0.0f;
  colsum_add(t, dpre, (size_t)B * O, T, gp->bias);
  for (int b = 0; b < B; b++) {
    const size_t at = ((size_t)b * L + pai_crop(c)) * D;
    const float *db = dpre + (size_t)b * O * T;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, T, O, 1.0f, t->act[s] + at, D, db, T,
                1.0f, gp->kernel, T);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, D, T, 1.0f, db, T, pp->kernel, T,
                1.0f, t->da + at, D);
  }
}

/* Which shortcut (k) layer s is, or -1. */
static int shortcut_index(const pai_config *c, int s) {
  if (s <= 0 || (c->num_blocks - s) % c->shortcut_freq != 0) return -1;
  return (c->num_blocks - s) / c->shortcut_freq;
}

int pai_trainer_grad(pai_trainer *t, pai_params *P, const uint8_t *codes, const float *y, int B,
                     int head, int global_B, pai_params *G, double *loss) {
  const pai_config *c = &t->cfg;
  const int N = c->num_blocks, D = c->model_dim, F = 4 * D, L = c->input_length;
  const int O = c->output_length;
  if (B < 1 || B > t->max_batch || head < 0 || head >= c->n_heads || global_B < B) {
    PAI_ERR("training step: batch %d (arena %d, global %d), head %d of %d", B, t->max_batch,
            global_B, head, c->n_heads);
    return PAI_ERR_USAGE;
  }
  if (t->gpu) return pai_trainer_gpu_grad(t, P, codes, y, B, head, global_B, G, loss);
  const int T = c->output_dims[head], n_short = pai_n_shortcuts(c);
  const size_t rows = (size_t)B * L, global_rows = (size_t)global_B * L;
  memset(G->data, 0, G->n_floats * sizeof(float));

  /* ---- forward ---- */
  for (int b = 0; b < B; b++)
    stem_forward_cpu(t->act[0] + (size_t)b * L * D, codes + (size_t)b * L, P->stem.kernel,
                     P->stem.bias, D, 0, L);
  memset(t->pred, 0, (size_t)B * O * T * sizeof(float));
  for (int i = 0; i < N; i++) {
    pai_block_params *bp = &P->blocks[i];
    float *st = t->stats + (size_t)i * 4 * D;
    const float *x = t->act[i];
    float *m = t->mid[i], *u = t->hid[i], *out = t->act[i + 1];
    PAI_TRY(bn_forward_stats(t, x, rows, global_rows, st, st + D, bp->bn1_mean, bp->bn1_var));
    bn_apply(t->nb, x, rows, D, st, st + D, bp->bn1_gamma, bp->bn1_beta);
    dwconv_res_forward(m, x, t->nb, bp->dw_kernel, bp->dw_bias, B, L, D, pai_dilation(i));
    PAI_TRY(bn_forward_stats(t, m, rows, global_rows, st + 2 * D, st + 3 * D, bp->bn2_mean,
                             bp->bn2_var));
    bn_apply(t->nb, m, rows, D, st + 2 * D, st + 3 * D, bp->bn2_gamma, bp->bn2_beta);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, F, D, 1.0f, t->nb, D,
                bp->ffn1_kernel, F, 0.0f, u, F);
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
      float *ur = u + r * F;
      for (int f = 0; f < F; f++) ur[f] = pai_relu(ur[f] + bp->ffn1_bias[f]);
      const float *mr = m + r * D;
      float *orow = out + r * D;
      for (int e = 0; e < D; e++) orow[e] = mr[e] + bp->ffn2_bias[e];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, D, F, 1.0f, u, F,
                bp->ffn2_kernel, D, 1.0f, out, D);
    const int k = shortcut_index(c, i + 1);
    if (k >= 0) head_forward(t, P, head, k, B);
  }

  /* ---- loss and its gradient ---- */
  const size_t per = (size_t)O * T;
  const float inv_n = 1.0f / (float)n_short;
  double local = 0;
  for (int b = 0; b < B; b++) {
    const int any = pai_sample_weight(codes + (size_t)b * L, L);
    float *pr = t->pred + b * per, *dp = t->dpred + b * per;
    const float *yb = y + b * per;
    double sq = 0;
    const float scale = any ? 2.0f / ((float)per * (float)global_B) : 0.0f;
    for (size_t e = 0; e < per; e++) {
      pr[e] *= inv_n;
      const float d = pr[e] - yb[e];
      sq += (double)d * d;
      dp[e] = scale * d;
    }
    if (any) local += sq / (double)per;
  }
  local /= global_B;
  PAI_TRY(pai_comm_sum_f64(t->comm, &local, 1));
  *loss = local;

  /* ---- backward ---- */
  memset(t->da, 0, rows * D * sizeof(float));
  for (int i = N - 1; i >= 0; i--) {
    const int k = shortcut_index(c, i + 1);
    if (k >= 0) head_backward(t, P, G, head, k, B);
    pai_block_params *bp = &P->blocks[i], *gb = &G->blocks[i];
    const float *st = t->stats + (size_t)i * 4 * D;
    const float *x = t->act[i], *m = t->mid[i];
    float *u = t->hid[i];
    /* da = d loss / d layer_{i+1} */
    colsum_add(t, t->da, rows, D, gb->ffn2_bias);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, F, D, (int)rows, 1.0f, u, F, t->da, D,
                1.0f, gb->ffn2_kernel, D);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, F, D, 1.0f, t->da, D,
                bp->ffn2_kernel, D, 0.0f, t->ds, F);
    float *ds = t->ds;   /* a local pointer: the loop vectorises (no reload through t) */
#pragma omp parallel for schedule(static)
    for (size_t e = 0; e < rows * F; e++) ds[e] = u[e] > 0.0f ? ds[e] : 0.0f;
    colsum_add(t, t->ds, rows, F, gb->ffn1_bias);
    bn_apply(t->nb, m, rows, D, st + 2 * D, st + 3 * D, bp->bn2_gamma, bp->bn2_beta);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, F, (int)rows, 1.0f, t->nb, D, t->ds,
                F, 1.0f, gb->ffn1_kernel, F);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, D, F, 1.0f, t->ds, F,
                bp->ffn1_kernel, F, 0.0f, t->dg, D);
    /* da becomes d loss / d m: the residual path plus BN2's backward */
    PAI_TRY(bn_backward(t, t->da, t->dg, m, rows, global_rows, st + 2 * D, st + 3 * D,
                        bp->bn2_gamma, gb->bn2_gamma, gb->bn2_beta));
    bn_apply(t->nb, x, rows, D, st, st + D, bp->bn1_gamma, bp->bn1_beta);
    dwconv_backward(t, t->dg, t->da, t->nb, bp->dw_kernel, gb->dw_kernel, gb->dw_bias, B, L, D,
                    pai_dilation(i));
    /* da becomes d loss / d layer_i: the residual path plus BN1's backward */
    PAI_TRY(bn_backward(t, t->da, t->dg, x, rows, global_rows, st, st + D, bp->bn1_gamma,
                        gb->bn1_gamma, gb->bn1_beta));
  }

  /* stem: layer_0 = ReLU(onehot W + b); the ReLU was open where layer_0 > 0 */
  {
    float *gw = G->stem.kernel, *gbias = G->stem.bias;
    const size_t width = (size_t)5 * D;
    int n_used = 1;
    const float *a0 = t->act[0];
#pragma omp parallel num_threads(t->n_threads)
    {
      double *acc = t->part + (size_t)omp_get_thread_num() * width;
      memset(acc, 0, width * sizeof *acc);
#pragma omp single
      n_used = omp_get_num_threads();
#pragma omp for schedule(static)
      for (size_t r = 0; r < rows; r++) {
        const int code = codes[r];
        const float *ar = a0 + r * D, *dr = t->da + r * D;
        double *aw = acc + (size_t)(code < 4 ? code : 4) * D;   /* row 4: the bias only */
        for (int e = 0; e < D; e++)
          if (ar[e] > 0.0f) aw[e] += dr[e];
      }
    }
    double *s = t->sums;
    memset(s, 0, width * sizeof *s);
    reduce_parts(t, n_used, width, s);
    for (int e = 0; e < D; e++) {
      double all = s[(size_t)4 * D + e];
      for (int code = 0; code < 4; code++) {
        gw[(size_t)code * D + e] += (float)s[(size_t)code * D + e];
        all += s[(size_t)code * D + e];
      }
      gbias[e] += (float)all;
    }
  }

  /* one sum over the ranks for the whole gradient buffer */
  return pai_comm_sum_f32(t->comm, G->data, G->n_floats);
}
