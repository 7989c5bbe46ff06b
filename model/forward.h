/* forward.h - inference: head outputs for a batch of sequences.
 *
 *   pai_infer inf;
 *   PAI_TRY(pai_infer_init(&inf, &model, max_batch, PAI_HEAD(0), &PAI_BACKEND_CPU));
 *   PAI_TRY(pai_infer_forward(&inf, codes, B, outs));    codes: (B, L) base codes
 *   pai_infer_free(&inf);
 *
 * outs[j] is (B, O, T_j) float, written for each head j in the mask (others are not touched).
 * The activation arena is sized once, in init, for max_batch sequences of the model's L.
 * With a cuda backend the weights and activations live on the GPU (model/forward_gpu.c);
 * codes and outs stay host buffers. The GPU's copy of the weights is taken in init; a caller
 * that changes the heads' projections afterwards (fine-tuning) calls pai_infer_heads_changed.
 *
 * Exactness: batch norm is applied in its inference form folded into neighbouring loops, and
 * only positions that feed the cropped output are computed. Both are exact up to float
 * rounding (tests/test_forward_ref.py compares with an unfolded full-length reference). */
#ifndef PAI_FORWARD_H
#define PAI_FORWARD_H

#include "model/arena.h"
#include "model/backend.h"
#include "model/gpu.h"
#include "model/model.h"

#define PAI_HEAD(j) (1u << (j))
#define PAI_ALL_HEADS 0xffu

typedef struct {
  float *ws, *wc, *bfull;    /* depthwise kernel with BN1 folded in: (K, D), (K, D), (D) */
  float *scale2, *shift2;    /* BN2 as an affine map: (D), (D) */
} pai_block_fold;

struct pai_infer_gpu;

typedef struct {
  const pai_model *model;
  pai_backend backend;
  int max_batch;
  unsigned heads_mask;
  int *lo, *hi;              /* [N + 1]: rows of layer_i that feed the cropped outputs */
  int chunk;                 /* rows per FFN chunk */
  pai_block_fold *fold;      /* [N] */
  float *fold_data;
  pai_arena arena;
  float *x, *m;              /* (max_batch, L, D) each: layer_i and layer_{i+1} */
  float *gin, *t;            /* (chunk, D), (chunk, 4D): FFN scratch */
  float *head_tmp;           /* (O, max T) */
  float **taps;              /* NULL, or [n_shortcuts] caller buffers (max_batch, O, D): the
                              * cropped rows of each shortcut layer (k = 0 is layer N) are copied
                              * there by pai_infer_forward, for head-only fine-tuning
                              * (CPU only) */
  struct pai_infer_gpu *gpu; /* the GPU side (backend cuda), see forward_gpu.c */
} pai_infer;

/* The blocks' batch norms folded into the depthwise kernels and FFN inputs (inference mode):
 * *fold [N] points into *data; the caller frees both. */
int pai_block_fold_init(const pai_model *model, pai_block_fold **fold, float **data) PAI_WUR;

/* Rows per FFN chunk for model_dim D (keeps the (chunk, 4D) intermediate in cache). */
int pai_ffn_chunk(int D);

int pai_infer_init(pai_infer *inf, const pai_model *model, int max_batch, unsigned heads_mask,
                   const pai_backend *backend) PAI_WUR;
int pai_infer_forward(pai_infer *inf, const uint8_t *codes, int B, float *const *outs) PAI_WUR;
void pai_infer_free(pai_infer *inf);
/* The model's head projections changed since init: the GPU copies them again (CPU: nothing). */
int pai_infer_heads_changed(pai_infer *inf) PAI_WUR;
/* Bytes of GPU memory the GPU forward has held at most (0 on the CPU). */
size_t pai_infer_gpu_mem_peak(const pai_infer *inf);

/* A block's weights on the GPU, as the GPU forward and cone scorer read them (forward_gpu.c):
 * float32 except the dense layers' kernels and first bias, which are of type dt. */
typedef struct {
  float *ws, *wc, *bdw, *bfull, *scale2, *shift2, *b2;
  void *w1, *b1, *w2;
  pai_dtype dt;
} pai_gpu_block;
int pai_gpu_block_put(pai_gpu *g, pai_gpu_block *b, const pai_block_fold *f,
                      const pai_block_params *bp, int D, pai_dtype dt) PAI_WUR;
/* The block's dense half on rows [lo, lo + rows) of each of B sequences of L rows of m:
 *   m += ReLU(BN2(m) W1 + b1) W2 + b2,  with scratch gin (B rows, D) and t (B rows, 4D) of b->dt. */
int pai_gpu_block_ffn(pai_gpu *g, const pai_gpu_block *b, float *m, int B, int L, int lo,
                      int rows, int D, void *gin, void *t) PAI_WUR;

/* The GPU side of pai_infer (forward_gpu.c), called by the functions above. */
int pai_infer_gpu_init(pai_infer *inf) PAI_WUR;
int pai_infer_gpu_forward(pai_infer *inf, const uint8_t *codes, int B, float *const *outs) PAI_WUR;
void pai_infer_gpu_free(pai_infer *inf);

/* Bytes of host activations pai_infer_init allocates for the CPU. */
size_t pai_infer_bytes(const pai_config *cfg, int max_batch);

/* Floating point operations of one forward pass over the positions actually computed
 * (multiply-add = 2), counting only the heads in the mask. */
double pai_infer_flops(const pai_infer *inf);

#endif
