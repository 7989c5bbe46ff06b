/* gpu_cuda.cu - the CUDA implementation of model/gpu.h.
 *
 * The CUDA runtime is linked statically; cuBLASLt is opened with dlopen the first time a
 * device is opened, so that programs start without loading it (it is ~500 MiB) and a build
 * with the toolkit still runs on machines that have no GPU libraries. Element-wise kernels are
 * the bodies of model/gpu_kernels.h in grid-stride loops; dense layers are cuBLASLt matmuls
 * with bias/ReLU epilogues, float32 accumulation, and an algorithm cache keyed by shape. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "model/gpu.h"
#include "model/gpu_profile.h"
#include "mpi/log.h"
}
#include "model/gpu_kernels.h"

#define WORKSPACE_BYTES ((size_t)64 << 20)
#define ALGO_CACHE 128
#define DNN_PLANS 64

/* ---- cuBLASLt, opened at run time ------------------------------------------------------- */
#define LT_FUNCS(X)                                                                         \
  X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtGetVersion) X(cublasLtGetStatusString)     \
  X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute) \
  X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy)                              \
  X(cublasLtMatmulPreferenceCreate) X(cublasLtMatmulPreferenceDestroy)                      \
  X(cublasLtMatmulPreferenceSetAttribute) X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmul)

static struct {
#define LT_FIELD(f) decltype(&::f) f;
  LT_FUNCS(LT_FIELD)
#undef LT_FIELD
  void *lib;
} lt;

static int lt_load(void) {
  if (lt.lib) return 0;
  char name[64];
  snprintf(name, sizeof name, "libcublasLt.so.%d", CUBLAS_VER_MAJOR);
  void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    PAI_ERR("cannot load %s (cuBLAS %d's dense-layer library): %s; install it or add its "
            "folder to LD_LIBRARY_PATH",
            name, CUBLAS_VER_MAJOR, dlerror());
    return PAI_ERR_RUNTIME;
  }
#define LT_SYM(f)                                                          \
  lt.f = (decltype(&::f))dlsym(lib, #f);                                  \
  if (!lt.f) {                                                             \
    PAI_ERR("%s has no symbol %s: a cuBLAS older than the build's?", name, #f); \
    dlclose(lib);                                                          \
    return PAI_ERR_RUNTIME;                                                \
  }
  LT_FUNCS(LT_SYM)
#undef LT_SYM
  lt.lib = lib;
  return 0;
}

/* ---- cuDNN, opened at run time (only for PAI_DWCONV=cudnn) --------------------------------- */
#define DNN_FUNCS(X)                                                                         \
  X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream) X(cudnnGetErrorString) X(cudnnGetVersion) \
  X(cudnnCreateTensorDescriptor) X(cudnnDestroyTensorDescriptor) X(cudnnSetTensor4dDescriptor) \
  X(cudnnCreateFilterDescriptor) X(cudnnDestroyFilterDescriptor) X(cudnnSetFilter4dDescriptor) \
  X(cudnnCreateConvolutionDescriptor) X(cudnnDestroyConvolutionDescriptor)                   \
  X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionGroupCount)                        \
  X(cudnnSetConvolutionMathType) X(cudnnGetConvolutionForwardAlgorithm_v7)                   \
  X(cudnnGetConvolutionForwardWorkspaceSize) X(cudnnConvolutionForward)                      \
  X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                             \
  X(cudnnGetConvolutionBackwardDataWorkspaceSize) X(cudnnConvolutionBackwardData)            \
  X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                           \
  X(cudnnGetConvolutionBackwardFilterWorkspaceSize) X(cudnnConvolutionBackwardFilter)

static struct {
#define DNN_FIELD(f) decltype(&::f) f;
  DNN_FUNCS(DNN_FIELD)
#undef DNN_FIELD
  void *lib;
} dnn;

static int dnn_load(void) {
  if (dnn.lib) return 0;
  char name[64];
  snprintf(name, sizeof name, "libcudnn.so.%d", CUDNN_MAJOR);
  void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    PAI_ERR("cannot load %s (cuDNN, asked for by PAI_DWCONV=cudnn): %s; install it, add its "
            "folder to LD_LIBRARY_PATH, or unset PAI_DWCONV",
            name, dlerror());
    return PAI_ERR_RUNTIME;
  }
#define DNN_SYM(f)                                                         \
  dnn.f = (decltype(&::f))dlsym(lib, #f);                                 \
  if (!dnn.f) {                                                            \
    PAI_ERR("%s has no symbol %s: a cuDNN older than the build's?", name, #f); \
    dlclose(lib);                                                          \
    return PAI_ERR_RUNTIME;                                                \
  }
  DNN_FUNCS(DNN_SYM)
#undef DNN_SYM
  dnn.lib = lib;
  return 0;
}

/* ---- errors ------------------------------------------------------------------------------- */
static int cuda_fail(cudaError_t e, const char *what, const char *where) {
  cudaGetLastError();
  pai_log('E', where, "%s: CUDA error %d: %s", what, (int)e, cudaGetErrorString(e));
  return PAI_ERR_RUNTIME;
}
#define CU(call, what)                                               \
  do {                                                               \
    cudaError_t cu_rc_ = (call);                                     \
    if (cu_rc_ != cudaSuccess) return cuda_fail(cu_rc_, what, __func__); \
  } while (0)

static int lt_fail(cublasStatus_t s, const char *what, const char *where) {
  pai_log('E', where, "%s: cuBLASLt status %d: %s", what, (int)s, lt.cublasLtGetStatusString(s));
  return PAI_ERR_RUNTIME;
}
#define LT(call, what)                                                     \
  do {                                                                     \
    cublasStatus_t lt_rc_ = (call);                                        \
    if (lt_rc_ != CUBLAS_STATUS_SUCCESS) return lt_fail(lt_rc_, what, __func__); \
  } while (0)

/* ---- the device --------------------------------------------------------------------------- */
typedef struct {
  int m, n, k, trans_first, trans_second, ab_type, c_type, epilogue, accumulate;
  int64_t ld_first, ld_second, ld_d;
  uint32_t align[4], bias_align;
} algo_key;

struct pai_gpu {
  int device, sms;
  char name[256];
  cudaStream_t stream;
  cublasLtHandle_t lt;
  void *workspace;
  size_t now, peak;
  struct { void *p; size_t bytes; } *allocs;
  int n_allocs, cap_allocs;
  struct { algo_key key; cublasLtMatmulAlgo_t algo; int ok; } cache[ALGO_CACHE];
  int n_cache;
  cudnnHandle_t dnn;       /* cuDNN, opened on the first library convolution */
  int dnn_checked;         /* 1: the self-check passed; -1: it is running */
  float *dnn_w, *dnn_dw;   /* (D, 5) filters in cuDNN's layout, for dnn_d channels */
  int dnn_d;
  struct { int key[5]; int algo; size_t bytes; } dnn_plans[DNN_PLANS];   /* model/gpu_cuda.cu */
  int n_dnn_plans;
  void *dnn_ws;            /* cuDNN's workspace, grown on demand */
  size_t dnn_ws_bytes;
  pai_gpu_profile *prof;   /* PAI_GPU_PROFILE=1: device time per call (model/gpu_profile.h) */
  cudaEvent_t ev[2];
  int depth;               /* profiled calls in progress (only the outermost is counted) */
};

/* 1 when this call is the outermost profiled one: its start is recorded on the stream. */
static int prof_begin(pai_gpu *g) {
  if (!g->prof || g->depth++) return 0;
  if (cudaEventRecord(g->ev[0], g->stream) == cudaSuccess) return 1;
  cudaGetLastError();
  return 0;
}

/* Records the call's end, waits for it, and adds the time between the two events. */
static int prof_end(pai_gpu *g, int outer, const char *name, int rc) {
  if (g->prof) g->depth--;
  float ms = 0;
  if (outer && rc == 0) {
    if (cudaEventRecord(g->ev[1], g->stream) == cudaSuccess &&
        cudaEventSynchronize(g->ev[1]) == cudaSuccess &&
        cudaEventElapsedTime(&ms, g->ev[0], g->ev[1]) == cudaSuccess)
      pai_gpu_profile_add(g->prof, name, ms);
    else
      cudaGetLastError();   /* a profiling failure is not the next launch's */
  }
  return rc;
}

/* Why the last count found no device, when it was not simply that none is there (an old
 * driver for this CUDA runtime, say). */
static cudaError_t count_error = cudaSuccess;

extern "C" int pai_gpu_count(void) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();   /* clear the error */
    count_error = e == cudaErrorNoDevice ? cudaSuccess : e;
    return 0;
  }
  return n;
}

extern "C" void pai_gpu_info(char *out, size_t n) {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  if (cudaDriverGetVersion(&drv) != cudaSuccess) cudaGetLastError();
  const int count = pai_gpu_count();
  snprintf(out, n,
           "CUDA runtime %d (built with %d), driver %d, cuBLASLt %d, cuDNN %d, NCCL %d (headers; "
           "the libraries are opened when first used), %d GPU(s)%s%s",
           rt, CUDART_VERSION, drv, CUBLAS_VERSION, CUDNN_VERSION, NCCL_VERSION_CODE, count,
           count_error ? ": " : "", count_error ? cudaGetErrorString(count_error) : "");
}

extern "C" int pai_gpu_open(pai_gpu **out, int index) {
  *out = NULL;
  const int count = pai_gpu_count();
  if (count == 0) {
    PAI_ERR("no GPU visible (%s; check the driver and CUDA_VISIBLE_DEVICES)",
            count_error ? cudaGetErrorString(count_error) : "CUDA found no device");
    return PAI_ERR_USAGE;
  }
  PAI_TRY(lt_load());
  pai_gpu *g = (pai_gpu *)calloc(1, sizeof *g);
  if (!g) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  g->device = (index < 0 ? 0 : index) % count;
  int rc = 0;
  cudaDeviceProp prop;
  cudaError_t e = cudaSetDevice(g->device);
  if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, g->device);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaMalloc(&g->workspace, WORKSPACE_BYTES);
  if (e != cudaSuccess) {
    rc = cuda_fail(e, "opening the GPU", __func__);
  } else {
    snprintf(g->name, sizeof g->name, "%s", prop.name);
    g->sms = prop.multiProcessorCount;
    cublasStatus_t s = lt.cublasLtCreate(&g->lt);
    if (s != CUBLAS_STATUS_SUCCESS) rc = lt_fail(s, "cublasLtCreate", __func__);
  }
  g->prof = rc == 0 ? pai_gpu_profile_new() : NULL;
  if (g->prof && ((e = cudaEventCreate(&g->ev[0])) != cudaSuccess ||
                  (e = cudaEventCreate(&g->ev[1])) != cudaSuccess))
    rc = cuda_fail(e, "profiling events", __func__);
  if (rc < 0) {
    pai_gpu_close(g);
    return rc;
  }
  *out = g;
  return 0;
}

extern "C" void pai_gpu_close(pai_gpu *g) {
  if (!g) return;
  cudaSetDevice(g->device);
  if (g->stream) cudaStreamSynchronize(g->stream);
  pai_gpu_profile_report(g->prof, g->name, stderr);
  if (g->dnn) dnn.cudnnDestroy(g->dnn);
  for (int i = 0; i < 2; i++)
    if (g->ev[i]) cudaEventDestroy(g->ev[i]);
  for (int i = 0; i < g->n_allocs; i++) cudaFree(g->allocs[i].p);
  free(g->allocs);
  if (g->workspace) cudaFree(g->workspace);
  if (g->lt) lt.cublasLtDestroy(g->lt);
  if (g->stream) cudaStreamDestroy(g->stream);
  cudaGetLastError();
  free(g);
}

extern "C" const char *pai_gpu_name(const pai_gpu *g) { return g->name; }
extern "C" void *pai_gpu_stream(pai_gpu *g) { return (void *)g->stream; }

extern "C" void *pai_gpu_alloc(pai_gpu *g, size_t bytes, const char *what) {
  if (g->n_allocs == g->cap_allocs) {
    const int cap = g->cap_allocs ? 2 * g->cap_allocs : 64;
    void *grown = realloc(g->allocs, (size_t)cap * sizeof *g->allocs);
    if (!grown) {
      PAI_ERR("out of memory");
      return NULL;
    }
    g->allocs = (decltype(g->allocs))grown;
    g->cap_allocs = cap;
  }
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total = 0;
    cudaMemGetInfo(&free_b, &total);
    PAI_ERR("GPU out of memory: %zu MiB for %s (%zu MiB free of %zu MiB; %zu MiB held here): "
            "use a smaller --batch_size",
            bytes >> 20, what, free_b >> 20, total >> 20, g->now >> 20);
    return NULL;
  }
  g->allocs[g->n_allocs].p = p;
  g->allocs[g->n_allocs].bytes = bytes;
  g->n_allocs++;
  g->now += bytes;
  if (g->now > g->peak) g->peak = g->now;
  return p;
}

extern "C" void pai_gpu_free(pai_gpu *g, void *p) {
  if (!p) return;
  for (int i = 0; i < g->n_allocs; i++) {
    if (g->allocs[i].p != p) continue;
    cudaStreamSynchronize(g->stream);   /* queued work may still read it */
    cudaFree(p);
    g->now -= g->allocs[i].bytes;
    g->allocs[i] = g->allocs[--g->n_allocs];
    return;
  }
}

extern "C" size_t pai_gpu_mem_peak(const pai_gpu *g) { return g->peak; }

static int copy(pai_gpu *g, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                const char *what) {
  CU(cudaMemcpyAsync(dst, src, bytes, kind, g->stream), what);
  CU(cudaStreamSynchronize(g->stream), what);
  return 0;
}

extern "C" int pai_gpu_upload(pai_gpu *g, void *dst, const void *src, size_t bytes) {
  const int outer = prof_begin(g);
  const int rc = copy(g, dst, src, bytes, cudaMemcpyHostToDevice, "copy to the GPU");
  return prof_end(g, outer, "copy to the GPU", rc);
}

extern "C" int pai_gpu_download(pai_gpu *g, void *dst, const void *src, size_t bytes) {
  const int outer = prof_begin(g);
  const int rc = copy(g, dst, src, bytes, cudaMemcpyDeviceToHost, "copy from the GPU");
  return prof_end(g, outer, "copy from the GPU", rc);
}

extern "C" int pai_gpu_memset0(pai_gpu *g, void *dst, size_t bytes) {
  CU(cudaMemsetAsync(dst, 0, bytes, g->stream), "clearing GPU memory");
  return 0;
}

extern "C" int pai_gpu_sync(pai_gpu *g) {
  CU(cudaStreamSynchronize(g->stream), "GPU work");
  return 0;
}

/* ---- dense layers ------------------------------------------------------------------------- */
static uint32_t alignment(const void *p, int64_t ld, size_t elem) {
  uint64_t a = (uint64_t)(uintptr_t)p | (uint64_t)(ld * (int64_t)elem);
  uint32_t al = 256;
  while (al > 1 && (a & (al - 1))) al >>= 1;
  return al;
}

static cudaDataType_t cuda_type(pai_dtype t) { return t == PAI_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* Layouts and descriptor for one product; destroyed by the caller. */
typedef struct {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, d;
} lt_problem;

static void problem_free(lt_problem *pr) {
  if (pr->a) lt.cublasLtMatrixLayoutDestroy(pr->a);
  if (pr->b) lt.cublasLtMatrixLayoutDestroy(pr->b);
  if (pr->d) lt.cublasLtMatrixLayoutDestroy(pr->d);
  if (pr->desc) lt.cublasLtMatmulDescDestroy(pr->desc);
}

static int problem_init(lt_problem *pr, const pai_gemm *p, const pai_colmajor_gemm *q,
                        uint32_t epilogue) {
  memset(pr, 0, sizeof *pr);
  LT(lt.cublasLtMatmulDescCreate(&pr->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul descriptor");
  const cublasOperation_t ta = q->trans_first ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = q->trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT(lt.cublasLtMatmulDescSetAttribute(pr->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
     "transa");
  LT(lt.cublasLtMatmulDescSetAttribute(pr->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
     "transb");
  LT(lt.cublasLtMatmulDescSetAttribute(pr->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                       sizeof epilogue),
     "epilogue");
  if (p->bias)
    LT(lt.cublasLtMatmulDescSetAttribute(pr->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p->bias,
                                         sizeof p->bias),
       "bias");
  const cudaDataType_t ab = cuda_type(p->ab_type), c = cuda_type(p->c_type);
  LT(lt.cublasLtMatrixLayoutCreate(&pr->a, ab, (uint64_t)q->first_rows, (uint64_t)q->first_cols,
                                   q->ld_first),
     "layout A");
  LT(lt.cublasLtMatrixLayoutCreate(&pr->b, ab, (uint64_t)q->second_rows,
                                   (uint64_t)q->second_cols, q->ld_second),
     "layout B");
  LT(lt.cublasLtMatrixLayoutCreate(&pr->d, c, (uint64_t)q->m, (uint64_t)q->n, q->ld_d),
     "layout D");
  return 0;
}

#define CANDIDATES 8

/* Runs the product with the first of cuBLASLt's candidate algorithms that accepts it, and
 * remembers which (or that none did: *ran = 0, and the caller uses the plain kernel). */
static int lt_run(pai_gpu *g, const pai_gemm *p, const pai_colmajor_gemm *q, const algo_key *key,
                  const lt_problem *pr, int *ran) {
  const float alpha = 1.0f, beta = p->beta;
  *ran = 0;
  for (int i = 0; i < g->n_cache; i++) {
    if (memcmp(&g->cache[i].key, key, sizeof *key)) continue;
    if (!g->cache[i].ok) return 0;
    LT(lt.cublasLtMatmul(g->lt, pr->desc, &alpha, q->first, pr->a, q->second, pr->b, &beta, p->c,
                         pr->d, p->c, pr->d, &g->cache[i].algo, g->workspace, WORKSPACE_BYTES,
                         g->stream),
       "cublasLtMatmul");
    *ran = 1;
    return 0;
  }
  cublasLtMatmulPreference_t pref;
  LT(lt.cublasLtMatmulPreferenceCreate(&pref), "matmul preference");
  const uint64_t ws = WORKSPACE_BYTES;
  /* a bf16 output must not hold split-K partial sums: only reductions in the compute type */
  const uint32_t reductions = key->c_type == PAI_BF16 ? CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE
                                                      : CUBLASLT_REDUCTION_SCHEME_MASK;
  cublasStatus_t s = lt.cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = lt.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                &reductions, sizeof reductions);
  const cublasLtMatmulPreferenceAttributes_t which[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; i++)
    s = lt.cublasLtMatmulPreferenceSetAttribute(pref, which[i], &key->align[i],
                                                 sizeof key->align[i]);
  cublasLtMatmulHeuristicResult_t res[CANDIDATES];
  int found = 0;
  if (s == CUBLAS_STATUS_SUCCESS)
    s = lt.cublasLtMatmulAlgoGetHeuristic(g->lt, pr->desc, pr->a, pr->b, pr->d, pr->d, pref,
                                          CANDIDATES, res, &found);
  lt.cublasLtMatmulPreferenceDestroy(pref);
  /* no algorithm comes back as NOT_SUPPORTED (or INVALID_VALUE for some 1-wide shapes) */
  if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_SUPPORTED &&
      s != CUBLAS_STATUS_INVALID_VALUE)
    return lt_fail(s, "matmul heuristic", __func__);
  const int slot = g->n_cache < ALGO_CACHE ? g->n_cache++ : (int)((unsigned)key->m % ALGO_CACHE);
  g->cache[slot].key = *key;
  g->cache[slot].ok = 0;
  for (int i = 0; s == CUBLAS_STATUS_SUCCESS && i < found; i++) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const cublasStatus_t r =
        lt.cublasLtMatmul(g->lt, pr->desc, &alpha, q->first, pr->a, q->second, pr->b, &beta,
                          p->c, pr->d, p->c, pr->d, &res[i].algo, g->workspace, WORKSPACE_BYTES,
                          g->stream);
    if (r == CUBLAS_STATUS_NOT_SUPPORTED || r == CUBLAS_STATUS_INVALID_VALUE) continue;
    if (r != CUBLAS_STATUS_SUCCESS) return lt_fail(r, "cublasLtMatmul", __func__);
    g->cache[slot].algo = res[i].algo;
    g->cache[slot].ok = 1;
    *ran = 1;
    return 0;
  }
  PAI_WARN("cuBLASLt has no algorithm for a %d x %d x %d %s product (epilogue %d, alignments "
           "%u %u %u): using the plain kernel for it",
           key->m, key->n, key->k, key->ab_type == PAI_BF16 ? "bf16" : "fp32", key->epilogue,
           key->align[0], key->align[1], key->align[3]);
  return 0;
}

static int gemm_run(pai_gpu *g, const pai_gemm *p);

extern "C" int pai_gpu_gemm(pai_gpu *g, const pai_gemm *p) {
  const int outer = prof_begin(g);
  const int rc = gemm_run(g, p);
  char name[128] = "";
  if (outer) {
    const pai_gemm_name_args a = {p->M, p->N, p->K, p->trans_a, p->trans_b,
                                  p->ab_type == PAI_BF16, p->c_type == PAI_BF16,
                                  p->bias != NULL, p->relu, p->beta != 0.0f};
    pai_gemm_name(name, sizeof name, &a);
  }
  return prof_end(g, outer, name, rc);
}

static int gemm_run(pai_gpu *g, const pai_gemm *p) {
  PAI_TRY(pai_gemm_check(p));
  if (pai_gemm_plain_forced()) return pai_gemm_plain(g, p);
  const pai_colmajor_gemm q = pai_gemm_colmajor(p);
  const uint32_t epilogue = p->bias ? (p->relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                    : (p->relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
  algo_key key;
  memset(&key, 0, sizeof key);   /* padding too: the key is compared with memcmp */
  key.m = q.m;
  key.n = q.n;
  key.k = q.k;
  key.trans_first = q.trans_first;
  key.trans_second = q.trans_second;
  key.ab_type = p->ab_type;
  key.c_type = p->c_type;
  key.epilogue = (int)epilogue;
  key.accumulate = p->beta != 0.0f;
  key.ld_first = q.ld_first;
  key.ld_second = q.ld_second;
  key.ld_d = q.ld_d;
  const size_t ab = pai_dtype_size(p->ab_type), c = pai_dtype_size(p->c_type);
  key.align[0] = alignment(q.first, q.ld_first, ab);
  key.align[1] = alignment(q.second, q.ld_second, ab);
  key.align[2] = key.align[3] = alignment(p->c, q.ld_d, c);
  /* the heuristic reads the bias pointer itself, so its alignment is part of the problem */
  key.bias_align = p->bias ? alignment(p->bias, 0, c) : 0;

  lt_problem pr;
  int ran = 0, rc = problem_init(&pr, p, &q, epilogue);
  if (rc == 0) rc = lt_run(g, p, &q, &key, &pr, &ran);
  problem_free(&pr);
  if (rc == 0 && !ran) rc = pai_gemm_plain(g, p);
  return rc;
}

/* ---- element-wise kernels ----------------------------------------------------------------- */
#define THREADS 256

static unsigned grid_for(const pai_gpu *g, int64_t n) {
  const int64_t want = (n + THREADS - 1) / THREADS, cap = (int64_t)g->sms * 32;
  return (unsigned)(want < 1 ? 1 : want < cap ? want : cap);
}

#define GRID_STRIDE for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; \
                         i += (int64_t)gridDim.x * blockDim.x)

static int launched(const char *what) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? 0 : cuda_fail(e, what, "launch");
}

#define CUDA_DEFINE(name, params, args)                                              \
  __global__ void name##_kernel(int64_t n, PAI_UNPAREN params) {                     \
    GRID_STRIDE pai_k_##name(i, PAI_UNPAREN args);                                   \
  }                                                                                  \
  extern "C" int pai_gpu_##name(pai_gpu *g, int64_t n, PAI_UNPAREN params) {         \
    const int outer = prof_begin(g);                                                 \
    name##_kernel<<<grid_for(g, n), THREADS, 0, g->stream>>>(n, PAI_UNPAREN args);   \
    return prof_end(g, outer, #name, launched(#name));                               \
  }
PAI_GPU_KERNELS(CUDA_DEFINE)

/* ---- the depthwise convolution through cuDNN (model/gpu.h, PAI_DWCONV=cudnn) --------------
 * Sequences as NHWC images of height 1: N sequences, C = D, W = rows; the filter (D, 1, 1, 5)
 * with D groups, the taps `dil` apart, zero padding of 2 dil on each side, float32 with FMA
 * math only (no TF32). The (5, D) kernels of model/layers.h are transposed to cuDNN's (D, 5)
 * and back. Whole sequences go as one batch of N = B; a row window of the forward (rows
 * [lo, lo + rows) and the 2 dil around them) one sequence at a time, N = 1. Per problem
 * (direction, N, W, D, dilation) the algorithms cuDNN's heuristics propose are tried in their
 * order (for the gradients, deterministic ones first) and the first that runs is remembered. */
static int dnn_fail(cudnnStatus_t s, const char *what, const char *where) {
  pai_log('E', where, "%s: cuDNN status %d: %s", what, (int)s, dnn.cudnnGetErrorString(s));
  return PAI_ERR_RUNTIME;
}
#define DNN(call, what)                                                     \
  do {                                                                      \
    cudnnStatus_t dnn_rc_ = (call);                                         \
    if (dnn_rc_ != CUDNN_STATUS_SUCCESS) return dnn_fail(dnn_rc_, what, __func__); \
  } while (0)

enum { DNN_Y, DNN_DX, DNN_DW };
static const char *const dnn_kind_name[] = {"forward", "backward data", "backward filter"};

typedef struct {
  cudnnTensorDescriptor_t x;   /* also the output's: the padding keeps the width */
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
} dnn_problem;

static void dnn_problem_free(dnn_problem *pr) {
  if (pr->x) dnn.cudnnDestroyTensorDescriptor(pr->x);
  if (pr->w) dnn.cudnnDestroyFilterDescriptor(pr->w);
  if (pr->conv) dnn.cudnnDestroyConvolutionDescriptor(pr->conv);
}

static int dnn_problem_init(dnn_problem *pr, int N, int W, int D, int dil) {
  memset(pr, 0, sizeof *pr);
  DNN(dnn.cudnnCreateTensorDescriptor(&pr->x), "tensor descriptor");
  DNN(dnn.cudnnSetTensor4dDescriptor(pr->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, N, D, 1, W),
      "tensor descriptor");
  DNN(dnn.cudnnCreateFilterDescriptor(&pr->w), "filter descriptor");
  DNN(dnn.cudnnSetFilter4dDescriptor(pr->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, D, 1, 1, 5),
      "filter descriptor");
  DNN(dnn.cudnnCreateConvolutionDescriptor(&pr->conv), "convolution descriptor");
  DNN(dnn.cudnnSetConvolution2dDescriptor(pr->conv, 0, 2 * dil, 1, 1, 1, dil,
                                          CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
      "convolution descriptor");
  DNN(dnn.cudnnSetConvolutionGroupCount(pr->conv, D), "group count");
  DNN(dnn.cudnnSetConvolutionMathType(pr->conv, CUDNN_FMA_MATH), "math type");
  return 0;
}

static int dnn_workspace(pai_gpu *g, size_t bytes) {
  if (bytes <= g->dnn_ws_bytes) return 0;
  pai_gpu_free(g, g->dnn_ws);
  g->dnn_ws_bytes = 0;
  g->dnn_ws = pai_gpu_alloc(g, bytes, "cuDNN workspace");
  if (!g->dnn_ws) return PAI_ERR_NOMEM;
  g->dnn_ws_bytes = bytes;
  return 0;
}

static int dnn_self_check(pai_gpu *g);
#define DNN_CHECK_D 8   /* the self-check's channels */

/* cuDNN loaded, this device's handle on its stream, filter scratch for D channels, and the
 * self-check passed. Called before a call is profiled, so that the one-time set-up is not
 * counted as the call's time. */
static int dnn_ready(pai_gpu *g, int D) {
  if (!g->dnn) {
    PAI_TRY(dnn_load());
    CU(cudaSetDevice(g->device), "selecting the GPU for cuDNN");
    DNN(dnn.cudnnCreate(&g->dnn), "cudnnCreate");
    const cudnnStatus_t st = dnn.cudnnSetStream(g->dnn, g->stream);
    if (st != CUDNN_STATUS_SUCCESS) { /* a handle on another stream would race with ours */
      dnn.cudnnDestroy(g->dnn);
      g->dnn = NULL;
      return dnn_fail(st, "cudnnSetStream", __func__);
    }
  }
  if (D < DNN_CHECK_D) D = DNN_CHECK_D;   /* the self-check's problem uses the scratch too */
  if (g->dnn_d < D) {
    pai_gpu_free(g, g->dnn_w);
    pai_gpu_free(g, g->dnn_dw);
    g->dnn_d = 0;
    g->dnn_w = (float *)pai_gpu_alloc(g, (size_t)5 * D * sizeof(float), "cuDNN filters");
    g->dnn_dw = (float *)pai_gpu_alloc(g, (size_t)5 * D * sizeof(float), "cuDNN filters");
    if (!g->dnn_w || !g->dnn_dw) return PAI_ERR_NOMEM;
    g->dnn_d = D;
  }
  if (g->dnn_checked == 0) {
    g->dnn_checked = -1;
    const int rc = dnn_self_check(g);
    g->dnn_checked = rc == 0 ? 1 : 0;
    return rc;
  }
  return 0;
}

#define DNN_CANDIDATES 8

/* The algorithms to try for a problem, best first (gradients: deterministic ones first). */
static int dnn_candidates(pai_gpu *g, int kind, const dnn_problem *pr, int *algos, int *n) {
  int found = 0, det[DNN_CANDIDATES] = {0}, ok[DNN_CANDIDATES] = {0}, algo[DNN_CANDIDATES] = {0};
  if (kind == DNN_Y) {
    cudnnConvolutionFwdAlgoPerf_t perf[DNN_CANDIDATES];
    DNN(dnn.cudnnGetConvolutionForwardAlgorithm_v7(g->dnn, pr->x, pr->w, pr->conv, pr->x,
                                                   DNN_CANDIDATES, &found, perf),
        "forward algorithms");
    for (int i = 0; i < found; i++)
      ok[i] = perf[i].status == CUDNN_STATUS_SUCCESS, algo[i] = (int)perf[i].algo, det[i] = 1;
  } else if (kind == DNN_DX) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[DNN_CANDIDATES];
    DNN(dnn.cudnnGetConvolutionBackwardDataAlgorithm_v7(g->dnn, pr->w, pr->x, pr->conv, pr->x,
                                                        DNN_CANDIDATES, &found, perf),
        "backward data algorithms");
    for (int i = 0; i < found; i++)
      ok[i] = perf[i].status == CUDNN_STATUS_SUCCESS, algo[i] = (int)perf[i].algo,
      det[i] = perf[i].determinism == CUDNN_DETERMINISTIC;
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[DNN_CANDIDATES];
    DNN(dnn.cudnnGetConvolutionBackwardFilterAlgorithm_v7(g->dnn, pr->x, pr->x, pr->conv, pr->w,
                                                          DNN_CANDIDATES, &found, perf),
        "backward filter algorithms");
    for (int i = 0; i < found; i++)
      ok[i] = perf[i].status == CUDNN_STATUS_SUCCESS, algo[i] = (int)perf[i].algo,
      det[i] = perf[i].determinism == CUDNN_DETERMINISTIC;
  }
  *n = 0;
  for (int pass = 1; pass >= 0; pass--)
    for (int i = 0; i < found; i++)
      if (ok[i] && det[i] == pass) algos[(*n)++] = algo[i];
  return 0;
}

static cudnnStatus_t dnn_ws_size(pai_gpu *g, int kind, const dnn_problem *pr, int algo,
                                 size_t *bytes) {
  if (kind == DNN_Y)
    return dnn.cudnnGetConvolutionForwardWorkspaceSize(g->dnn, pr->x, pr->w, pr->conv, pr->x,
                                                       (cudnnConvolutionFwdAlgo_t)algo, bytes);
  if (kind == DNN_DX)
    return dnn.cudnnGetConvolutionBackwardDataWorkspaceSize(
        g->dnn, pr->w, pr->x, pr->conv, pr->x, (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
  return dnn.cudnnGetConvolutionBackwardFilterWorkspaceSize(
      g->dnn, pr->x, pr->x, pr->conv, pr->w, (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
}

/* One direction over `seqs` calls `stride` floats apart (one call when N = B covers them):
 *   Y: out = conv(in1)   DX: out = conv^T(in1)   DW: dnn_dw = sum of in1 (dy) x in2 (x). */
static cudnnStatus_t dnn_exec(pai_gpu *g, int kind, const dnn_problem *pr, int algo, size_t bytes,
                              float *out, const float *in1, const float *in2, int seqs,
                              size_t stride) {
  const float one = 1.0f, zero = 0.0f;
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  for (int b = 0; b < seqs && st == CUDNN_STATUS_SUCCESS; b++) {
    const size_t at = (size_t)b * stride;
    if (kind == DNN_Y)
      st = dnn.cudnnConvolutionForward(g->dnn, &one, pr->x, in1 + at, pr->w, g->dnn_w, pr->conv,
                                       (cudnnConvolutionFwdAlgo_t)algo, g->dnn_ws, bytes, &zero,
                                       pr->x, out + at);
    else if (kind == DNN_DX)
      st = dnn.cudnnConvolutionBackwardData(g->dnn, &one, pr->w, g->dnn_w, pr->x, in1 + at,
                                            pr->conv, (cudnnConvolutionBwdDataAlgo_t)algo,
                                            g->dnn_ws, bytes, &zero, pr->x, out + at);
    else   /* the calls' sums accumulate: beta 1 after the first */
      st = dnn.cudnnConvolutionBackwardFilter(g->dnn, &one, pr->x, in2 + at, pr->x, in1 + at,
                                              pr->conv, (cudnnConvolutionBwdFilterAlgo_t)algo,
                                              g->dnn_ws, bytes, b ? &one : &zero, pr->w,
                                              g->dnn_dw);
  }
  return st;
}

/* Runs one direction with the remembered algorithm for its problem, or finds one. */
static int dnn_conv(pai_gpu *g, int kind, int N, int W, int D, int dil, float *out,
                    const float *in1, const float *in2, int seqs, size_t stride) {
  dnn_problem pr;
  int rc = dnn_problem_init(&pr, N, W, D, dil);
  const int key[5] = {kind, N, W, D, dil};
  int slot = -1;
  for (int i = 0; rc == 0 && i < g->n_dnn_plans && slot < 0; i++)
    if (!memcmp(g->dnn_plans[i].key, key, sizeof key)) slot = i;
  if (rc == 0 && slot >= 0) {
    const int algo = g->dnn_plans[slot].algo;
    const size_t bytes = g->dnn_plans[slot].bytes;
    rc = dnn_workspace(g, bytes);
    const cudnnStatus_t st = rc == 0 ? dnn_exec(g, kind, &pr, algo, bytes, out, in1, in2, seqs,
                                                stride)
                                     : CUDNN_STATUS_SUCCESS;
    if (st != CUDNN_STATUS_SUCCESS) rc = dnn_fail(st, dnn_kind_name[kind], __func__);
    dnn_problem_free(&pr);
    return rc;
  }
  int algos[2 * DNN_CANDIDATES], n = 0, done = 0;
  cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
  if (rc == 0) rc = dnn_candidates(g, kind, &pr, algos, &n);
  for (int i = 0; rc == 0 && !done && i < n; i++) {
    size_t bytes = 0;
    last = dnn_ws_size(g, kind, &pr, algos[i], &bytes);
    if (last != CUDNN_STATUS_SUCCESS) continue;
    rc = dnn_workspace(g, bytes);
    if (rc < 0) break;
    last = dnn_exec(g, kind, &pr, algos[i], bytes, out, in1, in2, seqs, stride);
    if (last == CUDNN_STATUS_SUCCESS) {
      done = 1;
      const int at = g->n_dnn_plans < DNN_PLANS ? g->n_dnn_plans++ : (W + dil) % DNN_PLANS;
      memcpy(g->dnn_plans[at].key, key, sizeof key);
      g->dnn_plans[at].algo = algos[i];
      g->dnn_plans[at].bytes = bytes;
    } else if (last / 1000 != CUDNN_STATUS_NOT_SUPPORTED / 1000 &&
               last / 1000 != CUDNN_STATUS_BAD_PARAM / 1000) {
      rc = dnn_fail(last, dnn_kind_name[kind], __func__);   /* not a refusal: an error */
    }
  }
  if (rc == 0 && !done) {
    PAI_ERR("cuDNN runs no %s algorithm for a depthwise convolution of %d x %d x %d, dilation "
            "%d (%d tried; last status %d: %s): unset PAI_DWCONV",
            dnn_kind_name[kind], N, W, D, dil, n, (int)last, dnn.cudnnGetErrorString(last));
    rc = PAI_ERR_RUNTIME;
  }
  dnn_problem_free(&pr);
  return rc;
}

static int dnn_y(pai_gpu *g, float *y, const float *x, const float *w, int B, int L, int D,
                 int dil, int lo, int rows) {
  PAI_TRY(pai_gpu_transpose(g, (int64_t)5 * D, g->dnn_w, w, 5, D));
  /* the rows [lo, lo + rows) and the 2 dil on each side their taps read: inside the sequence,
   * cuDNN's zero padding is never read for them; at its ends, it is the sequence's own */
  const int a = lo - 2 * dil > 0 ? lo - 2 * dil : 0;
  const int e = lo + rows + 2 * dil < L ? lo + rows + 2 * dil : L;
  if (a == 0 && e == L)   /* whole sequences: one batch */
    return dnn_conv(g, DNN_Y, B, L, D, dil, y, x, NULL, 1, 0);
  const size_t at = (size_t)a * D;
  return dnn_conv(g, DNN_Y, 1, e - a, D, dil, y + at, x + at, NULL, B, (size_t)L * D);
}

static int dnn_dx(pai_gpu *g, float *dx, const float *dy, const float *w, int B, int L, int D,
                  int dil) {
  PAI_TRY(pai_gpu_transpose(g, (int64_t)5 * D, g->dnn_w, w, 5, D));
  return dnn_conv(g, DNN_DX, B, L, D, dil, dx, dy, NULL, 1, 0);
}

static int dnn_dw(pai_gpu *g, float *dw, const float *dy, const float *x, int B, int L, int D,
                  int dil) {
  PAI_TRY(dnn_conv(g, DNN_DW, B, L, D, dil, NULL, dy, x, 1, 0));
  return pai_gpu_transpose(g, (int64_t)5 * D, dw, g->dnn_dw, D, 5);
}

extern "C" int pai_gpu_dwconv_lib(pai_gpu *g, float *y, const float *x, const float *w, int B,
                                  int L, int D, int dil, int lo, int rows) {
  PAI_TRY(dnn_ready(g, D));
  const int outer = prof_begin(g);
  return prof_end(g, outer, "dwconv lib", dnn_y(g, y, x, w, B, L, D, dil, lo, rows));
}

extern "C" int pai_gpu_dwconv_lib_dx(pai_gpu *g, float *dx, const float *dy, const float *w,
                                     int B, int L, int D, int dil) {
  PAI_TRY(dnn_ready(g, D));
  const int outer = prof_begin(g);
  return prof_end(g, outer, "dwconv lib dx", dnn_dx(g, dx, dy, w, B, L, D, dil));
}

extern "C" int pai_gpu_dwconv_lib_dw(pai_gpu *g, float *dw, const float *dy, const float *x,
                                     int B, int L, int D, int dil) {
  PAI_TRY(dnn_ready(g, D));
  const int outer = prof_begin(g);
  return prof_end(g, outer, "dwconv lib dw", dnn_dw(g, dw, dy, x, B, L, D, dil));
}

/* The three on a small problem (2 sequences of 40 rows, 8 channels, dilation 3, the rows
 * [8, 37) for y: a window that starts inside the sequence and one clipped at its end), against the formulas of model/gpu.h evaluated on the host in double. cuDNN's
 * float sums of at most 80 products agree to ~1e-6 of the values' scale; 1e-4 is allowed. */
static int dnn_self_check(pai_gpu *g) {
  enum { B = 2, L = 40, D = DNN_CHECK_D, DIL = 3, LO = 8, ROWS = 29, N = B * L * D };
  static float x[N], dy[N], w[5 * D], y[N], dx[N], dw[5 * D];
  uint32_t state = 12345;
  for (int i = 0; i < N + N + 5 * D; i++) {
    state = state * 1664525u + 1013904223u;
    const float v = (float)(state >> 8) / (float)(1u << 24) - 0.5f;
    if (i < N) x[i] = v;
    else if (i < 2 * N) dy[i - N] = v;
    else w[i - 2 * N] = v;
  }
  float *dev = (float *)pai_gpu_alloc(g, (size_t)(4 * N + 10 * D) * sizeof(float), "self-check");
  if (!dev) return PAI_ERR_NOMEM;
  float *dx_d = dev, *dy_d = dev + N, *x_d = dev + 2 * N, *y_d = dev + 3 * N, *w_d = dev + 4 * N,
        *dw_d = w_d + 5 * D;
  int rc = pai_gpu_upload(g, x_d, x, sizeof x);
  if (rc == 0) rc = pai_gpu_upload(g, dy_d, dy, sizeof dy);
  if (rc == 0) rc = pai_gpu_upload(g, w_d, w, sizeof w);
  if (rc == 0) rc = dnn_y(g, y_d, x_d, w_d, B, L, D, DIL, LO, ROWS);
  if (rc == 0) rc = dnn_dx(g, dx_d, dy_d, w_d, B, L, D, DIL);
  if (rc == 0) rc = dnn_dw(g, dw_d, dy_d, x_d, B, L, D, DIL);
  if (rc == 0) rc = pai_gpu_download(g, y, y_d, sizeof y);
  if (rc == 0) rc = pai_gpu_download(g, dx, dx_d, sizeof dx);
  if (rc == 0) rc = pai_gpu_download(g, dw, dw_d, sizeof dw);
  pai_gpu_free(g, dev);
  if (rc < 0) return rc;
  double worst = 0;
  const char *which = "";
  for (int b = 0; b < B; b++)
    for (int p = 0; p < L; p++)
      for (int c = 0; c < D; c++) {
        double ry = 0, rx = 0;
        for (int k = 0; k < 5; k++) {
          const int q = p + (k - 2) * DIL, r = p - (k - 2) * DIL;
          if (q >= 0 && q < L) ry += (double)w[k * D + c] * x[(b * L + q) * D + c];
          if (r >= 0 && r < L) rx += (double)w[k * D + c] * dy[(b * L + r) * D + c];
        }
        const int at = (b * L + p) * D + c;
        if (p >= LO && p < LO + ROWS && fabs(ry - y[at]) > worst) {
          worst = fabs(ry - y[at]);
          which = "forward";
        }
        if (fabs(rx - dx[at]) > worst) {
          worst = fabs(rx - dx[at]);
          which = "backward data";
        }
      }
  for (int k = 0; k < 5; k++)
    for (int c = 0; c < D; c++) {
      double r = 0;
      for (int b = 0; b < B; b++)
        for (int p = 0; p < L; p++) {
          const int q = p + (k - 2) * DIL;
          if (q >= 0 && q < L) r += (double)dy[(b * L + p) * D + c] * x[(b * L + q) * D + c];
        }
      if (fabs(r - dw[k * D + c]) > worst) {
        worst = fabs(r - dw[k * D + c]);
        which = "backward filter";
      }
    }
  if (worst > 1e-4) {
    PAI_ERR("cuDNN %zu's depthwise convolution disagrees with the host on a test problem (%s: "
            "error %.2e): unset PAI_DWCONV to use the hand-written kernels",
            dnn.cudnnGetVersion(), which, worst);
    return PAI_ERR_RUNTIME;
  }
  PAI_INFO("cuDNN %zu: depthwise convolution checked against the host (worst error %.1e)",
           dnn.cudnnGetVersion(), worst);
  return 0;
}
