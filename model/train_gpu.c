/* train_gpu.c - one training step's loss and gradient on the GPU backend (train.h with a cuda
 * backend). The same computation as train.c, step for step, over model/gpu.h:
 *   parameters: P is copied to the GPU at the start of the step (and cast to bf16 when the
 *   dense layers run in bf16), the gradient is built there and copied back, with the updated
 *   moving statistics. The optimizer stays on the host (model/optim.c).
 *   reductions over rows: chunk sums in double, then a sum of the chunks (gpu_kernels.h), in a
 *   fixed order: results do not depend on scheduling.
 *   replicas: batch-norm sums, the loss and the gradient go through the trainer's pai_comm. An
 *   NCCL communicator sums device buffers in place; the MPI one sums host copies.
 * With bf16 precision the dense layers' operands are bf16 (the BN2 output, the FFN hidden
 * layer, the gradients fed to the products, the weights' copies) and every product accumulates
 * in float32; the residual stream, batch norm, the depthwise conv, the heads' outputs, the loss
 * and all gradients stay float32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpu.h"
#include "model/train.h"
#include "mpi/log.h"

#define MAX_CHUNKS 256

struct pai_trainer_gpu {
  pai_gpu *g;
  pai_dtype dt;
  int bf16;
  float *P, *G;          /* device mirrors of the host parameter and gradient buffers */
  void *P16;             /* bf16 copy of P (bf16 precision only) */
  uint8_t *codes;
  float *y, *scale;      /* (B, O, T), (B) */
  float **act, **mid;    /* [N + 1], [N]: (rows, D) */
  void **hid;            /* [N]: (rows, 4D), dense type */
  float *stats;          /* [N][4][D] */
  float **head_relu;     /* [n_short]: (B O, T) */
  float *pred, *dpred;   /* (B O, T) */
  void *hin, *dpre16;    /* (B O, D), (B O, T) dense type */
  float *da, *dg;        /* (rows, D) */
  float *nb;             /* (rows, D): batch norm 1 stored, for PAI_DWCONV=cudnn only */
  void *gin, *da16;      /* (rows, D) dense type */
  void *ds;              /* (rows, 4D) dense type */
  double *part, *sums;   /* MAX_CHUNKS x width, width */
  float *coef;           /* (3 D) */
  float *dwl;            /* (5 D): the library's kernel gradient (PAI_DWCONV=cudnn), else NULL */
  double *host_sums;     /* width: staging for an MPI communicator */
  float *host_scale;     /* (max_batch) each sample's loss-gradient factor (0: weight 0) */
  double *host_loss;     /* (max_batch x MAX_CHUNKS) the loss's chunk sums */
  size_t width, n_params;
  float *m, *v;          /* AdamW moments (pai_trainer_gpu_step) */
  double *opt_part, *opt_host;   /* per-tensor chunk sums of squares, and their host copy */
  int64_t opt_parts;
  int resident;          /* 1: the GPU's P, m, v are the current ones (after a GPU step) */
  /* Summing the gradient while the backward pass runs (NCCL, several ranks; plan_buckets):
   * block i's range [bucket[i][0], bucket[i][1]) is started as soon as block i is done; the
   * ranges no block covers (stem, heads, padding), rest[0 .. n_rest), at the end. */
  int planned;           /* 0 not yet, 1 planned, -1 the layout does not allow it */
  int64_t (*bucket)[2], (*rest)[2];
  int n_rest;
};

#define OPT_CHUNK 65536   /* gradient values per partial sum of squares */

/* 1 when t->comm sums device buffers (NCCL), 0 when it sums host buffers (MPI). */
static int comm_on_device(const pai_trainer *t) { return !strncmp(t->comm->name, "nccl", 4); }

void *pai_trainer_gpu_stream(pai_trainer *t) { return t->gpu ? pai_gpu_stream(t->gpu->g) : NULL; }

int pai_trainer_wait(pai_trainer *t) { return t->gpu ? pai_gpu_sync(t->gpu->g) : 0; }

size_t pai_trainer_gpu_mem_peak(const pai_trainer *t) {
  return t->gpu ? pai_gpu_mem_peak(t->gpu->g) : 0;
}

/* Device address of a host tensor inside P (or of its gradient inside G). */
static float *dev_p(const pai_trainer *t, const pai_params *P, const float *host) {
  return t->gpu->P + (host - P->data);
}
static float *dev_g(const pai_trainer *t, const pai_params *P, const float *host) {
  return t->gpu->G + (host - P->data);
}
/* A dense layer's weights as the products read them (bf16 copy, or P itself). */
static const void *dense_w(const pai_trainer *t, const pai_params *P, const float *host) {
  const struct pai_trainer_gpu *s = t->gpu;
  if (!s->bf16) return dev_p(t, P, host);
  return (const uint16_t *)s->P16 + (host - P->data);
}
static void *typed(void *base, size_t elems, pai_dtype dt) {
  return (char *)base + elems * pai_dtype_size(dt);
}

void pai_trainer_gpu_free(pai_trainer *t) {
  struct pai_trainer_gpu *s = t->gpu;
  if (!s) return;
  pai_gpu_close(s->g);   /* frees every device allocation */
  free(s->act);
  free(s->mid);
  free(s->hid);
  free(s->head_relu);
  free(s->host_sums);
  free(s->host_scale);
  free(s->host_loss);
  free(s->opt_host);
  free(s->bucket);
  free(s->rest);
  free(s);
  t->gpu = NULL;
}

/* The parameter mirrors, sized by the first step's P. */
static int take_param_mirrors(struct pai_trainer_gpu *s, size_t n_params) {
  s->n_params = n_params;
  s->P = pai_gpu_alloc(s->g, n_params * sizeof(float), "parameters");
  s->G = s->P ? pai_gpu_alloc(s->g, n_params * sizeof(float), "gradients") : NULL;
  if (s->G && s->bf16) s->P16 = pai_gpu_alloc(s->g, n_params * 2, "bf16 parameters");
  return s->G && (s->P16 || !s->bf16) ? 0 : PAI_ERR_NOMEM;
}

int pai_trainer_gpu_init(pai_trainer *t, const pai_backend *be) {
  const pai_config *c = &t->cfg;
  const int N = c->num_blocks, n_short = pai_n_shortcuts(c), T = pai_max_output_dim(c);
  const size_t D = (size_t)c->model_dim, F = 4 * D, B = (size_t)t->max_batch;
  const size_t rows = B * (size_t)c->input_length, ho = B * (size_t)c->output_length;
  struct pai_trainer_gpu *s = calloc(1, sizeof *s);
  if (!s) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  t->gpu = s;
  s->bf16 = be->precision == PAI_PRECISION_BF16;
  s->dt = s->bf16 ? PAI_BF16 : PAI_F32;
  PAI_TRY(pai_gpu_open(&s->g, be->gpu_index));
  pai_gpu *g = s->g;
  const size_t dts = pai_dtype_size(s->dt);
  s->width = 6 * D;
  if (F > s->width) s->width = F;
  if ((size_t)T > s->width) s->width = (size_t)T;
  s->act = calloc((size_t)N + 1, sizeof *s->act);
  s->mid = calloc((size_t)N, sizeof *s->mid);
  s->hid = calloc((size_t)N, sizeof *s->hid);
  s->head_relu = calloc((size_t)n_short, sizeof *s->head_relu);
  s->host_sums = malloc(s->width * sizeof *s->host_sums);
  s->host_scale = malloc(B * sizeof *s->host_scale);
  s->host_loss = malloc(B * MAX_CHUNKS * sizeof *s->host_loss);
  if (!s->act || !s->mid || !s->hid || !s->head_relu || !s->host_sums || !s->host_scale ||
      !s->host_loss) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  int ok = 1;
#define TAKE(ptr, bytes, what) ok = ok && ((ptr) = pai_gpu_alloc(g, (bytes), (what))) != NULL
  TAKE(s->codes, rows, "base codes");
  TAKE(s->y, ho * T * sizeof(float), "targets");
  TAKE(s->scale, B * sizeof(float), "loss weights");
  for (int i = 0; i <= N; i++) TAKE(s->act[i], rows * D * sizeof(float), "activations");
  for (int i = 0; i < N; i++) TAKE(s->mid[i], rows * D * sizeof(float), "activations");
  for (int i = 0; i < N; i++) TAKE(s->hid[i], rows * F * dts, "hidden activations");
  TAKE(s->stats, (size_t)N * 4 * D * sizeof(float), "batch statistics");
  for (int k = 0; k < n_short; k++) TAKE(s->head_relu[k], ho * T * sizeof(float), "head outputs");
  TAKE(s->pred, ho * T * sizeof(float), "predictions");
  TAKE(s->dpred, ho * T * sizeof(float), "prediction gradients");
  TAKE(s->hin, ho * D * dts, "head inputs");
  TAKE(s->dpre16, ho * T * dts, "head gradients");
  TAKE(s->da, rows * D * sizeof(float), "scratch");
  TAKE(s->dg, rows * D * sizeof(float), "scratch");
  TAKE(s->gin, rows * D * dts, "scratch");
  TAKE(s->da16, rows * D * dts, "scratch");
  TAKE(s->ds, rows * F * dts, "scratch");
  TAKE(s->part, (size_t)MAX_CHUNKS * s->width * sizeof(double), "partial sums");
  TAKE(s->sums, s->width * sizeof(double), "sums");
  TAKE(s->coef, 3 * D * sizeof(float), "coefficients");
  if (pai_dwconv_lib_wanted()) { /* batch norm 1's output, which the library reads */
    TAKE(s->nb, rows * D * sizeof(float), "scratch");
    TAKE(s->dwl, 5 * D * sizeof(float), "kernel gradient");
  }
#undef TAKE
  if (!ok) {
    PAI_ERR("the GPU cannot hold training for %zu sequences of %d positions (model_dim %zu, "
            "%d blocks, %s): use a smaller batch per rank or more ranks",
            B, c->input_length, D, N, pai_dtype_name(s->dt));
    return PAI_ERR_NOMEM;
  }
  return 0;
}

/* ---- reductions ------------------------------------------------------------------------------ */

typedef struct {
  int64_t n_chunks, chunk;
} chunking;

static chunking chunks_for(int64_t rows) {
  chunking ch;
  ch.n_chunks = (rows + 31) / 32;
  if (ch.n_chunks > MAX_CHUNKS) ch.n_chunks = MAX_CHUNKS;
  if (ch.n_chunks < 1) ch.n_chunks = 1;
  ch.chunk = (rows + ch.n_chunks - 1) / ch.n_chunks;
  ch.n_chunks = (rows + ch.chunk - 1) / ch.chunk;
  return ch;
}

/* s->sums[0..width) = the chunk sums in s->part added up. */
static int finish_sums(struct pai_trainer_gpu *s, chunking ch, int width) {
  return pai_gpu_sum_parts(s->g, width, s->sums, s->part, ch.n_chunks, width);
}

/* dst[c] += column sums of a (rows, cols) of type bf16 or float32. */
static int colsum_into(struct pai_trainer_gpu *s, float *dst, const void *a, int a_bf16,
                       int64_t rows, int cols) {
  const chunking ch = chunks_for(rows);
  PAI_TRY(pai_gpu_colsum_part(s->g, ch.n_chunks * cols, s->part, a, a_bf16, rows, cols, ch.chunk));
  PAI_TRY(finish_sums(s, ch, cols));
  return pai_gpu_add_f64(s->g, cols, dst, s->sums);
}

/* Sums n doubles of s->sums over the ranks. */
static int comm_sums(pai_trainer *t, size_t n) {
  struct pai_trainer_gpu *s = t->gpu;
  if (t->comm->size == 1) return 0;
  if (comm_on_device(t)) return pai_comm_sum_f64(t->comm, s->sums, n);
  PAI_TRY(pai_gpu_download(s->g, s->host_sums, s->sums, n * sizeof(double)));
  PAI_TRY(pai_comm_sum_f64(t->comm, s->host_sums, n));
  return pai_gpu_upload(s->g, s->sums, s->host_sums, n * sizeof(double));
}

/* ---- batch norm ------------------------------------------------------------------------------ */

/* Batch-norm statistics from the chunk sums in s->part (sum x, sum x^2 per channel): summed
 * over chunks and ranks, then mean and 1/std into stat and the moving statistics updated. */
static int bn_forward_finish(pai_trainer *t, chunking ch, int64_t global_rows, float *stat,
                             float *mov_mean, float *mov_var) {
  struct pai_trainer_gpu *s = t->gpu;
  const int D = t->cfg.model_dim;
  PAI_TRY(finish_sums(s, ch, 2 * D));
  PAI_TRY(comm_sums(t, (size_t)2 * D));
  return pai_gpu_bn_stats(s->g, D, stat, mov_mean, mov_var, s->sums, (double)global_rows,
                          t->cfg.bn_epsilon, PAI_BN_MOMENTUM, D);
}

static int bn_forward(pai_trainer *t, const float *x, int64_t rows, int64_t global_rows,
                      float *stat, float *mov_mean, float *mov_var) {
  struct pai_trainer_gpu *s = t->gpu;
  const int D = t->cfg.model_dim;
  const chunking ch = chunks_for(rows);
  PAI_TRY(pai_gpu_bnsum_part(s->g, ch.n_chunks * 2 * D, s->part, x, x, NULL, NULL, rows, D,
                             ch.chunk));
  return bn_forward_finish(t, ch, global_rows, stat, mov_mean, mov_var);
}

/* Batch norm's backward from the chunk sums in s->part (sum dy, sum dy xhat per channel):
 * dgamma, dbeta += this rank's sums; dx += the backward of dy at x, with the global sums. */
static int bn_backward_finish(pai_trainer *t, chunking ch, float *dx, const float *dy,
                              const float *x, int64_t rows, int64_t global_rows,
                              const float *stat, const float *gamma, float *dgamma,
                              float *dbeta) {
  struct pai_trainer_gpu *s = t->gpu;
  const int D = t->cfg.model_dim;
  PAI_TRY(finish_sums(s, ch, 2 * D));
  PAI_TRY(pai_gpu_add_f64(s->g, D, dbeta, s->sums));
  PAI_TRY(pai_gpu_add_f64(s->g, D, dgamma, s->sums + D));
  PAI_TRY(comm_sums(t, (size_t)2 * D));
  PAI_TRY(pai_gpu_bn_back_coef(s->g, D, s->coef, s->sums, stat, gamma, (double)global_rows, D));
  return pai_gpu_bn_back_apply(s->g, rows * D, dx, dy, x, stat, s->coef, D);
}

static int bn_backward(pai_trainer *t, float *dx, const float *dy, const float *x, int64_t rows,
                       int64_t global_rows, const float *stat, const float *gamma, float *dgamma,
                       float *dbeta) {
  struct pai_trainer_gpu *s = t->gpu;
  const int D = t->cfg.model_dim;
  const chunking ch = chunks_for(rows);
  PAI_TRY(pai_gpu_bnsum_part(s->g, ch.n_chunks * 2 * D, s->part, dy, x, stat, stat + D, rows, D,
                             ch.chunk));
  return bn_backward_finish(t, ch, dx, dy, x, rows, global_rows, stat, gamma, dgamma, dbeta);
}

/* ---- summing the gradient during the backward pass -------------------------------------------- */

static int by_start(const void *a, const void *b) {
  const int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
  return (x > y) - (x < y);
}

/* The block a tensor belongs to ("/block_<i>/..."), or -1. */
static int block_of(const char *path) {
  int blk = -1, end = 0;
  return sscanf(path, "/block_%d%n", &blk, &end) == 1 && path[end] == '/' ? blk : -1;
}

/* Each block's range of the parameter buffer (params.def keeps a block's tensors together),
 * extended over the alignment padding up to the next tensor (padding is never written, so it
 * may be summed with either neighbour), and the ranges between them. s->planned = -1 when some
 * other tensor lies inside a block's range (then the gradient is summed whole, at the end). */
static int plan_buckets(struct pai_trainer_gpu *s, const pai_params *P, int N) {
  free(s->bucket);
  free(s->rest);
  s->bucket = malloc((size_t)N * sizeof *s->bucket);
  s->rest = malloc(((size_t)N + 1) * sizeof *s->rest);
  int64_t (*sorted)[2] = malloc((size_t)N * sizeof *sorted);
  if (!s->bucket || !s->rest || !sorted) {
    free(sorted);
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  for (int i = 0; i < N; i++) s->bucket[i][0] = INT64_MAX, s->bucket[i][1] = -1;
  for (int k = 0; k < P->n_tensors; k++) {
    const int blk = block_of(P->tensors[k].path);
    if (blk < 0 || blk >= N) continue;
    const int64_t lo = (int64_t)P->tensors[k].offset, hi = lo + (int64_t)P->tensors[k].n_elems;
    if (lo < s->bucket[blk][0]) s->bucket[blk][0] = lo;
    if (hi > s->bucket[blk][1]) s->bucket[blk][1] = hi;
  }
  s->planned = 1;
  for (int i = 0; i < N && s->planned == 1; i++) {
    if (s->bucket[i][1] < 0) s->planned = -1;
    int64_t next = (int64_t)P->n_floats;   /* the first tensor at or after the range's end */
    for (int k = 0; k < P->n_tensors && s->planned == 1; k++) {
      const int64_t lo = (int64_t)P->tensors[k].offset, hi = lo + (int64_t)P->tensors[k].n_elems;
      if (lo >= s->bucket[i][1] && lo < next) next = lo;
      if (block_of(P->tensors[k].path) == i) continue;
      if (lo < s->bucket[i][1] && hi > s->bucket[i][0]) s->planned = -1;
    }
    s->bucket[i][1] = next;
    sorted[i][0] = s->bucket[i][0], sorted[i][1] = s->bucket[i][1];
  }
  if (s->planned == 1) {
    qsort(sorted, (size_t)N, sizeof *sorted, by_start);
    int64_t at = 0;
    s->n_rest = 0;
    for (int i = 0; i <= N; i++) {
      const int64_t next = i < N ? sorted[i][0] : (int64_t)P->n_floats;
      if (next > at) s->rest[s->n_rest][0] = at, s->rest[s->n_rest++][1] = next;
      if (i < N) at = sorted[i][1];
    }
  }
  free(sorted);
  return 0;
}

/* 1 when this step sums the gradient block by block during the backward pass. */
static int overlapped(const pai_trainer *t) {
  return t->comm->size > 1 && comm_on_device(t) && t->gpu->planned == 1;
}

/* ---- the step ---------------------------------------------------------------------------------- */

static int shortcut_index(const pai_config *c, int s) {
  if (s <= 0 || (c->num_blocks - s) % c->shortcut_freq != 0) return -1;
  return (c->num_blocks - s) / c->shortcut_freq;
}

static int gemm(struct pai_trainer_gpu *s, pai_gemm p) {
  p.ab_type = s->dt;
  return pai_gpu_gemm(s->g, &p);
}

static int grad_step(pai_trainer *t, pai_params *P, const uint8_t *codes, const float *y, int B,
                     int head, int global_B, pai_params *Gh, double *loss) {
  const pai_config *c = &t->cfg;
  struct pai_trainer_gpu *s = t->gpu;
  pai_gpu *g = s->g;
  const int N = c->num_blocks, D = c->model_dim, F = 4 * D, L = c->input_length;
  const int O = c->output_length, T = c->output_dims[head], n_short = pai_n_shortcuts(c);
  const int crop = pai_crop(c), bf = s->bf16;
  const int64_t rows = (int64_t)B * L, global_rows = (int64_t)global_B * L, BO = (int64_t)B * O;
  const size_t per = (size_t)O * T;

  if (!s->P) PAI_TRY(take_param_mirrors(s, P->n_floats));
  if (!s->planned) PAI_TRY(plan_buckets(s, P, N));
  if (P->n_floats != s->n_params || Gh->n_floats != s->n_params) {
    PAI_ERR("training step: parameters of %zu floats, the trainer holds %zu", P->n_floats,
            s->n_params);
    return PAI_ERR_USAGE;
  }
  if (!s->resident) PAI_TRY(pai_gpu_upload(g, s->P, P->data, P->n_floats * sizeof(float)));
  if (bf) PAI_TRY(pai_gpu_cast(g, (int64_t)P->n_floats, s->P16, 1, s->P));
  PAI_TRY(pai_gpu_memset0(g, s->G, P->n_floats * sizeof(float)));
  PAI_TRY(pai_gpu_upload(g, s->codes, codes, (size_t)rows));
  PAI_TRY(pai_gpu_upload(g, s->y, y, (size_t)B * per * sizeof(float)));

  /* ---- forward ---- */
  PAI_TRY(pai_gpu_stem(g, rows * D, s->act[0], s->codes, dev_p(t, P, P->stem.kernel),
                       dev_p(t, P, P->stem.bias), D, L, 0, L));
  int first = 1;
  for (int i = 0; i < N; i++) {
    const pai_block_params *bp = &P->blocks[i];
    float *st = s->stats + (size_t)i * 4 * D;
    const float *x = s->act[i];
    float *m = s->mid[i], *out = s->act[i + 1];
    PAI_TRY(bn_forward(t, x, rows, global_rows, st, dev_p(t, P, bp->bn1_mean),
                       dev_p(t, P, bp->bn1_var)));
    const float *g1 = dev_p(t, P, bp->bn1_gamma), *b1 = dev_p(t, P, bp->bn1_beta);
    if (s->dwl) { /* batch norm 1 into nb, the library's taps into dg (free until the backward
                   * pass), then the rest; batch norm 2's statistics */
      PAI_TRY(pai_gpu_bn_apply(g, rows * D, s->nb, 0, x, st, g1, b1, D));
      PAI_TRY(pai_gpu_dwconv_lib(g, s->dg, s->nb, dev_p(t, P, bp->dw_kernel), B, L, D,
                                 pai_dilation(i), 0, L));
      PAI_TRY(pai_gpu_add3(g, rows * D, m, x, s->dg, dev_p(t, P, bp->dw_bias), D));
      PAI_TRY(bn_forward(t, m, rows, global_rows, st + 2 * D, dev_p(t, P, bp->bn2_mean),
                         dev_p(t, P, bp->bn2_var)));
    } else { /* one kernel: batch norm 1, taps, residual, bias, and batch norm 2's sums */
      const chunking ch = chunks_for(rows);
      PAI_TRY(pai_gpu_dwconv_train_stats(g, ch.n_chunks * D, s->part, m, x, st, g1, b1,
                                         dev_p(t, P, bp->dw_kernel), dev_p(t, P, bp->dw_bias),
                                         rows, L, D, pai_dilation(i), ch.chunk));
      PAI_TRY(bn_forward_finish(t, ch, global_rows, st + 2 * D, dev_p(t, P, bp->bn2_mean),
                                dev_p(t, P, bp->bn2_var)));
    }
    PAI_TRY(pai_gpu_bn_apply(g, rows * D, s->gin, bf, m, st + 2 * D, dev_p(t, P, bp->bn2_gamma),
                             dev_p(t, P, bp->bn2_beta), D));
    PAI_TRY(gemm(s, (pai_gemm){.M = (int)rows, .N = F, .K = D, .c_type = s->dt, .a = s->gin,
                               .lda = D, .b = dense_w(t, P, bp->ffn1_kernel), .ldb = F,
                               .c = s->hid[i], .ldc = F, .bias = dense_w(t, P, bp->ffn1_bias),
                               .relu = 1}));
    PAI_TRY(pai_gpu_copy(g, rows * D, out, m));
    PAI_TRY(gemm(s, (pai_gemm){.M = (int)rows, .N = D, .K = F, .c_type = PAI_F32, .a = s->hid[i],
                               .lda = F, .b = dense_w(t, P, bp->ffn2_kernel), .ldb = D, .c = out,
                               .ldc = D, .bias = dev_p(t, P, bp->ffn2_bias), .beta = 1.0f}));
    const int k = shortcut_index(c, i + 1);
    if (k < 0) continue;
    const pai_proj_params *pp = pai_proj(P, head, k);
    PAI_TRY(pai_gpu_affine_pack(g, BO * D, s->hin, bf, out, NULL, NULL, D, L, crop, O));
    PAI_TRY(gemm(s, (pai_gemm){.M = (int)BO, .N = T, .K = D, .c_type = PAI_F32, .a = s->hin,
                               .lda = D, .b = dense_w(t, P, pp->kernel), .ldb = T,
                               .c = s->head_relu[k], .ldc = T, .bias = dev_p(t, P, pp->bias),
                               .relu = 1}));
    PAI_TRY(pai_gpu_accumulate(g, BO * T, s->pred, s->head_relu[k], first));
    first = 0;
  }

  /* ---- loss and its gradient ---- */
  float *scale = s->host_scale;   /* 0 for a sample of weight 0 (all N) */
  const chunking lc = chunks_for((int64_t)per);
  for (int b = 0; b < B; b++)
    scale[b] = pai_sample_weight(codes + (size_t)b * L, L) ? 2.0f / ((float)per * (float)global_B)
                                                           : 0.0f;
  PAI_TRY(pai_gpu_upload(g, s->scale, scale, (size_t)B * sizeof(float)));
  PAI_TRY(pai_gpu_loss_part(g, B * lc.n_chunks, s->part, s->pred, s->dpred, s->y, s->scale,
                            1.0f / (float)n_short, (int64_t)per, lc.n_chunks, lc.chunk));
  PAI_TRY(pai_gpu_download(g, s->host_loss, s->part, (size_t)B * lc.n_chunks * sizeof(double)));
  double local = 0;
  for (int b = 0; b < B; b++) {
    double sq = 0;
    for (int64_t ch = 0; ch < lc.n_chunks; ch++) sq += s->host_loss[b * lc.n_chunks + ch];
    if (scale[b] != 0.0f) local += sq / (double)per;
  }
  local /= global_B;
  if (t->comm->size > 1) {
    s->host_sums[0] = local;
    if (comm_on_device(t)) {
      PAI_TRY(pai_gpu_upload(g, s->sums, s->host_sums, sizeof(double)));
      PAI_TRY(pai_comm_sum_f64(t->comm, s->sums, 1));
      PAI_TRY(pai_gpu_download(g, s->host_sums, s->sums, sizeof(double)));
    } else {
      PAI_TRY(pai_comm_sum_f64(t->comm, s->host_sums, 1));
    }
    local = s->host_sums[0];
  }
  *loss = local;

  /* ---- backward ---- */
  const void *da_in = bf ? s->da16 : s->da;
  PAI_TRY(pai_gpu_memset0(g, s->da, (size_t)rows * D * sizeof(float)));
  for (int i = N - 1; i >= 0; i--) {
    const int k = shortcut_index(c, i + 1);
    if (k >= 0) {
      const pai_proj_params *pp = pai_proj(P, head, k);
      float *dpre = s->head_relu[k];
      PAI_TRY(pai_gpu_head_grad(g, BO * T, dpre, s->dpred, 1.0f / (float)n_short));
      PAI_TRY(colsum_into(s, dev_g(t, P, pp->bias), dpre, 0, BO, T));
      PAI_TRY(pai_gpu_affine_pack(g, BO * D, s->hin, bf, s->act[i + 1], NULL, NULL, D, L, crop,
                                  O));
      const void *dpre_in = dpre;
      if (bf) {
        PAI_TRY(pai_gpu_cast(g, BO * T, s->dpre16, 1, dpre));
        dpre_in = s->dpre16;
      }
      PAI_TRY(gemm(s, (pai_gemm){.M = D, .N = T, .K = (int)BO, .trans_a = 1, .c_type = PAI_F32,
                                 .a = s->hin, .lda = D, .b = dpre_in, .ldb = T,
                                 .c = dev_g(t, P, pp->kernel), .ldc = T, .beta = 1.0f}));
      for (int q = 0; q < B; q++)
        PAI_TRY(gemm(s, (pai_gemm){.M = O, .N = D, .K = T, .trans_b = 1, .c_type = PAI_F32,
                                   .a = typed((void *)dpre_in, (size_t)q * O * T, s->dt),
                                   .lda = T, .b = dense_w(t, P, pp->kernel), .ldb = T,
                                   .c = s->da + ((size_t)q * L + crop) * D, .ldc = D,
                                   .beta = 1.0f}));
    }
    const pai_block_params *bp = &P->blocks[i], *gb = &Gh->blocks[i];
    const float *st = s->stats + (size_t)i * 4 * D;
    const float *x = s->act[i], *m = s->mid[i];
    /* da = d loss / d layer_{i+1} */
    PAI_TRY(colsum_into(s, dev_g(t, Gh, gb->ffn2_bias), s->da, 0, rows, D));
    if (bf) PAI_TRY(pai_gpu_cast(g, rows * D, s->da16, 1, s->da));
    PAI_TRY(gemm(s, (pai_gemm){.M = F, .N = D, .K = (int)rows, .trans_a = 1, .c_type = PAI_F32,
                               .a = s->hid[i], .lda = F, .b = da_in, .ldb = D,
                               .c = dev_g(t, Gh, gb->ffn2_kernel), .ldc = D, .beta = 1.0f}));
    PAI_TRY(gemm(s, (pai_gemm){.M = (int)rows, .N = F, .K = D, .trans_b = 1, .c_type = s->dt,
                               .a = da_in, .lda = D, .b = dense_w(t, P, bp->ffn2_kernel), .ldb = D,
                               .c = s->ds, .ldc = F}));
    PAI_TRY(pai_gpu_relu_mask(g, rows * F, s->ds, s->hid[i], bf));
    PAI_TRY(colsum_into(s, dev_g(t, Gh, gb->ffn1_bias), s->ds, bf, rows, F));
    PAI_TRY(pai_gpu_bn_apply(g, rows * D, s->gin, bf, m, st + 2 * D, dev_p(t, P, bp->bn2_gamma),
                             dev_p(t, P, bp->bn2_beta), D));
    PAI_TRY(gemm(s, (pai_gemm){.M = D, .N = F, .K = (int)rows, .trans_a = 1, .c_type = PAI_F32,
                               .a = s->gin, .lda = D, .b = s->ds, .ldb = F,
                               .c = dev_g(t, Gh, gb->ffn1_kernel), .ldc = F, .beta = 1.0f}));
    PAI_TRY(gemm(s, (pai_gemm){.M = (int)rows, .N = D, .K = F, .trans_b = 1, .c_type = PAI_F32,
                               .a = s->ds, .lda = F, .b = dense_w(t, P, bp->ffn1_kernel), .ldb = F,
                               .c = s->dg, .ldc = D}));
    /* da becomes d loss / d m: the residual path plus BN2's backward */
    PAI_TRY(bn_backward(t, s->da, s->dg, m, rows, global_rows, st + 2 * D,
                        dev_p(t, P, bp->bn2_gamma), dev_g(t, Gh, gb->bn2_gamma),
                        dev_g(t, Gh, gb->bn2_beta)));
    const int dil = pai_dilation(i);
    const float *g1 = dev_p(t, P, bp->bn1_gamma), *b1 = dev_p(t, P, bp->bn1_beta);
    /* then da becomes d loss / d layer_i: the residual path plus BN1's backward */
    if (s->dwl) { /* the library's input and kernel gradients (float sums); the bias's here */
      PAI_TRY(pai_gpu_bn_apply(g, rows * D, s->nb, 0, x, st, g1, b1, D));
      PAI_TRY(pai_gpu_dwconv_lib_dx(g, s->dg, s->da, dev_p(t, P, bp->dw_kernel), B, L, D, dil));
      PAI_TRY(pai_gpu_dwconv_lib_dw(g, s->dwl, s->da, s->nb, B, L, D, dil));
      PAI_TRY(pai_gpu_accumulate(g, 5 * D, dev_g(t, Gh, gb->dw_kernel), s->dwl, 0));
      PAI_TRY(colsum_into(s, dev_g(t, Gh, gb->dw_bias), s->da, 0, rows, D));
      PAI_TRY(bn_backward(t, s->da, s->dg, x, rows, global_rows, st, g1,
                          dev_g(t, Gh, gb->bn1_gamma), dev_g(t, Gh, gb->bn1_beta)));
    } else { /* kernel and bias gradients (batch norm 1 recomputed inside their sums), then the
              * input gradient with batch norm 1's backward sums in the same kernel */
      const chunking ch = chunks_for(rows);
      PAI_TRY(pai_gpu_dwgrad_part(g, ch.n_chunks * 6 * D, s->part, s->da, x, st, g1, b1, rows,
                                  L, D, dil, ch.chunk));
      PAI_TRY(finish_sums(s, ch, 6 * D));
      PAI_TRY(pai_gpu_add_f64(g, 5 * D, dev_g(t, Gh, gb->dw_kernel), s->sums));
      PAI_TRY(pai_gpu_add_f64(g, D, dev_g(t, Gh, gb->dw_bias), s->sums + 5 * D));
      PAI_TRY(pai_gpu_dwconv_dh_stats(g, ch.n_chunks * D, s->part, s->dg, s->da,
                                      dev_p(t, P, bp->dw_kernel), x, st, rows, L, D, dil,
                                      ch.chunk));
      PAI_TRY(bn_backward_finish(t, ch, s->da, s->dg, x, rows, global_rows, st, g1,
                                 dev_g(t, Gh, gb->bn1_gamma), dev_g(t, Gh, gb->bn1_beta)));
    }
    /* block i's gradient is complete: its sum over the ranks runs while the blocks below are */
    if (overlapped(t))
      PAI_TRY(pai_comm_sum_f32_start(t->comm, s->G + s->bucket[i][0],
                                     (size_t)(s->bucket[i][1] - s->bucket[i][0])));
  }
  {
    const chunking ch = chunks_for(rows);
    PAI_TRY(pai_gpu_stemgrad_part(g, ch.n_chunks * 5 * D, s->part, s->codes, s->act[0], s->da,
                                  rows, D, ch.chunk));
    PAI_TRY(finish_sums(s, ch, 5 * D));
    PAI_TRY(pai_gpu_stemgrad_apply(g, D, dev_g(t, Gh, Gh->stem.kernel),
                                   dev_g(t, Gh, Gh->stem.bias), s->sums, D));
  }

  /* the gradient summed over the ranks; it and the moving statistics back to the host unless
   * the caller keeps them on the GPU for pai_trainer_step */
  const size_t gbytes = Gh->n_floats * sizeof(float);
  if (overlapped(t)) { /* the blocks' sums are under way: the rest, then wait for all */
    for (int r = 0; r < s->n_rest; r++)
      PAI_TRY(pai_comm_sum_f32_start(t->comm, s->G + s->rest[r][0],
                                     (size_t)(s->rest[r][1] - s->rest[r][0])));
    PAI_TRY(pai_comm_wait_all(t->comm));
    if (t->grad_stays_on_gpu) return 0;
    PAI_TRY(pai_gpu_download(g, Gh->data, s->G, gbytes));
  } else if (comm_on_device(t)) {
    PAI_TRY(pai_comm_sum_f32(t->comm, s->G, Gh->n_floats));
    if (t->grad_stays_on_gpu) return 0;
    PAI_TRY(pai_gpu_download(g, Gh->data, s->G, gbytes));
  } else {
    PAI_TRY(pai_gpu_download(g, Gh->data, s->G, gbytes));
    PAI_TRY(pai_comm_sum_f32(t->comm, Gh->data, Gh->n_floats));
    /* the GPU's optimizer step reads the sum from the GPU */
    if (t->comm->size > 1) PAI_TRY(pai_gpu_upload(g, s->G, Gh->data, gbytes));
    if (t->grad_stays_on_gpu) return 0;
  }
  for (int i = 0; i < N; i++) {
    pai_block_params *bp = &P->blocks[i];
    float *moving[4] = {bp->bn1_mean, bp->bn1_var, bp->bn2_mean, bp->bn2_var};
    for (int q = 0; q < 4; q++)
      PAI_TRY(pai_gpu_download(g, moving[q], dev_p(t, P, moving[q]), (size_t)D * sizeof(float)));
  }
  return 0;
}

int pai_trainer_gpu_grad(pai_trainer *t, pai_params *P, const uint8_t *codes, const float *y,
                         int B, int head, int global_B, pai_params *Gh, double *loss) {
  const int rc = grad_step(t, P, codes, y, B, head, global_B, Gh, loss);
  /* a step that failed after starting gradient sums lets them finish (or the communicator
   * abort) before the caller frees anything they write to */
  if (rc < 0 && overlapped(t)) (void)pai_comm_wait_all(t->comm);
  return rc;
}

/* ---- the optimizer ------------------------------------------------------------------------------ */

int pai_trainer_gpu_step(pai_trainer *t, const pai_adamw *o, pai_params *P, float *m, float *v,
                         int64_t step) {
  struct pai_trainer_gpu *s = t->gpu;
  pai_gpu *g = s->g;
  const size_t bytes = s->n_params * sizeof(float);
  if (!s->m) {
    s->opt_parts = 0;
    for (int ti = 0; ti < P->n_tensors; ti++)
      if (P->tensors[ti].trainable)
        s->opt_parts += ((int64_t)P->tensors[ti].n_elems + OPT_CHUNK - 1) / OPT_CHUNK;
    s->m = pai_gpu_alloc(g, bytes, "AdamW moments");
    s->v = s->m ? pai_gpu_alloc(g, bytes, "AdamW moments") : NULL;
    s->opt_part = s->v ? pai_gpu_alloc(g, (size_t)(s->opt_parts + 1) * sizeof(double), "norms")
                       : NULL;
    s->opt_host = malloc((size_t)(s->opt_parts + 1) * sizeof(double));
    if (!s->opt_part || !s->opt_host) {
      if (!s->opt_host) PAI_ERR("out of memory");
      return PAI_ERR_NOMEM;
    }
  }
  if (!s->resident) {
    PAI_TRY(pai_gpu_upload(g, s->m, m, bytes));
    PAI_TRY(pai_gpu_upload(g, s->v, v, bytes));
  }
  /* every tensor's chunk sums of squares, one copy back, the clip factors on the host */
  int64_t at = 0;
  for (int ti = 0; ti < P->n_tensors; ti++) {
    const pai_tensor *tn = &P->tensors[ti];
    if (!tn->trainable) continue;
    const int64_t n = (int64_t)tn->n_elems, n_ch = (n + OPT_CHUNK - 1) / OPT_CHUNK;
    PAI_TRY(pai_gpu_sumsq_part(g, n_ch, s->opt_part + at, s->G + tn->offset, n, OPT_CHUNK));
    at += n_ch;
  }
  PAI_TRY(pai_gpu_download(g, s->opt_host, s->opt_part, (size_t)at * sizeof(double)));
  const double tt = (double)step + 1.0;
  const double alpha = o->lr * sqrt(1.0 - pow(o->beta2, tt)) / (1.0 - pow(o->beta1, tt));
  const double decay = 1.0 - o->lr * o->wd;
  at = 0;
  for (int ti = 0; ti < P->n_tensors; ti++) {
    const pai_tensor *tn = &P->tensors[ti];
    if (!tn->trainable) continue;
    const int64_t n = (int64_t)tn->n_elems, n_ch = (n + OPT_CHUNK - 1) / OPT_CHUNK;
    double sq = 0;
    for (int64_t ch = 0; ch < n_ch; ch++) sq += s->opt_host[at + ch];
    at += n_ch;
    const double norm = sqrt(sq);
    const double clip = o->clipnorm > 0 && norm > o->clipnorm ? o->clipnorm / norm : 1.0;
    const size_t off = tn->offset;
    PAI_TRY(pai_gpu_adamw(g, n, s->P + off, s->m + off, s->v + off, s->G + off, clip, decay,
                          alpha, o->beta1, o->beta2, o->eps));
  }
  s->resident = 1;
  return 0;
}

int pai_trainer_gpu_sync(pai_trainer *t, pai_params *P, float *m, float *v) {
  struct pai_trainer_gpu *s = t->gpu;
  if (!s->resident) return 0;
  const size_t bytes = s->n_params * sizeof(float);
  PAI_TRY(pai_gpu_download(s->g, P->data, s->P, bytes));
  PAI_TRY(pai_gpu_download(s->g, m, s->m, bytes));
  return pai_gpu_download(s->g, v, s->v, bytes);
}
