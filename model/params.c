/* params.c - see params.h. The layout is generated from params.def. */
#include "model/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/rng.h"
#include "mpi/log.h"

#define ALIGN_FLOATS 16   /* 64 bytes: a cache line and an AVX-512 vector */

static size_t align_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

/* Appends one tensor to the table; bind pointers later, once the buffer exists. */
static void add_tensor(pai_params *p, float **ptr, const char *path, int rows, int cols,
                       pai_init_kind init, size_t *offset) {
  pai_tensor *t = &p->tensors[p->n_tensors++];
  snprintf(t->path, sizeof t->path, "%s", path);
  t->rows = rows;
  t->cols = cols;
  t->init = init;
  t->trainable = init != PAI_INIT_STAT_ZERO && init != PAI_INIT_STAT_ONE;
  t->n_elems = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
  t->offset = *offset;
  t->ptr = ptr;
  *offset += align_up(t->n_elems);
}

int pai_params_init(pai_params *p, const pai_config *cfg) {
  memset(p, 0, sizeof *p);
  const int D = cfg->model_dim, F = 4 * cfg->model_dim, K = cfg->kernel_size;
  int n_stem = 0, n_block = 0, n_head = 0;
#define PAI_STEM_PARAM(field, path, rows, cols, init) n_stem++;
#define PAI_BLOCK_PARAM(field, path, rows, cols, init) n_block++;
#define PAI_HEAD_PARAM(field, path, rows, cols, init) n_head++;
#include "model/params.def"
  p->n_short = pai_n_shortcuts(cfg);
  int max_tensors = n_stem + n_block * cfg->num_blocks + n_head * cfg->n_heads * p->n_short;
  p->tensors = calloc((size_t)max_tensors, sizeof *p->tensors);
  p->blocks = calloc((size_t)cfg->num_blocks, sizeof *p->blocks);
  p->proj = calloc((size_t)(cfg->n_heads * p->n_short), sizeof *p->proj);
  if (!p->tensors || !p->blocks || !p->proj) goto nomem;

  size_t off = 0;
  char path[PAI_NAME_LEN];
#define PAI_STEM_PARAM(field, name, rows, cols, init)                                  \
  snprintf(path, sizeof path, "/stem/%s", name);                                      \
  add_tensor(p, &p->stem.field, path, rows, cols, PAI_INIT_##init, &off);
#include "model/params.def"
  for (int i = 0; i < cfg->num_blocks; i++) {
#define PAI_BLOCK_PARAM(field, name, rows, cols, init)                                 \
  snprintf(path, sizeof path, "/block_%d/%s", i, name);                               \
  add_tensor(p, &p->blocks[i].field, path, rows, cols, PAI_INIT_##init, &off);
#include "model/params.def"
  }
  for (int j = 0; j < cfg->n_heads; j++) {
    const int T = cfg->output_dims[j];
    for (int k = 0; k < p->n_short; k++) {
      pai_proj_params *pp = pai_proj(p, j, k);
#define PAI_HEAD_PARAM(field, name, rows, cols, init)                                  \
  snprintf(path, sizeof path, "/head_%d/proj_%d/%s", j, pai_shortcut_layer(cfg, k), name); \
  add_tensor(p, &pp->field, path, rows, cols, PAI_INIT_##init, &off);
#include "model/params.def"
    }
  }

  p->n_floats = off;
  p->data = aligned_alloc(64, align_up(off) * sizeof(float));
  if (!p->data) goto nomem;
  memset(p->data, 0, align_up(off) * sizeof(float));
  for (int t = 0; t < p->n_tensors; t++) *p->tensors[t].ptr = p->data + p->tensors[t].offset;
  return 0;
nomem:
  PAI_ERR("cannot allocate parameters (num_blocks %d, model_dim %d)", cfg->num_blocks, D);
  pai_params_free(p);
  return PAI_ERR_NOMEM;
}

void pai_params_free(pai_params *p) {
  free(p->data);
  free(p->tensors);
  free(p->blocks);
  free(p->proj);
  memset(p, 0, sizeof *p);
}

size_t pai_params_count(const pai_params *p) {
  size_t n = 0;
  for (int t = 0; t < p->n_tensors; t++) n += p->tensors[t].n_elems;
  return n;
}

void pai_params_init_random(pai_params *p, uint64_t seed) {
  for (int ti = 0; ti < p->n_tensors; ti++) {
    const pai_tensor *t = &p->tensors[ti];
    float *w = p->data + t->offset;
    pai_rng rng;
    pai_rng_seed(&rng, seed, (uint64_t)ti + 1);
    double limit = 0;
    if (t->init == PAI_INIT_GLOROT) limit = sqrt(6.0 / (t->rows + t->cols));
    if (t->init == PAI_INIT_GLOROT_DW)   /* Keras shape (K, D, 1): fan_in K*D, fan_out K */
      limit = sqrt(6.0 / ((double)t->rows * t->cols + t->rows));
    for (size_t e = 0; e < t->n_elems; e++) {
      switch (t->init) {
        case PAI_INIT_GLOROT:
        case PAI_INIT_GLOROT_DW:
          w[e] = (float)((2.0 * pai_rng_uniform(&rng) - 1.0) * limit);
          break;
        case PAI_INIT_TNORM: {
          double z;
          do z = pai_rng_normal(&rng);
          while (fabs(z) > 2.0);   /* redraw outside 2 std, as Keras TruncatedNormal */
          w[e] = (float)(0.01 * z);
          break;
        }
        case PAI_INIT_ZERO:
        case PAI_INIT_STAT_ZERO: w[e] = 0.0f; break;
        case PAI_INIT_ONE:
        case PAI_INIT_STAT_ONE: w[e] = 1.0f; break;
      }
    }
  }
}
