/* cone_gpu.c - cone scoring (cone.h) on the GPU backend: the same geometry and the same
 * arithmetic as cone.c, over model/gpu.h.
 *   reference pass: the union's rows [r_lo, r_hi) of every layer, kept on the GPU, with the
 *   kernels and dense products of the GPU forward (model/forward_gpu.c); the heads' per-row sums
 *   come back to the host, which keeps the prefix sums (cone.c's ref_cum).
 *   alternates: per block, one gather of reference rows around every item's cone with the
 *   item's alternate rows inside it, the interior depthwise kernel, and the two dense layers as
 *   single products over all items' rows; the heads' sums per item come back to the host. */
#include <stdlib.h>
#include <string.h>

#include "model/cone.h"
#include "model/gpu.h"
#include "model/gpu_kernels.h"
#include "mpi/log.h"

struct pai_cone_gpu {
  pai_gpu *g;
  pai_dtype dt;
  int bf16;
  int max_ffn, max_head, max_parts;   /* rows of the dense scratch; head rows; partial sums */
  float *stem_w, *stem_b;
  pai_gpu_block *blk;
  void **proj_w;                      /* [n_short] head 0, (D, T0) */
  float **proj_b;
  uint8_t *u, *alt;                   /* (U), (batch) */
  int *cb;                            /* (batch) changed base's union row per item */
  float **ref;                        /* [N + 1] (U, D) */
  void *gin, *t;                      /* (max_ffn, D), (max_ffn, 4D) dense type */
  void *hin;                          /* (max_head, D) dense type */
  float *hout;                        /* (max_head, T0) */
  float *gath, *x, *m;                /* (batch, max_in, D), (batch, max_out, D) x 2 */
  double *part, *host_part;           /* max_parts */
  int *host_cb;                       /* (batch) */
  double *host_alt_sum;               /* (batch) */
};

void pai_cone_gpu_free(pai_cone *cn) {
  struct pai_cone_gpu *s = cn->gpu;
  if (!s) return;
  pai_gpu_close(s->g);
  free(s->blk);
  free(s->proj_w);
  free(s->proj_b);
  free(s->ref);
  free(s->host_part);
  free(s->host_cb);
  free(s->host_alt_sum);
  free(s);
  cn->gpu = NULL;
}

#define PART_CHUNK 4096   /* values per partial sum of a head's output */

int pai_cone_gpu_init(pai_cone *cn, const pai_backend *be) {
  const pai_config *c = &cn->model->cfg;
  const pai_params *P = &cn->model->params;
  const int N = c->num_blocks, D = c->model_dim, L = c->input_length, O = c->output_length;
  const int T0 = c->output_dims[0], n_short = pai_n_shortcuts(c);
  const size_t U = (size_t)cn->n_max - 1 + L, F = (size_t)4 * D;
  struct pai_cone_gpu *s = calloc(1, sizeof *s);
  if (!s) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  cn->gpu = s;
  s->bf16 = be->precision == PAI_PRECISION_BF16;
  s->dt = s->bf16 ? PAI_BF16 : PAI_F32;
  PAI_TRY(pai_gpu_open(&s->g, be->gpu_index));
  pai_gpu *g = s->g;
  const size_t dts = pai_dtype_size(s->dt);
  s->max_ffn = (int)U > cn->batch * cn->max_out ? (int)U : cn->batch * cn->max_out;
  s->max_head = cn->n_max - 1 + O > cn->batch * O ? cn->n_max - 1 + O : cn->batch * O;
  const int per_item = (int)(((int64_t)O * T0 + PART_CHUNK - 1) / PART_CHUNK);
  s->max_parts = s->max_head > cn->batch * per_item ? s->max_head : cn->batch * per_item;
  s->blk = calloc((size_t)N, sizeof *s->blk);
  s->proj_w = calloc((size_t)n_short, sizeof *s->proj_w);
  s->proj_b = calloc((size_t)n_short, sizeof *s->proj_b);
  s->ref = calloc((size_t)N + 1, sizeof *s->ref);
  s->host_part = malloc((size_t)s->max_parts * sizeof *s->host_part);
  s->host_cb = malloc((size_t)cn->batch * sizeof *s->host_cb);
  s->host_alt_sum = malloc((size_t)cn->batch * sizeof *s->host_alt_sum);
  if (!s->blk || !s->proj_w || !s->proj_b || !s->ref || !s->host_part || !s->host_cb ||
      !s->host_alt_sum) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  int ok = 1;
#define TAKE(ptr, bytes, what) ok = ok && ((ptr) = pai_gpu_alloc(g, (bytes), (what))) != NULL
  TAKE(s->u, U, "union codes");
  TAKE(s->alt, (size_t)cn->batch, "alternate codes");
  TAKE(s->cb, (size_t)cn->batch * sizeof(int), "alternate rows");
  for (int i = 0; i <= N; i++) TAKE(s->ref[i], U * D * sizeof(float), "reference layers");
  TAKE(s->gin, (size_t)s->max_ffn * D * dts, "dense-layer input");
  TAKE(s->t, (size_t)s->max_ffn * F * dts, "dense-layer hidden");
  TAKE(s->hin, (size_t)s->max_head * D * dts, "head input");
  TAKE(s->hout, (size_t)s->max_head * T0 * sizeof(float), "head output");
  TAKE(s->gath, (size_t)cn->batch * cn->max_in * D * sizeof(float), "cone gather");
  TAKE(s->x, (size_t)cn->batch * cn->max_out * D * sizeof(float), "cone layers");
  TAKE(s->m, (size_t)cn->batch * cn->max_out * D * sizeof(float), "cone layers");
  TAKE(s->part, (size_t)s->max_parts * sizeof(double), "partial sums");
#undef TAKE
  if (!ok) return PAI_ERR_NOMEM;
  s->stem_w = pai_gpu_put(g, P->stem.kernel, (size_t)4 * D, PAI_F32, "stem");
  s->stem_b = pai_gpu_put(g, P->stem.bias, (size_t)D, PAI_F32, "stem");
  if (!s->stem_w || !s->stem_b) return PAI_ERR_NOMEM;
  for (int i = 0; i < N; i++)
    PAI_TRY(pai_gpu_block_put(g, &s->blk[i], &cn->fold[i], &P->blocks[i], D, s->dt));
  for (int k = 0; k < n_short; k++) {
    const pai_proj_params *pp = pai_proj(P, 0, k);
    s->proj_w[k] = pai_gpu_put(g, pp->kernel, (size_t)D * T0, s->dt, "head kernels");
    s->proj_b[k] = pai_gpu_put(g, pp->bias, (size_t)T0, PAI_F32, "head bias");
    if (!s->proj_w[k] || !s->proj_b[k]) return PAI_ERR_NOMEM;
  }
  return pai_gpu_sync(g);
}

/* ReLU(x P_k + c) summed over tracks, for `items` groups of `rows` rows of layer rows x (packed
 * from B sequences of L rows starting at lo): per_row = 1 gives one sum per row (into out[row]),
 * else one sum per item (into out[item]). */
static int head_sums(struct pai_cone_gpu *s, int k, const float *x, int B, int L, int lo,
                     int rows, int D, int T, int per_row, double *out) {
  PAI_TRY(pai_gpu_affine_pack(s->g, (int64_t)B * rows * D, s->hin, s->bf16, x, NULL, NULL, D, L,
                              lo, rows));
  const pai_gemm p = {.M = B * rows, .N = T, .K = D, .ab_type = s->dt, .c_type = PAI_F32,
                      .a = s->hin, .lda = D, .b = s->proj_w[k], .ldb = T, .c = s->hout, .ldc = T,
                      .bias = s->proj_b[k], .relu = 1};
  PAI_TRY(pai_gpu_gemm(s->g, &p));
  const int64_t groups = per_row ? (int64_t)B * rows : B, W = per_row ? T : (int64_t)rows * T;
  const int64_t chunk = W < PART_CHUNK ? W : PART_CHUNK, n_ch = (W + chunk - 1) / chunk;
  if (groups * n_ch > s->max_parts) {
    PAI_ERR("cone scorer: %lld partial sums, room for %d", (long long)(groups * n_ch),
            s->max_parts);
    return PAI_ERR_RUNTIME;
  }
  PAI_TRY(pai_gpu_rowsum_part(s->g, groups * n_ch, s->part, s->hout, W, n_ch, chunk));
  PAI_TRY(pai_gpu_download(s->g, s->host_part, s->part, (size_t)(groups * n_ch) * sizeof(double)));
  for (int64_t q = 0; q < groups; q++) {
    double sum = 0;
    for (int64_t ch = 0; ch < n_ch; ch++) sum += s->host_part[q * n_ch + ch];
    out[q] = sum;
  }
  return 0;
}

int pai_cone_gpu_reference(pai_cone *cn, const uint8_t *u, int n) {
  const pai_config *c = &cn->model->cfg;
  struct pai_cone_gpu *s = cn->gpu;
  const int N = c->num_blocks, D = c->model_dim, L = c->input_length, O = c->output_length;
  const int C = pai_crop(c), U = n - 1 + L;
  PAI_TRY(pai_gpu_upload(s->g, s->u, u, (size_t)U));
  int rows = cn->r_hi[0] - cn->r_lo[0];
  PAI_TRY(pai_gpu_stem(s->g, (int64_t)rows * D, s->ref[0], s->u, s->stem_w, s->stem_b, D, U,
                       cn->r_lo[0], rows));
  for (int i = 0; i < N; i++) {
    const pai_gpu_block *b = &s->blk[i];
    const int lo = cn->r_lo[i + 1];
    rows = cn->r_hi[i + 1] - lo;
    PAI_TRY(pai_gpu_dwconv(s->g, (int64_t)rows * D, s->ref[i + 1], s->ref[i], b->ws, b->wc,
                           b->bdw, D, U, pai_dilation(i), lo, rows));
    PAI_TRY(pai_gpu_block_ffn(s->g, b, s->ref[i + 1], 1, U, lo, rows, D, s->gin, s->t));
  }
  /* per-row head sums over the union rows [C, C + n - 1 + O), then prefix sums on the host */
  for (int k = 0; k < pai_n_shortcuts(c); k++) {
    double *cum = cn->ref_cum[k];
    cum[0] = 0;
    PAI_TRY(head_sums(s, k, s->ref[pai_shortcut_layer(c, k)], 1, U, C, n - 1 + O, D,
                      c->output_dims[0], 1, cum + 1));
    for (int r = 0; r < n - 1 + O; r++) cum[r + 1] += cum[r];
  }
  return 0;
}

int pai_cone_gpu_alts(pai_cone *cn, const int *k, const uint8_t *alt, int B, double *diff) {
  const pai_config *c = &cn->model->cfg;
  struct pai_cone_gpu *s = cn->gpu;
  const int N = c->num_blocks, D = c->model_dim, O = c->output_length, C = pai_crop(c);
  const int vi = cn->vi, w0 = C - vi;
  int *cb = s->host_cb;
  double *alt_sum = s->host_alt_sum;
  for (int b = 0; b < B; b++) {
    cb[b] = k[b] + vi;
    diff[b] = 0;
  }
  int rc = pai_gpu_upload(s->g, s->cb, cb, (size_t)B * sizeof *cb);
  if (rc == 0) rc = pai_gpu_upload(s->g, s->alt, alt, (size_t)B);
  /* layer 0: only the changed row differs */
  if (rc == 0)
    rc = pai_gpu_stem(s->g, (int64_t)B * D, s->x, s->alt, s->stem_w, s->stem_b, D, 1, 0, 1);
  float *x = s->x, *m = s->m;
  for (int i = 0; rc == 0 && i < N; i++) {
    const pai_gpu_block *bl = &s->blk[i];
    const int d = pai_dilation(i), n_out = cn->a_hi[i + 1] - cn->a_lo[i + 1];
    const int lo_in = cn->a_lo[i + 1] - 2 * d, n_in = n_out + 4 * d;
    const int n_alt = cn->a_hi[i] - cn->a_lo[i], off = cn->a_lo[i] - lo_in;
    rc = pai_gpu_cone_gather(s->g, (int64_t)B * n_in * D, s->gath, x, s->ref[i], s->cb, lo_in,
                             n_in, off, n_alt, D);
    if (rc == 0)
      rc = pai_gpu_dwconv_interior(s->g, (int64_t)B * n_out * D, m, s->gath, bl->ws, bl->bfull,
                                   n_out, D, d);
    if (rc == 0) rc = pai_gpu_block_ffn(s->g, bl, m, B, n_out, 0, n_out, D, s->gin, s->t);
    float *swap = x;
    x = m;
    m = swap;
    const int kk = (N - (i + 1)) % c->shortcut_freq == 0 ? (N - (i + 1)) / c->shortcut_freq : -1;
    if (rc < 0 || kk < 0) continue;
    const int hl = cn->a_lo[i + 1] > w0 ? cn->a_lo[i + 1] : w0;
    const int hh = cn->a_hi[i + 1] < w0 + O ? cn->a_hi[i + 1] : w0 + O;
    if (hh <= hl) continue;
    rc = head_sums(s, kk, x, B, n_out, hl - cn->a_lo[i + 1], hh - hl, D, c->output_dims[0], 0,
                   alt_sum);
    const double *cum = cn->ref_cum[kk];
    for (int b = 0; rc == 0 && b < B; b++)
      diff[b] += alt_sum[b] - (cum[cb[b] + hh - C] - cum[cb[b] + hl - C]);
  }
  return rc;
}
