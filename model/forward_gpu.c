/* forward_gpu.c - inference on the GPU backend (forward.h's pai_infer with device cuda).
 *
 * The same computation as forward.c, on the same rows (forward.h), over model/gpu.h:
 *   stem rows of layer_0; then per block
 *     m  = x + dwconv(BN1(x))                          element-wise kernel, float32 (or
 *                                                      cuDNN's taps and a kernel for the
 *                                                      rest, PAI_DWCONV=cudnn)
 *     g  = pack(BN2(m)) as the dense layers' type        element-wise kernel
 *     t  = ReLU(g W1 + b1)                             one product over the batch's rows
 *     m += t W2 + b2                                   one product per sequence (accumulates)
 *   and at a shortcut layer, per head, out += ReLU(pack(crop rows) P + c); with taps set
 *   (forward.h) the layer's cropped rows are also copied to the host.
 * The residual stream (x, m) and head outputs stay float32; with bf16 precision the dense
 * layers read bf16 operands (weights converted once, at init) and accumulate in float32. */
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/gpu.h"
#include "model/gpu_kernels.h"
#include "mpi/log.h"

struct pai_infer_gpu {
  pai_gpu *g;
  pai_dtype dt;
  int max_rows;              /* most rows of any layer computed per sequence */
  uint8_t *codes;            /* (B, L) */
  float *x, *m;              /* (B, L, D) */
  float *y;                  /* (B, L, D): the library convolution's output (PAI_DWCONV=cudnn) */
  void *gin, *t;             /* (B max_rows, D), (B max_rows, 4D): dense-layer operands */
  void *hin;                 /* (B O, D): a shortcut layer's cropped rows, packed */
  float *htmp;               /* (B O, max T) */
  float *out[PAI_MAX_HEADS]; /* (B, O, T_j) */
  float *stem_w, *stem_b;
  pai_gpu_block *blk;        /* [N] */
  void **proj_w;             /* [n_heads * n_short], (D, T_j) */
  float **proj_b;            /* [n_heads * n_short], (T_j) */
};

int pai_gemm_check(const pai_gemm *p) {
  if (p->M < 1 || p->N < 1 || p->K < 1 || !p->a || !p->b || !p->c ||
      (p->c_type == PAI_BF16 && p->ab_type != PAI_BF16) || (p->beta != 0.0f && p->beta != 1.0f)) {
    PAI_ERR("gemm: bad problem (M %d N %d K %d, %s x %s -> %s, beta %g)", p->M, p->N, p->K,
            pai_dtype_name(p->ab_type), pai_dtype_name(p->ab_type), pai_dtype_name(p->c_type),
            (double)p->beta);
    return PAI_ERR_RUNTIME;
  }
  const int64_t a_cols = p->trans_a ? p->M : p->K, b_cols = p->trans_b ? p->K : p->N;
  if (p->lda < a_cols || p->ldb < b_cols || p->ldc < p->N) {
    PAI_ERR("gemm: leading dimension too small (lda %lld, ldb %lld, ldc %lld)",
            (long long)p->lda, (long long)p->ldb, (long long)p->ldc);
    return PAI_ERR_RUNTIME;
  }
  return 0;
}

int pai_gemm_plain(pai_gpu *g, const pai_gemm *p) {
  return pai_gpu_gemm_plain(g, (int64_t)p->M * p->N, p->M, p->N, p->K, p->trans_a, p->trans_b,
                            p->ab_type == PAI_BF16, p->c_type == PAI_BF16, p->a, p->lda, p->b,
                            p->ldb, p->c, p->ldc, p->bias, p->relu, p->beta);
}

int pai_gemm_plain_forced(void) {
  static int forced = -1;
  if (forced < 0) {
    const char *e = getenv("PAI_GPU_PLAIN_GEMM");
    forced = e && *e && strcmp(e, "0") != 0;
  }
  return forced;
}

int pai_dwconv_lib_wanted(void) {
  static int wanted = -1;
  if (wanted < 0) {
    const char *e = getenv("PAI_DWCONV");
    wanted = e && !strcmp(e, "cudnn");
    if (e && *e && !wanted && strcmp(e, "kernel"))
      PAI_WARN("PAI_DWCONV=%s is neither kernel nor cudnn: using the kernel", e);
  }
  return wanted;
}

int pai_gpu_upload_typed(pai_gpu *g, void *dst, const float *host, size_t n, pai_dtype dt) {
  if (dt == PAI_F32) return pai_gpu_upload(g, dst, host, n * sizeof(float));
  uint16_t *tmp = malloc(n * sizeof *tmp);
  if (!tmp) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  for (size_t i = 0; i < n; i++) tmp[i] = pai_to_bf16(host[i]);
  const int rc = pai_gpu_upload(g, dst, tmp, n * sizeof *tmp);
  free(tmp);
  return rc;
}

void *pai_gpu_put(pai_gpu *g, const float *host, size_t n, pai_dtype dt, const char *what) {
  void *d = pai_gpu_alloc(g, n * pai_dtype_size(dt), what);
  return d && pai_gpu_upload_typed(g, d, host, n, dt) == 0 ? d : NULL;
}

int pai_gpu_block_put(pai_gpu *g, pai_gpu_block *b, const pai_block_fold *f,
                      const pai_block_params *bp, int D, pai_dtype dt) {
  const size_t F = (size_t)4 * D;
  b->ws = pai_gpu_put(g, f->ws, (size_t)5 * D, PAI_F32, "depthwise kernels");
  b->wc = pai_gpu_put(g, f->wc, (size_t)5 * D, PAI_F32, "depthwise kernels");
  b->bdw = pai_gpu_put(g, bp->dw_bias, (size_t)D, PAI_F32, "depthwise bias");
  b->bfull = pai_gpu_put(g, f->bfull, (size_t)D, PAI_F32, "depthwise bias");
  b->scale2 = pai_gpu_put(g, f->scale2, (size_t)D, PAI_F32, "batch norm");
  b->shift2 = pai_gpu_put(g, f->shift2, (size_t)D, PAI_F32, "batch norm");
  b->b2 = pai_gpu_put(g, bp->ffn2_bias, (size_t)D, PAI_F32, "dense bias");
  b->w1 = pai_gpu_put(g, bp->ffn1_kernel, (size_t)D * F, dt, "dense kernels");
  b->b1 = pai_gpu_put(g, bp->ffn1_bias, F, dt, "dense bias");
  b->w2 = pai_gpu_put(g, bp->ffn2_kernel, F * D, dt, "dense kernels");
  b->dt = dt;
  return b->ws && b->wc && b->bdw && b->bfull && b->scale2 && b->shift2 && b->b2 && b->w1 &&
                 b->b1 && b->w2
             ? 0
             : PAI_ERR_NOMEM;
}

int pai_gpu_block_ffn(pai_gpu *g, const pai_gpu_block *b, float *m, int B, int L, int lo,
                      int rows, int D, void *gin, void *t) {
  const int F = 4 * D;
  const pai_dtype dt = b->dt;
  PAI_TRY(pai_gpu_affine_pack(g, (int64_t)B * rows * D, gin, dt == PAI_BF16, m, b->scale2,
                              b->shift2, D, L, lo, rows));
  const pai_gemm up = {.M = B * rows, .N = F, .K = D, .ab_type = dt, .c_type = dt, .a = gin,
                       .lda = D, .b = b->w1, .ldb = F, .c = t, .ldc = F, .bias = b->b1,
                       .relu = 1};
  PAI_TRY(pai_gpu_gemm(g, &up));
  /* rows of consecutive sequences are contiguous only when every row is computed */
  const int runs = rows == L ? 1 : B, run_rows = rows == L ? B * rows : rows;
  for (int q = 0; q < runs; q++) {
    const pai_gemm down = {.M = run_rows, .N = D, .K = F, .ab_type = dt, .c_type = PAI_F32,
                           .a = (char *)t + (size_t)q * rows * F * pai_dtype_size(dt),
                           .lda = F, .b = b->w2, .ldb = D, .c = m + ((size_t)q * L + lo) * D,
                           .ldc = D, .bias = b->b2, .beta = 1.0f};
    PAI_TRY(pai_gpu_gemm(g, &down));
  }
  return 0;
}

void pai_infer_gpu_free(pai_infer *inf) {
  struct pai_infer_gpu *s = inf->gpu;
  if (!s) return;
  pai_gpu_close(s->g);   /* frees every allocation */
  free(s->blk);
  free(s->proj_w);
  free(s->proj_b);
  free(s);
  inf->gpu = NULL;
}

int pai_infer_gpu_init(pai_infer *inf) {
  const pai_config *c = &inf->model->cfg;
  const pai_params *P = &inf->model->params;
  const int N = c->num_blocks, D = c->model_dim, L = c->input_length, O = c->output_length;
  const int B = inf->max_batch, n_short = pai_n_shortcuts(c);
  struct pai_infer_gpu *s = calloc(1, sizeof *s);
  if (!s) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  inf->gpu = s;
  s->dt = inf->backend.precision == PAI_PRECISION_BF16 ? PAI_BF16 : PAI_F32;
  PAI_TRY(pai_gpu_open(&s->g, inf->backend.gpu_index));
  pai_gpu *g = s->g;
  for (int i = 0; i <= N; i++)
    if (inf->hi[i] - inf->lo[i] > s->max_rows) s->max_rows = inf->hi[i] - inf->lo[i];
  const size_t dts = pai_dtype_size(s->dt), seq = (size_t)L * D;
  s->codes = pai_gpu_alloc(g, (size_t)B * L, "base codes");
  s->x = pai_gpu_alloc(g, (size_t)B * seq * sizeof(float), "activations");
  s->m = pai_gpu_alloc(g, (size_t)B * seq * sizeof(float), "activations");
  s->gin = pai_gpu_alloc(g, (size_t)B * s->max_rows * D * dts, "dense-layer input");
  s->t = pai_gpu_alloc(g, (size_t)B * s->max_rows * 4 * D * dts, "dense-layer hidden");
  s->hin = pai_gpu_alloc(g, (size_t)B * O * D * dts, "head input");
  s->htmp = pai_gpu_alloc(g, (size_t)B * O * pai_max_output_dim(c) * sizeof(float), "head scratch");
  if (!s->codes || !s->x || !s->m || !s->gin || !s->t || !s->hin || !s->htmp)
    return PAI_ERR_NOMEM;
  if (pai_dwconv_lib_wanted() &&
      !(s->y = pai_gpu_alloc(g, (size_t)B * seq * sizeof(float), "convolution output")))
    return PAI_ERR_NOMEM;
  for (int j = 0; j < c->n_heads; j++) {
    if (!(inf->heads_mask & PAI_HEAD(j))) continue;
    s->out[j] = pai_gpu_alloc(g, (size_t)B * O * c->output_dims[j] * sizeof(float), "outputs");
    if (!s->out[j]) return PAI_ERR_NOMEM;
  }

  s->stem_w = pai_gpu_put(g, P->stem.kernel, (size_t)4 * D, PAI_F32, "stem");
  s->stem_b = pai_gpu_put(g, P->stem.bias, (size_t)D, PAI_F32, "stem");
  s->blk = calloc((size_t)N, sizeof *s->blk);
  s->proj_w = calloc((size_t)c->n_heads * n_short, sizeof *s->proj_w);
  s->proj_b = calloc((size_t)c->n_heads * n_short, sizeof *s->proj_b);
  if (!s->stem_w || !s->stem_b) return PAI_ERR_NOMEM;
  if (!s->blk || !s->proj_w || !s->proj_b) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  for (int i = 0; i < N; i++)
    PAI_TRY(pai_gpu_block_put(g, &s->blk[i], &inf->fold[i], &P->blocks[i], D, s->dt));
  for (int j = 0; j < c->n_heads; j++) {
    if (!(inf->heads_mask & PAI_HEAD(j))) continue;
    const size_t T = (size_t)c->output_dims[j];
    for (int k = 0; k < n_short; k++) {
      s->proj_w[j * n_short + k] = pai_gpu_alloc(g, (size_t)D * T * dts, "head kernels");
      s->proj_b[j * n_short + k] = pai_gpu_alloc(g, T * sizeof(float), "head bias");
      if (!s->proj_w[j * n_short + k] || !s->proj_b[j * n_short + k]) return PAI_ERR_NOMEM;
    }
  }
  return pai_infer_heads_changed(inf);
}

size_t pai_infer_gpu_mem_peak(const pai_infer *inf) {
  return inf->gpu ? pai_gpu_mem_peak(inf->gpu->g) : 0;
}

int pai_infer_heads_changed(pai_infer *inf) {
  const pai_config *c = &inf->model->cfg;
  struct pai_infer_gpu *s = inf->gpu;
  if (!s) return 0;   /* the CPU forward reads the model's parameters directly */
  const int D = c->model_dim, n_short = pai_n_shortcuts(c);
  for (int j = 0; j < c->n_heads; j++) {
    if (!(inf->heads_mask & PAI_HEAD(j))) continue;
    const size_t T = (size_t)c->output_dims[j];
    for (int k = 0; k < n_short; k++) {
      const pai_proj_params *pp = pai_proj(&inf->model->params, j, k);
      PAI_TRY(pai_gpu_upload(s->g, s->proj_b[j * n_short + k], pp->bias, T * sizeof(float)));
      PAI_TRY(pai_gpu_upload_typed(s->g, s->proj_w[j * n_short + k], pp->kernel, (size_t)D * T,
                                   s->dt));
    }
  }
  return 0;
}

/* Heads' projections of the shortcut layer in x (layer `layer`), accumulated into s->out. */
static int heads_gpu(const pai_infer *inf, const float *x, int B, int layer, int *first) {
  const pai_config *c = &inf->model->cfg;
  struct pai_infer_gpu *s = inf->gpu;
  const int D = c->model_dim, L = c->input_length, O = c->output_length;
  if (layer == 0 || (c->num_blocks - layer) % c->shortcut_freq != 0) return 0;
  const int k = (c->num_blocks - layer) / c->shortcut_freq, n_short = pai_n_shortcuts(c);
  if (inf->taps) /* the cropped rows of each sequence, for head-only fine-tuning */
    for (int b = 0; b < B; b++)
      PAI_TRY(pai_gpu_download(s->g, inf->taps[k] + (size_t)b * O * D,
                               x + ((size_t)b * L + pai_crop(c)) * D, (size_t)O * D * sizeof(float)));
  PAI_TRY(pai_gpu_affine_pack(s->g, (int64_t)B * O * D, s->hin, s->dt == PAI_BF16, x, NULL,
                              NULL, D, L, pai_crop(c), O));
  for (int j = 0; j < c->n_heads; j++) {
    if (!(inf->heads_mask & PAI_HEAD(j))) continue;
    const int T = c->output_dims[j];
    const pai_gemm p = {.M = B * O, .N = T, .K = D, .ab_type = s->dt, .c_type = PAI_F32,
                        .a = s->hin, .lda = D, .b = s->proj_w[j * n_short + k], .ldb = T,
                        .c = s->htmp, .ldc = T, .bias = s->proj_b[j * n_short + k], .relu = 1};
    PAI_TRY(pai_gpu_gemm(s->g, &p));
    PAI_TRY(pai_gpu_accumulate(s->g, (int64_t)B * O * T, s->out[j], s->htmp, *first));
  }
  *first = 0;
  return 0;
}

int pai_infer_gpu_forward(pai_infer *inf, const uint8_t *codes, int B, float *const *outs) {
  const pai_config *c = &inf->model->cfg;
  struct pai_infer_gpu *s = inf->gpu;
  pai_gpu *g = s->g;
  const int N = c->num_blocks, D = c->model_dim, L = c->input_length, O = c->output_length;

  PAI_TRY(pai_gpu_upload(g, s->codes, codes, (size_t)B * L));
  int rows = inf->hi[0] - inf->lo[0];
  PAI_TRY(pai_gpu_stem(g, (int64_t)B * rows * D, s->x, s->codes, s->stem_w, s->stem_b, D, L,
                       inf->lo[0], rows));
  float *x = s->x, *m = s->m;
  int first = 1;
  for (int i = 0; i < N; i++) {
    const pai_gpu_block *b = &s->blk[i];
    const int lo = inf->lo[i + 1];
    rows = inf->hi[i + 1] - lo;
    const int64_t n = (int64_t)B * rows * D;
    if (s->y) { /* the library's taps, then the residual, bias and folded shift */
      PAI_TRY(pai_gpu_dwconv_lib(g, s->y, x, b->ws, B, L, D, pai_dilation(i), lo, rows));
      PAI_TRY(pai_gpu_dwconv_fix(g, n, m, x, s->y, b->wc, b->bdw, D, L, pai_dilation(i), lo,
                                 rows));
    } else {
      PAI_TRY(pai_gpu_dwconv(g, n, m, x, b->ws, b->wc, b->bdw, D, L, pai_dilation(i), lo, rows));
    }
    PAI_TRY(pai_gpu_block_ffn(g, b, m, B, L, lo, rows, D, s->gin, s->t));
    PAI_TRY(heads_gpu(inf, m, B, i + 1, &first));
    float *swap = x;
    x = m;
    m = swap;
  }
  const float inv = 1.0f / (float)pai_n_shortcuts(c);
  for (int j = 0; j < c->n_heads; j++) {
    if (!(inf->heads_mask & PAI_HEAD(j))) continue;
    const size_t n = (size_t)B * O * c->output_dims[j];
    PAI_TRY(pai_gpu_scale(g, (int64_t)n, s->out[j], inv));
    PAI_TRY(pai_gpu_download(g, outs[j], s->out[j], n * sizeof(float)));
  }
  return 0;
}
