/* gpu_kernel_list.h - the element-wise kernels of model/gpu_kernels.h, listed once:
 *   X(name, (parameters after the element index), (the same names, as arguments))
 * model/gpu.h declares a launcher per entry,
 *   int pai_gpu_<name>(pai_gpu *g, int64_t n, parameters...)    runs pai_k_<name> for i < n
 * and each runtime defines them from this list (model/gpu_cuda.cu: a grid-stride kernel;
 * model/gpu_emul.c: an OpenMP loop), so the two can never disagree on a signature. Parameter
 * names must differ from the launchers' own, g and n. */
#ifndef PAI_GPU_KERNEL_LIST_H
#define PAI_GPU_KERNEL_LIST_H

#define PAI_UNPAREN(...) __VA_ARGS__

#define PAI_GPU_KERNELS(X)                                                                       \
  X(stem, (float *y, const uint8_t *codes, const float *w, const float *bias, int D, int L,      \
           int lo, int rows),                                                                   \
    (y, codes, w, bias, D, L, lo, rows))                                                        \
  X(dwconv, (float *m, const float *x, const float *ws, const float *wc, const float *bias,     \
             int D, int L, int dil, int lo, int rows),                                          \
    (m, x, ws, wc, bias, D, L, dil, lo, rows))                                                  \
  X(dwconv_fix, (float *m, const float *x, const float *y, const float *wc, const float *bias,   \
                 int D, int L, int dil, int lo, int rows),                                      \
    (m, x, y, wc, bias, D, L, dil, lo, rows))                                                   \
  X(add3, (float *m, const float *x, const float *y, const float *bias, int D),                 \
    (m, x, y, bias, D))                                                                         \
  X(transpose, (float *out, const float *in, int rows, int cols), (out, in, rows, cols))        \
  X(affine_pack, (void *out, int out_bf16, const float *x, const float *scale,                  \
                  const float *shift, int D, int L, int lo, int rows),                          \
    (out, out_bf16, x, scale, shift, D, L, lo, rows))                                           \
  X(accumulate, (float *acc, const float *v, int first), (acc, v, first))                       \
  X(scale, (float *y, float s), (y, s))                                                         \
  X(cast, (void *out, int out_bf16, const float *in), (out, out_bf16, in))                      \
  X(copy, (float *out, const float *in), (out, in))                                             \
  X(colsum_part, (double *part, const void *a, int a_bf16, int64_t rows, int cols,              \
                  int64_t chunk),                                                               \
    (part, a, a_bf16, rows, cols, chunk))                                                       \
  X(bnsum_part, (double *part, const float *u, const float *v, const float *mean,               \
                 const float *istd, int64_t rows, int D, int64_t chunk),                        \
    (part, u, v, mean, istd, rows, D, chunk))                                                   \
  X(sum_parts, (double *out, const double *part, int64_t n_chunks, int width),                  \
    (out, part, n_chunks, width))                                                               \
  X(add_f64, (float *dst, const double *src), (dst, src))                                       \
  X(bn_stats, (float *stat, float *mov_mean, float *mov_var, const double *s, double count,     \
               double eps, double mom, int D),                                                  \
    (stat, mov_mean, mov_var, s, count, eps, mom, D))                                               \
  X(bn_apply, (void *out, int out_bf16, const float *x, const float *stat, const float *gamma,  \
               const float *beta, int D),                                                       \
    (out, out_bf16, x, stat, gamma, beta, D))                                                   \
  X(dwconv_train, (float *m, const float *x, const float *stat, const float *gamma,             \
                   const float *beta, const float *w, const float *bias, int L, int D, int dil), \
    (m, x, stat, gamma, beta, w, bias, L, D, dil))                                              \
  X(dwconv_dh, (float *dh, const float *dm, const float *w, int L, int D, int dil),             \
    (dh, dm, w, L, D, dil))                                                                     \
  X(dwconv_train_stats, (double *part, float *m, const float *x, const float *stat,             \
                         const float *gamma, const float *beta, const float *w, const float *bias,\
                         int64_t rows, int L, int D, int dil, int64_t chunk),                   \
    (part, m, x, stat, gamma, beta, w, bias, rows, L, D, dil, chunk))                           \
  X(dwconv_dh_stats, (double *part, float *dh, const float *dm, const float *w, const float *x,  \
                      const float *stat, int64_t rows, int L, int D, int dil, int64_t chunk),   \
    (part, dh, dm, w, x, stat, rows, L, D, dil, chunk))                                         \
  X(dwgrad_part, (double *part, const float *dm, const float *x, const float *stat,             \
                  const float *gamma, const float *beta, int64_t rows, int L, int D, int dil,    \
                  int64_t chunk),                                                               \
    (part, dm, x, stat, gamma, beta, rows, L, D, dil, chunk))                                   \
  X(stemgrad_part, (double *part, const uint8_t *codes, const float *a0, const float *da,       \
                    int64_t rows, int D, int64_t chunk),                                        \
    (part, codes, a0, da, rows, D, chunk))                                                      \
  X(stemgrad_apply, (float *gw, float *gb, const double *s, int D), (gw, gb, s, D))             \
  X(bn_back_coef, (float *coef, const double *s, const float *stat, const float *gamma,         \
                   double count, int D),                                                        \
    (coef, s, stat, gamma, count, D))                                                               \
  X(bn_back_apply, (float *dx, const float *dy, const float *x, const float *stat,              \
                    const float *coef, int D),                                                  \
    (dx, dy, x, stat, coef, D))                                                                 \
  X(relu_mask, (void *grad, const void *u, int bf16), (grad, u, bf16))                                \
  X(head_grad, (float *kept, const float *dpred, float s), (kept, dpred, s))                    \
  X(loss_part, (double *part, float *pred, float *dpred, const float *y, const float *scale,    \
                float inv_n, int64_t per, int64_t n_chunks, int64_t chunk),                     \
    (part, pred, dpred, y, scale, inv_n, per, n_chunks, chunk))                                 \
  X(cone_gather, (float *gathered, const float *x, const float *ref, const int *cb, int lo_in,  \
                  int n_in, int off, int n_alt, int D),                                         \
    (gathered, x, ref, cb, lo_in, n_in, off, n_alt, D))                                                \
  X(dwconv_interior, (float *m, const float *x, const float *ws, const float *bfull, int rows,  \
                      int D, int dil),                                                          \
    (m, x, ws, bfull, rows, D, dil))                                                               \
  X(rowsum_part, (double *part, const float *a, int64_t W, int64_t n_chunks, int64_t chunk),    \
    (part, a, W, n_chunks, chunk))                                                              \
  X(gemm_plain, (int M, int N, int K, int trans_a, int trans_b, int ab_bf16, int c_bf16,        \
                 const void *a, int64_t lda, const void *b, int64_t ldb, void *c, int64_t ldc,  \
                 const void *bias, int relu, float beta),                                       \
    (M, N, K, trans_a, trans_b, ab_bf16, c_bf16, a, lda, b, ldb, c, ldc, bias, relu, beta))    \
  X(sumsq_part, (double *part, const float *grad, int64_t count, int64_t chunk),                \
    (part, grad, count, chunk))                                                                 \
  X(adamw, (float *w, float *m, float *v, const float *grad, double clip, double decay,         \
            double alpha, double beta1, double beta2, double eps),                              \
    (w, m, v, grad, clip, decay, alpha, beta1, beta2, eps))

#endif
