/* forward.c - inference over a batch (see forward.h).
 *
 * Which positions are computed: the heads read layer_s only at the cropped rows
 * [crop, crop + O). Block i reads layer_i at p +- 2 d_i for each row p of layer_{i+1} it
 * computes, so walking back from layer_N = crop, the rows needed of layer_i are those of
 * layer_{i+1} widened by 2 d_i on each side and clipped to [0, L). Rows outside that range
 * are never read, so skipping them is exact. When L = O + 2 * radius the range of layer_0 is
 * exactly [0, L) and no padding is ever read by a kept output (REFERENCE.md 2.4). */
#include "model/forward.h"

#include <stdlib.h>
#include <string.h>

#include "model/layers.h"
#include "mpi/log.h"

/* FFN chunk: keep the (chunk, 4D) intermediate around 2 MiB so it stays in cache. */
static int ffn_chunk(int D) {
  int rows = (2 << 20) / (16 * D);
  if (rows < 64) rows = 64;
  if (rows > 1024) rows = 1024;
  return rows;
}

size_t pai_infer_bytes(const pai_config *c, int max_batch) {
  const size_t D = (size_t)c->model_dim, L = (size_t)c->input_length;
  const size_t chunk = (size_t)ffn_chunk(c->model_dim);
  return 2 * pai_arena_bytes((size_t)max_batch * L * D, sizeof(float)) +
         pai_arena_bytes(chunk * D, sizeof(float)) + pai_arena_bytes(chunk * 4 * D, sizeof(float)) +
         pai_arena_bytes((size_t)c->output_length * (size_t)pai_max_output_dim(c), sizeof(float));
}

int pai_block_fold_init(const pai_model *model, pai_block_fold **fold_out, float **data_out) {
  const pai_config *c = &model->cfg;
  const int N = c->num_blocks, D = c->model_dim, K = c->kernel_size;
  const size_t per_block = (size_t)(2 * K + 3) * D;
  pai_block_fold *fold = calloc((size_t)N, sizeof *fold);
  float *data = malloc((size_t)N * per_block * sizeof(float));
  float *scale1 = malloc((size_t)2 * D * sizeof(float));
  if (!fold || !data || !scale1) {
    free(fold);
    free(data);
    free(scale1);
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  float *shift1 = scale1 + D;
  for (int i = 0; i < N; i++) {
    const pai_block_params *bp = &model->params.blocks[i];
    pai_block_fold *f = &fold[i];
    float *base = data + (size_t)i * per_block;
    f->ws = base;
    f->wc = base + (size_t)K * D;
    f->bfull = base + (size_t)2 * K * D;
    f->scale2 = f->bfull + D;
    f->shift2 = f->scale2 + D;
    bn_fold(scale1, shift1, bp->bn1_gamma, bp->bn1_beta, bp->bn1_mean, bp->bn1_var, c->bn_epsilon,
            D);
    dwconv_bn_prepare(f->ws, f->wc, f->bfull, bp->dw_kernel, bp->dw_bias, scale1, shift1, D);
    bn_fold(f->scale2, f->shift2, bp->bn2_gamma, bp->bn2_beta, bp->bn2_mean, bp->bn2_var,
            c->bn_epsilon, D);
  }
  free(scale1);
  *fold_out = fold;
  *data_out = data;
  return 0;
}

int pai_ffn_chunk(int D) { return ffn_chunk(D); }

int pai_infer_init(pai_infer *inf, const pai_model *model, int max_batch, unsigned heads_mask,
                   const pai_backend *backend) {
  memset(inf, 0, sizeof *inf);
  const pai_config *c = &model->cfg;
  const int N = c->num_blocks, D = c->model_dim, L = c->input_length;
  if (max_batch < 1) {
    PAI_ERR("batch size must be >= 1 (got %d)", max_batch);
    return PAI_ERR_USAGE;
  }
  inf->model = model;
  inf->backend = *backend;
  inf->max_batch = max_batch;
  inf->heads_mask = heads_mask & ((1u << c->n_heads) - 1);
  inf->chunk = ffn_chunk(D);

  inf->lo = calloc((size_t)N + 1, sizeof *inf->lo);
  inf->hi = calloc((size_t)N + 1, sizeof *inf->hi);
  if (!inf->lo || !inf->hi) {
    pai_infer_free(inf);
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  inf->lo[N] = pai_crop(c);
  inf->hi[N] = pai_crop(c) + c->output_length;
  for (int i = N - 1; i >= 0; i--) {
    const int r = 2 * pai_dilation(i);
    inf->lo[i] = inf->lo[i + 1] - r < 0 ? 0 : inf->lo[i + 1] - r;
    inf->hi[i] = inf->hi[i + 1] + r > L ? L : inf->hi[i + 1] + r;
  }

  int rc = pai_block_fold_init(model, &inf->fold, &inf->fold_data);
  if (rc < 0) {
    pai_infer_free(inf);
    return rc;
  }

  if (backend->device == PAI_DEVICE_CUDA) {
    rc = pai_infer_gpu_init(inf);
    if (rc < 0) pai_infer_free(inf);
    return rc;
  }

  rc = pai_arena_init(&inf->arena, pai_infer_bytes(c, max_batch));
  if (rc < 0) {
    pai_infer_free(inf);
    return rc;
  }
  inf->x = pai_arena_take(&inf->arena, (size_t)max_batch * L * D, sizeof(float));
  inf->m = pai_arena_take(&inf->arena, (size_t)max_batch * L * D, sizeof(float));
  inf->gin = pai_arena_take(&inf->arena, (size_t)inf->chunk * D, sizeof(float));
  inf->t = pai_arena_take(&inf->arena, (size_t)inf->chunk * 4 * D, sizeof(float));
  inf->head_tmp = pai_arena_take(&inf->arena, (size_t)c->output_length * pai_max_output_dim(c),
                                 sizeof(float));
  return 0;
}

void pai_infer_free(pai_infer *inf) {
  pai_infer_gpu_free(inf);
  free(inf->lo);
  free(inf->hi);
  free(inf->fold);
  free(inf->fold_data);
  pai_arena_free(&inf->arena);
  memset(inf, 0, sizeof *inf);
}

/* Adds the heads' projections of layer_s (s = layer) for sequence b, if s is a shortcut. */
static void heads_at_layer(const pai_infer *inf, const float *xb, int b, int layer,
                           float *const *outs) {
  const pai_config *c = &inf->model->cfg;
  if (layer == 0 || (c->num_blocks - layer) % c->shortcut_freq != 0) return;
  const int k = (c->num_blocks - layer) / c->shortcut_freq;
  if (inf->taps)
    memcpy(inf->taps[k] + (size_t)b * c->output_length * c->model_dim,
           xb + (size_t)pai_crop(c) * c->model_dim,
           (size_t)c->output_length * c->model_dim * sizeof(float));
  for (int j = 0; j < c->n_heads; j++) {
    if (!(inf->heads_mask & PAI_HEAD(j))) continue;
    const int T = c->output_dims[j];
    const pai_proj_params *pp = pai_proj(&inf->model->params, j, k);
    float *out = outs[j] + (size_t)b * c->output_length * T;
    head_accumulate_cpu(out, xb, pp->kernel, pp->bias, c->model_dim, T, pai_crop(c),
                        c->output_length, inf->head_tmp);
  }
}

static int forward_cpu(pai_infer *inf, const uint8_t *codes, int B, float *const *outs) {
  const pai_config *c = &inf->model->cfg;
  const pai_params *P = &inf->model->params;
  const int N = c->num_blocks, D = c->model_dim, L = c->input_length, O = c->output_length;
  const size_t seq = (size_t)L * D;

  for (int j = 0; j < c->n_heads; j++)
    if (inf->heads_mask & PAI_HEAD(j))
      memset(outs[j], 0, (size_t)B * O * c->output_dims[j] * sizeof(float));

  for (int b = 0; b < B; b++)
    stem_forward_cpu(inf->x + b * seq, codes + (size_t)b * L, P->stem.kernel, P->stem.bias, D,
                     inf->lo[0], inf->hi[0]);

  float *x = inf->x, *m = inf->m;
  for (int i = 0; i < N; i++) {
    const pai_block_params *bp = &P->blocks[i];
    const pai_block_fold *f = &inf->fold[i];
    for (int b = 0; b < B; b++) {
      dwconv_bn_res_forward_cpu(m + b * seq, x + b * seq, f->ws, f->wc, f->bfull, bp->dw_bias, L,
                                D, pai_dilation(i), inf->lo[i + 1], inf->hi[i + 1]);
      ffn_res_forward_cpu(m + b * seq, f->scale2, f->shift2, bp->ffn1_kernel, bp->ffn1_bias,
                          bp->ffn2_kernel, bp->ffn2_bias, D, 4 * D, inf->lo[i + 1],
                          inf->hi[i + 1], inf->chunk, inf->gin, inf->t);
      heads_at_layer(inf, m + b * seq, b, i + 1, outs);
    }
    float *swap = x;
    x = m;
    m = swap;
  }

  const float inv = 1.0f / (float)pai_n_shortcuts(c);
  for (int j = 0; j < c->n_heads; j++) {
    if (!(inf->heads_mask & PAI_HEAD(j))) continue;
    const size_t n = (size_t)B * O * c->output_dims[j];
    float *o = outs[j];
#pragma omp parallel for schedule(static)
    for (size_t e = 0; e < n; e++) o[e] *= inv;
  }
  return 0;
}

int pai_infer_forward(pai_infer *inf, const uint8_t *codes, int B, float *const *outs) {
  if (B < 1 || B > inf->max_batch) {
    PAI_ERR("batch of %d sequences, but the arena holds %d", B, inf->max_batch);
    return PAI_ERR_USAGE;
  }
  switch (inf->backend.device) {
    case PAI_DEVICE_CPU: return forward_cpu(inf, codes, B, outs);
    case PAI_DEVICE_CUDA: return pai_infer_gpu_forward(inf, codes, B, outs);
  }
  return PAI_ERR_USAGE;
}

double pai_infer_flops(const pai_infer *inf) {
  const pai_config *c = &inf->model->cfg;
  const double D = c->model_dim;
  double f = 0;
  for (int i = 0; i < c->num_blocks; i++) {
    const double rows = inf->hi[i + 1] - inf->lo[i + 1];
    f += rows * (16.0 * D * D + 2.0 * 5 * D);   /* two dense layers + depthwise conv */
  }
  for (int j = 0; j < c->n_heads; j++)
    if (inf->heads_mask & PAI_HEAD(j))
      f += pai_n_shortcuts(c) * 2.0 * c->output_length * D * c->output_dims[j];
  return f;
}
