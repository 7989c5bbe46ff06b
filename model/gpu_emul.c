/* gpu_emul.c - host emulation of model/gpu.h (see there). Device memory is host memory; the
 * kernels of model/gpu_kernels.h run as OpenMP loops; a dense layer runs the column-major
 * product of pai_gemm_colmajor with cuBLASLt's semantics: float32 accumulation of the stored
 * operand values, then beta C, the bias, ReLU, and rounding to the output type. */
#include "model/gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/gpu_kernels.h"
#include "model/gpu_profile.h"
#include "mpi/comm.h"
#include "mpi/log.h"

struct pai_gpu {
  size_t now, peak;
  pai_gpu_profile *prof;   /* PAI_GPU_PROFILE=1: wall time per call */
  int depth;               /* profiled calls in progress (only the outermost is counted) */
};

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* 1 when this call is the outermost profiled one: then *t0 is its start. */
static int prof_begin(pai_gpu *g, double *t0) {
  if (!g->prof || g->depth++) return 0;
  *t0 = now_ms();
  return 1;
}

static int prof_end(pai_gpu *g, int outer, double t0, const char *name, int rc) {
  if (g->prof) g->depth--;
  if (outer && rc == 0) pai_gpu_profile_add(g->prof, name, now_ms() - t0);
  return rc;
}

/* Allocations carry their size in front so that free can keep the count. */
typedef struct {
  size_t bytes;
  size_t pad;   /* keeps the payload 16-byte aligned */
} alloc_head;

int pai_gpu_count(void) {
  const char *e = getenv("PAI_GPU_EMULATE");
  return e && *e && strcmp(e, "0") != 0 ? 1 : 0;
}

void pai_gpu_info(char *out, size_t n) {
  snprintf(out, n, "GPU backend: host emulation (%s)",
           pai_gpu_count() ? "enabled by PAI_GPU_EMULATE" : "no CUDA in this build");
}

int pai_gpu_open(pai_gpu **g, int index) {
  (void)index;
  if (!pai_gpu_count()) {
    PAI_ERR("no GPU: this build has no CUDA backend (set PAI_GPU_EMULATE=1 to run its code "
            "path emulated on the CPU, for testing)");
    return PAI_ERR_USAGE;
  }
  *g = calloc(1, sizeof **g);
  if (!*g) {
    PAI_ERR("out of memory");
    return PAI_ERR_NOMEM;
  }
  (*g)->prof = pai_gpu_profile_new();
  return 0;
}

void pai_gpu_close(pai_gpu *g) {
  if (!g) return;
  pai_gpu_profile_report(g->prof, "host emulation", stderr);
  free(g);
}

const char *pai_gpu_name(const pai_gpu *g) {
  (void)g;
  return "host emulation";
}

void *pai_gpu_alloc(pai_gpu *g, size_t bytes, const char *what) {
  alloc_head *h = malloc(sizeof *h + bytes);
  if (!h) {
    PAI_ERR("out of memory allocating %zu bytes for %s", bytes, what);
    return NULL;
  }
  h->bytes = bytes;
  g->now += bytes;
  if (g->now > g->peak) g->peak = g->now;
  /* Fill with NaN bit patterns so that reading memory never written shows up in results, as
   * uninitialised device memory would. */
  memset(h + 1, 0xff, bytes);
  return h + 1;
}

void pai_gpu_free(pai_gpu *g, void *p) {
  if (!p) return;
  alloc_head *h = (alloc_head *)p - 1;
  g->now -= h->bytes;
  free(h);
}

size_t pai_gpu_mem_peak(const pai_gpu *g) { return g->peak; }

void *pai_gpu_stream(pai_gpu *g) {
  (void)g;
  return NULL;
}

/* NCCL's sums, emulated: the "device" buffers are host memory, so MPI sums them. A started
 * sum (pai_comm_sum_f32_start) runs at once; with PAI_EMUL_DEFER_SUMS=1 it runs only at
 * pai_comm_wait_all. The real one runs somewhere in between, so a caller correct under both
 * touches a started buffer neither too late (a write after the start, which an immediate sum
 * misses) nor too early (a read before the wait, which a deferred sum exposes). */
typedef struct {
  struct { float *buf; size_t n; } *pending;
  int n_pending, cap;
} emul_defer;

static int defer_start(pai_comm *c, float *buf, size_t n) {
  emul_defer *q = c->impl;
  if (q->n_pending == q->cap) {
    const int cap = q->cap ? 2 * q->cap : 64;
    void *grown = realloc(q->pending, (size_t)cap * sizeof *q->pending);
    if (!grown) {
      PAI_ERR("out of memory");
      return PAI_ERR_NOMEM;
    }
    q->pending = grown;
    q->cap = cap;
  }
  q->pending[q->n_pending].buf = buf;
  q->pending[q->n_pending++].n = n;
  return 0;
}

static int defer_wait(pai_comm *c) {
  emul_defer *q = c->impl;
  int rc = 0;
  for (int i = 0; i < q->n_pending && rc == 0; i++)
    rc = c->sum_f32(c, q->pending[i].buf, q->pending[i].n);
  q->n_pending = 0;
  return rc;
}

static void defer_free(pai_comm *c) {
  emul_defer *q = c->impl;
  if (q) free(q->pending);
  free(q);
  c->impl = NULL;
}

int pai_comm_init_nccl(pai_comm *c, const pai_dist *d, void *stream) {
  (void)stream;
  PAI_TRY(pai_comm_init_mpi(c, d));
  c->name = "nccl (emulated with MPI)";
  const char *e = getenv("PAI_EMUL_DEFER_SUMS");
  if (e && *e && strcmp(e, "0")) {
    c->impl = calloc(1, sizeof(emul_defer));
    if (!c->impl) {
      PAI_ERR("out of memory");
      return PAI_ERR_NOMEM;
    }
    c->sum_f32_start = defer_start;
    c->wait_all = defer_wait;
    c->free = defer_free;
    c->name = "nccl (emulated with MPI, started sums deferred)";
  }
  return 0;
}

int pai_gpu_upload(pai_gpu *g, void *dst, const void *src, size_t bytes) {
  double t0 = 0;
  const int outer = prof_begin(g, &t0);
  memcpy(dst, src, bytes);
  return prof_end(g, outer, t0, "copy to the GPU", 0);
}

int pai_gpu_download(pai_gpu *g, void *dst, const void *src, size_t bytes) {
  double t0 = 0;
  const int outer = prof_begin(g, &t0);
  memcpy(dst, src, bytes);
  return prof_end(g, outer, t0, "copy from the GPU", 0);
}

int pai_gpu_memset0(pai_gpu *g, void *dst, size_t bytes) {
  (void)g;
  memset(dst, 0, bytes);
  return 0;
}

int pai_gpu_sync(pai_gpu *g) {
  (void)g;
  return 0;
}

static float load(const void *p, pai_dtype t, int64_t idx) {
  return t == PAI_BF16 ? pai_from_bf16(((const uint16_t *)p)[idx]) : ((const float *)p)[idx];
}

/* Element (r, c) of op(X) where X is stored column-major (rows x cols, ld) and op transposes
 * when trans: op(X)(r, c) = X(c, r). */
static float op_at(const void *x, pai_dtype t, int64_t ld, int trans, int64_t r, int64_t c) {
  return trans ? load(x, t, r * ld + c) : load(x, t, c * ld + r);
}

static int gemm_run(pai_gpu *g, const pai_gemm *p);

int pai_gpu_gemm(pai_gpu *g, const pai_gemm *p) {
  double t0 = 0;
  const int outer = prof_begin(g, &t0);
  const int rc = gemm_run(g, p);
  char name[128] = "";
  if (outer)
    pai_gemm_name(name, sizeof name,
                  &(struct pai_gemm_name_args){p->M, p->N, p->K, p->trans_a, p->trans_b,
                                               p->ab_type == PAI_BF16, p->c_type == PAI_BF16,
                                               p->bias != NULL, p->relu, p->beta != 0.0f});
  return prof_end(g, outer, t0, name, rc);
}

static int gemm_run(pai_gpu *g, const pai_gemm *p) {
  PAI_TRY(pai_gemm_check(p));
  if (pai_gemm_plain_forced()) return pai_gemm_plain(g, p);
  const pai_colmajor_gemm q = pai_gemm_colmajor(p);
  /* the stored shapes must hold op's shape: cuBLASLt checks ld >= stored rows the same way */
  if (q.ld_first < q.first_rows || q.ld_second < q.second_rows || q.ld_d < q.m) {
    PAI_ERR("gemm: leading dimension below the stored rows (%lld/%d, %lld/%d, %lld/%d)",
            (long long)q.ld_first, q.first_rows, (long long)q.ld_second, q.second_rows,
            (long long)q.ld_d, q.m);
    return PAI_ERR_RUNTIME;
  }
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < q.n; j++) {
    for (int64_t i = 0; i < q.m; i++) {
      float acc = 0.0f;
      for (int64_t l = 0; l < q.k; l++)
        acc += op_at(q.first, p->ab_type, q.ld_first, q.trans_first, i, l) *
               op_at(q.second, p->ab_type, q.ld_second, q.trans_second, l, j);
      const int64_t di = j * q.ld_d + i;
      if (p->beta != 0.0f) acc += p->beta * load(p->c, p->c_type, di);
      if (p->bias) acc += load(p->bias, p->c_type, i);
      if (p->relu) acc = pai_k_relu(acc);
      if (p->c_type == PAI_BF16)
        ((uint16_t *)p->c)[di] = pai_to_bf16(acc);
      else
        ((float *)p->c)[di] = acc;
    }
  }
  return 0;
}

/* The library convolution of model/gpu.h, as its formulas read (double sums). */
int pai_gpu_dwconv_lib(pai_gpu *g, float *y, const float *x, const float *w, int B, int L, int D,
                       int dil, int lo, int rows) {
  double t0 = 0;
  const int outer = prof_begin(g, &t0);
#pragma omp parallel for schedule(static)
  for (int64_t br = 0; br < (int64_t)B * rows; br++) {
    const int64_t b = br / rows, p = lo + br % rows;
    for (int c = 0; c < D; c++) {
      double acc = 0;
      for (int k = 0; k < 5; k++) {
        const int64_t q = p + (int64_t)(k - 2) * dil;
        if (q >= 0 && q < L) acc += (double)w[k * D + c] * x[(b * L + q) * D + c];
      }
      y[(b * L + p) * D + c] = (float)acc;
    }
  }
  return prof_end(g, outer, t0, "dwconv lib", 0);
}

int pai_gpu_dwconv_lib_dx(pai_gpu *g, float *dx, const float *dy, const float *w, int B, int L,
                          int D, int dil) {
  double t0 = 0;
  const int outer = prof_begin(g, &t0);
#pragma omp parallel for schedule(static)
  for (int64_t bq = 0; bq < (int64_t)B * L; bq++) {
    const int64_t b = bq / L, q = bq % L;
    for (int c = 0; c < D; c++) {
      double acc = 0;
      for (int k = 0; k < 5; k++) {
        const int64_t p = q - (int64_t)(k - 2) * dil;
        if (p >= 0 && p < L) acc += (double)w[k * D + c] * dy[(b * L + p) * D + c];
      }
      dx[bq * D + c] = (float)acc;
    }
  }
  return prof_end(g, outer, t0, "dwconv lib dx", 0);
}

int pai_gpu_dwconv_lib_dw(pai_gpu *g, float *dw, const float *dy, const float *x, int B, int L,
                          int D, int dil) {
  double t0 = 0;
  const int outer = prof_begin(g, &t0);
#pragma omp parallel for schedule(static)
  for (int kc = 0; kc < 5 * D; kc++) {
    const int k = kc / D, c = kc % D;
    double acc = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t p = 0; p < L; p++) {
        const int64_t q = p + (int64_t)(k - 2) * dil;
        if (q >= 0 && q < L) acc += (double)dy[(b * L + p) * D + c] * x[(b * L + q) * D + c];
      }
    dw[kc] = (float)acc;
  }
  return prof_end(g, outer, t0, "dwconv lib dw", 0);
}

#define EMUL_DEFINE(name, params, args)                               \
  int pai_gpu_##name(pai_gpu *g, int64_t n, PAI_UNPAREN params) {     \
    double t0 = 0;                                                    \
    const int outer = prof_begin(g, &t0);                             \
    _Pragma("omp parallel for schedule(static)")                      \
    for (int64_t i = 0; i < n; i++) pai_k_##name(i, PAI_UNPAREN args); \
    return prof_end(g, outer, t0, #name, 0);                          \
  }
PAI_GPU_KERNELS(EMUL_DEFINE)
