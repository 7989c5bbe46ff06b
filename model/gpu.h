/* gpu.h - what the GPU backend needs from a device, behind one small interface.
 *
 * Two implementations, chosen when a program is linked:
 *   model/gpu_cuda.cu   CUDA: device memory, one stream, cuBLASLt for dense layers, and the
 *                       kernels of model/gpu_kernels.h as grid-stride kernels.
 *   model/gpu_emul.c    host emulation: "device" memory is host memory, the same kernel
 *                       bodies run as loops, and dense layers run through a plain
 *                       implementation of cuBLASLt's column-major semantics (bf16 rounding
 *                       included). Builds without the CUDA toolkit link it (it then reports
 *                       no device unless PAI_GPU_EMULATE=1 is set); the test suite links it
 *                       into test drivers so that the GPU backend's code above this interface
 *                       (model/forward_gpu.c) is checked on machines without a GPU.
 *
 *   pai_gpu *g;
 *   PAI_TRY(pai_gpu_open(&g, local_rank));
 *   float *x = pai_gpu_alloc(g, bytes, "activations");    NULL: logged, out of memory
 *   PAI_TRY(pai_gpu_upload(g, x, host, bytes));
 *   PAI_TRY(pai_gpu_gemm(g, &(pai_gemm){...}));
 *   PAI_TRY(pai_gpu_download(g, host, x, bytes));          waits for the work queued before it
 *   pai_gpu_close(g);                                       frees what was allocated
 *
 * All work goes to one in-order stream, so calls run in the order they are made; errors of
 * queued work surface at the next call that waits (download, sync). */
#ifndef PAI_GPU_H
#define PAI_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "model/gpu_kernel_list.h"
#include "model/pai.h"

typedef struct pai_gpu pai_gpu;
typedef enum { PAI_F32 = 0, PAI_BF16 = 1 } pai_dtype;

static inline size_t pai_dtype_size(pai_dtype t) { return t == PAI_BF16 ? 2 : 4; }
static inline const char *pai_dtype_name(pai_dtype t) { return t == PAI_BF16 ? "bf16" : "fp32"; }

/* Devices visible to this process (0 without a GPU, a driver, or the CUDA build). */
int pai_gpu_count(void);
/* One line: runtime and library versions and the devices seen. */
void pai_gpu_info(char *out, size_t n);

/* Opens device `index` modulo the device count (pass the node-local rank): makes it current,
 * creates the stream and the dense-layer library's handle. */
int pai_gpu_open(pai_gpu **g, int index) PAI_WUR;
void pai_gpu_close(pai_gpu *g);
/* The device's name, e.g. "NVIDIA H100 80GB HBM3". */
const char *pai_gpu_name(const pai_gpu *g);
/* The stream all work goes to (a cudaStream_t; NULL in the emulation), for mpi/comm.h's NCCL. */
void *pai_gpu_stream(pai_gpu *g);

void *pai_gpu_alloc(pai_gpu *g, size_t bytes, const char *what);
void pai_gpu_free(pai_gpu *g, void *p);
/* Bytes allocated now and at most so far through pai_gpu_alloc. */
size_t pai_gpu_mem_peak(const pai_gpu *g);

int pai_gpu_upload(pai_gpu *g, void *dst, const void *src, size_t bytes) PAI_WUR;
int pai_gpu_download(pai_gpu *g, void *dst, const void *src, size_t bytes) PAI_WUR;
int pai_gpu_memset0(pai_gpu *g, void *dst, size_t bytes) PAI_WUR;
int pai_gpu_sync(pai_gpu *g) PAI_WUR;

/* Dense layer, row-major:  C = act(op(A) op(B) + bias + beta C)
 *   op(A): (M, K), stored (M, K) with leading dimension lda, or (K, M) when trans_a.
 *   op(B): (K, N), stored (K, N) with ldb, or (N, K) when trans_b.
 *   C: (M, N) with ldc. A and B share one type; C is float32, or bf16 when A and B are.
 *   bias: NULL or (N) of C's type, added to every row; relu: ReLU after the bias.
 *   beta: 0 (C is overwritten) or 1 (accumulates). Products accumulate in float32. */
typedef struct {
  int M, N, K;
  int trans_a, trans_b;
  pai_dtype ab_type, c_type;
  const void *a, *b;
  void *c;
  int64_t lda, ldb, ldc;
  const void *bias;
  int relu;
  float beta;
} pai_gemm;
int pai_gpu_gemm(pai_gpu *g, const pai_gemm *p) PAI_WUR;

/* The column-major product both implementations execute for a pai_gemm (cuBLASLt's view):
 *   D (m, n, ldd) = epilogue(op_a(A) op_b(B) + beta C),  A = first, B = second operand.
 * Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so the row-major B is the
 * first operand and A the second; a row-major (r, c) matrix with leading dimension ld is the
 * column-major (c, r) matrix with the same ld. The bias runs along D's rows (length m = N). */
typedef struct {
  int m, n, k;
  int trans_first, trans_second;          /* 1: the operand is stored transposed */
  int first_rows, first_cols, second_rows, second_cols;   /* stored shapes, column-major */
  const void *first, *second;
  int64_t ld_first, ld_second, ld_d;
} pai_colmajor_gemm;

static inline pai_colmajor_gemm pai_gemm_colmajor(const pai_gemm *p) {
  pai_colmajor_gemm q;
  q.m = p->N;
  q.n = p->M;
  q.k = p->K;
  /* first operand: op(B)^T, (N, K). Row-major (K, N) storage is column-major (N, K): no
   * transpose; row-major (N, K) storage (trans_b) is column-major (K, N): transpose. */
  q.trans_first = p->trans_b;
  q.first_rows = p->trans_b ? p->K : p->N;
  q.first_cols = p->trans_b ? p->N : p->K;
  q.first = p->b;
  q.ld_first = p->ldb;
  /* second operand: op(A)^T, (K, M). Row-major (M, K) storage is column-major (K, M). */
  q.trans_second = p->trans_a;
  q.second_rows = p->trans_a ? p->M : p->K;
  q.second_cols = p->trans_a ? p->K : p->M;
  q.second = p->a;
  q.ld_second = p->lda;
  q.ld_d = p->ldc;
  return q;
}

/* Helpers on top of the interface (model/forward_gpu.c): n floats copied as type dt (bf16:
 * rounded to nearest even on the host), into dst or into a new allocation (NULL: logged). */
int pai_gpu_upload_typed(pai_gpu *g, void *dst, const float *host, size_t n, pai_dtype dt) PAI_WUR;
void *pai_gpu_put(pai_gpu *g, const float *host, size_t n, pai_dtype dt, const char *what);

/* The same product with the plain kernel pai_k_gemm_plain (model/gpu_kernels.h): the runtimes'
 * fallback where the dense-layer library has no algorithm, and everywhere when the environment
 * sets PAI_GPU_PLAIN_GEMM=1 (a cross-check; slow). */
int pai_gemm_plain(pai_gpu *g, const pai_gemm *p) PAI_WUR;
int pai_gemm_plain_forced(void);

/* Checks a pai_gemm's shapes and types before either implementation runs it. */
int pai_gemm_check(const pai_gemm *p) PAI_WUR;

/* The depthwise dilated convolution through the vendor library (cuDNN; the host emulation
 * computes it with plain loops), beside the hand-written kernels: the backends use it when the
 * environment sets PAI_DWCONV=cudnn (pai_dwconv_lib_wanted). Five taps, zero padding, float32:
 *   y[b][p][c]  = sum_k w[k][c] x[b][p + (k - 2) dil][c]      for rows p in [lo, lo + rows)
 *   dx[b][q][c] = sum_k w[k][c] dy[b][q - (k - 2) dil][c]      every row
 *   dw[k][c]    = sum over b, p of dy[b][p][c] x[b][p + (k - 2) dil][c]     (overwritten)
 * with taps outside [0, L) left out. x, y, dx, dy: (B, L, D), w, dw: (5, D). Rows of y outside
 * [lo, lo + rows) but within 2 dil of them may be overwritten too. On its first use on a
 * device, the CUDA implementation checks each of the three against the host on a small problem
 * and fails (naming the error) if they disagree. */
int pai_gpu_dwconv_lib(pai_gpu *g, float *y, const float *x, const float *w, int B, int L, int D,
                       int dil, int lo, int rows) PAI_WUR;
int pai_gpu_dwconv_lib_dx(pai_gpu *g, float *dx, const float *dy, const float *w, int B, int L,
                          int D, int dil) PAI_WUR;
int pai_gpu_dwconv_lib_dw(pai_gpu *g, float *dw, const float *dy, const float *x, int B, int L,
                          int D, int dil) PAI_WUR;
/* 1 when PAI_DWCONV=cudnn (read once; "kernel", the default, or unset: 0). */
int pai_dwconv_lib_wanted(void);

/* Launchers of the element-wise kernels of model/gpu_kernels.h (see gpu_kernel_list.h):
 * pai_gpu_<name>(g, n, args...) runs pai_k_<name>(i, args...) for every i < n, queued on the
 * stream. */
#define PAI_GPU_DECLARE(name, params, args) \
  int pai_gpu_##name(pai_gpu *g, int64_t n, PAI_UNPAREN params) PAI_WUR;
PAI_GPU_KERNELS(PAI_GPU_DECLARE)
#undef PAI_GPU_DECLARE

#endif
