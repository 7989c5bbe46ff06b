/* params.h - the parameter buffer and its table of tensors, generated from params.def.
 *
 * All parameters live in one contiguous float buffer; each tensor starts at a 64-byte aligned
 * offset (gaps are zero). Gradients and optimizer moments use buffers of the same n_floats and
 * layout, so a collective, an optimizer step or a save takes one pointer and one count. */
#ifndef PAI_PARAMS_H
#define PAI_PARAMS_H

#include "model/config.h"

typedef enum {
  PAI_INIT_GLOROT, PAI_INIT_GLOROT_DW, PAI_INIT_TNORM, PAI_INIT_ZERO, PAI_INIT_ONE,
  PAI_INIT_STAT_ZERO, PAI_INIT_STAT_ONE   /* moving statistics: not trainable */
} pai_init_kind;

typedef struct {
#define PAI_STEM_PARAM(field, path, rows, cols, init) float *field;
#include "model/params.def"
} pai_stem_params;

typedef struct {
#define PAI_BLOCK_PARAM(field, path, rows, cols, init) float *field;
#include "model/params.def"
} pai_block_params;

typedef struct {
#define PAI_HEAD_PARAM(field, path, rows, cols, init) float *field;
#include "model/params.def"
} pai_proj_params;

typedef struct {
  char path[PAI_NAME_LEN];  /* dataset path in model.h5, e.g. "/block_3/ffn1/kernel" */
  int rows, cols;           /* cols 0: a vector of rows */
  pai_init_kind init;
  int trainable;            /* 0 for batch-norm moving statistics */
  size_t offset;            /* in floats from the buffer start */
  size_t n_elems;           /* rows * max(cols, 1) */
  float **ptr;              /* the struct member bound to this tensor */
} pai_tensor;

typedef struct {
  float *data;              /* n_floats, owned (64-byte aligned) */
  size_t n_floats;
  pai_stem_params stem;
  pai_block_params *blocks; /* [num_blocks] */
  pai_proj_params *proj;    /* [n_heads * n_shortcuts]: head j, shortcut k at j * n_short + k */
  int n_short;
  pai_tensor *tensors;
  int n_tensors;
} pai_params;

/* Lays out the tensors for cfg, allocates a zeroed buffer and binds the pointers.
 * Free with pai_params_free. */
int pai_params_init(pai_params *p, const pai_config *cfg) PAI_WUR;
void pai_params_free(pai_params *p);

static inline pai_proj_params *pai_proj(const pai_params *p, int head, int k) {
  return &p->proj[head * p->n_short + k];
}

/* Fills every tensor per its init kind (REFERENCE.md 2.5). Each tensor draws from its own
 * stream seeded by (seed, tensor index), so the result does not depend on the fill order. */
void pai_params_init_random(pai_params *p, uint64_t seed);

size_t pai_params_count(const pai_params *p);   /* trainable + statistics, without padding */

#endif
