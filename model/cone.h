/* cone.h - exact SNV scores of many neighbouring variants that share one reference sequence
 * (REFERENCE.md 2.4 and 6): the reference forward pass runs once per site, and each variant's
 * alternate pass only over its cone.
 *
 *   pai_cone cn;
 *   PAI_TRY(pai_cone_init(&cn, &model, n_max, batch));
 *   PAI_TRY(pai_cone_reference(&cn, u, n, vi));           once per site
 *   PAI_TRY(pai_cone_alts(&cn, k, alt_codes, B, raw));    any number of batches of B <= batch
 *   pai_cone_free(&cn);
 *
 * A site is n consecutive variant windows over one union sequence u of n - 1 + L base codes,
 * already in transcript orientation: variant k's window is u[k, k + L) and its changed base sits
 * at window index vi (L/2 for the + strand, L/2 - 1 for the - strand, REFERENCE.md 3), that is
 * at union index c = k + vi. raw[b] is the variant's raw score: the mean over the O cropped
 * outputs and head 0's T_0 tracks of head0(alt) - head0(ref), exactly what two full windows
 * give (model/score.c), up to float rounding.
 *
 * Why it is exact. Translation equivariance: when L >= O + 2 * radius no padding reaches a row
 * that feeds a cropped output (REFERENCE.md 2.4), so every such row of variant k's window equals
 * the row of the union pass at the same genome position. Let r_s be the receptive radius after
 * s blocks. The alternate layer s can differ from the reference only on rows c - r_s .. c + r_s
 * (the stem changes row c; block i widens by 2 d_i), and only rows within O/2 + r_N - r_s of
 * the output window feed it. Block s reads layer s at +- 2 d_s around each row it computes, so
 * the alternate rows of layer s+1 need the alternate rows of layer s where they can differ and
 * the reference rows elsewhere: cone.c gathers exactly that. The heads are per-row maps, so the
 * head difference is non-zero only on the cone's rows inside the output window; raw adds
 * sum_t ReLU(alt P + c) over those rows and subtracts the reference's sum over the same rows,
 * taken from per-layer prefix sums in double.
 *
 * Cost per variant at published size: about 8% of one forward pass (two passes for naive twin
 * scoring), see pai_cone_flops. */
#ifndef PAI_CONE_H
#define PAI_CONE_H

#include <stdint.h>

#include "model/forward.h"
#include "model/model.h"

struct pai_cone_gpu;

typedef struct {
  const pai_model *model;
  struct pai_cone_gpu *gpu;  /* non-NULL: the passes run on the GPU (model/cone_gpu.c) */
  pai_block_fold *fold;      /* [N] folded batch norms (pai_block_fold_init) */
  float *fold_data;
  int n_max, batch;
  int vi;                    /* set by pai_cone_reference */
  int n;                     /* variants of the current site */
  int *a_lo, *a_hi;          /* [N + 1] alternate rows of layer s, relative to the changed base */
  int *r_lo, *r_hi;          /* [N + 1] reference rows of layer s, union coordinates */
  int max_in, max_out;       /* rows per item of the gather and alternate buffers */
  int chunk;                 /* FFN rows per chunk */
  float **ref;               /* [N + 1] (n_max - 1 + L, D) reference layers */
  double **ref_cum;          /* [n_short] (n_max + O): prefix sums over the rows [C, ...) of
                              * sum_t ReLU(ref_s P + c) */
  float *g, *x, *m;          /* (batch, max_in, D), (batch, max_out, D) x 2 */
  float *gin, *t, *head_tmp; /* FFN scratch (chunk, D), (chunk, 4D); head scratch (chunk, T_0) */
  double *diff;              /* [batch] */
} pai_cone;

/* n_max: the most variants per site; batch: the most alternates per pai_cone_alts call.
 * Fails (logged) when the model's input_length < output_length + 2 * radius: padding would then
 * reach kept outputs and the union pass would not equal the per-window passes. */
int pai_cone_init(pai_cone *cn, const pai_model *model, int n_max, int batch) PAI_WUR;
/* The same on a backend: with a cuda one the reference layers and every pass live on the GPU
 * (model/cone_gpu.c); the interface and results are as below. */
int pai_cone_init_backend(pai_cone *cn, const pai_model *model, int n_max, int batch,
                          const pai_backend *backend) PAI_WUR;
void pai_cone_free(pai_cone *cn);

/* The GPU side (model/cone_gpu.c), called by the functions of this header: init after the
 * geometry is set; alts writes the head difference sums (before the division into raw). */
int pai_cone_gpu_init(pai_cone *cn, const pai_backend *backend) PAI_WUR;
int pai_cone_gpu_reference(pai_cone *cn, const uint8_t *u, int n) PAI_WUR;
int pai_cone_gpu_alts(pai_cone *cn, const int *k, const uint8_t *alt, int B, double *diff) PAI_WUR;
void pai_cone_gpu_free(pai_cone *cn);

/* The reference pass over u (n - 1 + L codes, n <= n_max). */
int pai_cone_reference(pai_cone *cn, const uint8_t *u, int n, int vi) PAI_WUR;

/* raw[b] for variant k[b] (0 <= k[b] < n) with its changed base replaced by code alt[b] (0..3),
 * b < B <= batch. */
int pai_cone_alts(pai_cone *cn, const int *k, const uint8_t *alt, int B, double *raw) PAI_WUR;

/* Bytes pai_cone_init allocates. */
size_t pai_cone_bytes(const pai_config *cfg, int n_max, int batch);

/* Floating point operations (multiply-add = 2) of one alternate with the given vi, and of one
 * reference pass over n variants (head 0 only). */
double pai_cone_alt_flops(const pai_config *cfg, int vi);
double pai_cone_ref_flops(const pai_config *cfg, int n, int vi);
/* The same for naive twin scoring of one variant: two forward passes over the rows that feed the
 * cropped output (model/forward.c), head 0 only. */
double pai_twin_flops(const pai_config *cfg);

#endif
