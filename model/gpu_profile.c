/* gpu_profile.c - see gpu_profile.h. */
#include "model/gpu_profile.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  char *name;
  double ms;
  long calls;
} entry;

struct pai_gpu_profile {
  entry *e;
  int n, cap;
};

pai_gpu_profile *pai_gpu_profile_new(void) {
  const char *env = getenv("PAI_GPU_PROFILE");
  if (!env || !*env || !strcmp(env, "0")) return NULL;
  return calloc(1, sizeof(pai_gpu_profile));
}

void pai_gpu_profile_add(pai_gpu_profile *p, const char *name, double ms) {
  if (!p) return;
  for (int i = 0; i < p->n; i++) {
    if (strcmp(p->e[i].name, name)) continue;
    p->e[i].ms += ms;
    p->e[i].calls++;
    return;
  }
  if (p->n == p->cap) {
    const int cap = p->cap ? 2 * p->cap : 64;
    entry *grown = realloc(p->e, (size_t)cap * sizeof *grown);
    if (!grown) return;   /* a profile is best effort: the figure is dropped, not the run */
    p->e = grown;
    p->cap = cap;
  }
  char *copy = malloc(strlen(name) + 1);
  if (!copy) return;
  strcpy(copy, name);
  p->e[p->n++] = (entry){copy, ms, 1};
}

static int by_time(const void *a, const void *b) {
  const double x = ((const entry *)a)->ms, y = ((const entry *)b)->ms;
  return x < y ? 1 : x > y ? -1 : strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

void pai_gpu_profile_report(pai_gpu_profile *p, const char *device, FILE *f) {
  if (!p) return;
  double total = 0;
  long calls = 0;
  for (int i = 0; i < p->n; i++) {
    total += p->e[i].ms;
    calls += p->e[i].calls;
  }
  qsort(p->e, (size_t)p->n, sizeof *p->e, by_time);
  fprintf(f, "GPU profile (%s): %.1f ms in %ld calls\n", device, total, calls);
  fprintf(f, "  %6s %10s %7s %9s  %s\n", "share", "ms", "calls", "ms/call", "what");
  for (int i = 0; i < p->n; i++) {
    const entry *e = &p->e[i];
    fprintf(f, "  %5.1f%% %10.2f %7ld %9.3f  %s\n", total > 0 ? 100.0 * e->ms / total : 0.0,
            e->ms, e->calls, e->ms / (double)e->calls, e->name);
    free(e->name);
  }
  fflush(f);
  free(p->e);
  free(p);
}

void pai_gemm_name(char *out, size_t n, const struct pai_gemm_name_args *a) {
  snprintf(out, n, "gemm %s %dx%dx%d%s%s%s%s%s%s", a->ab_bf16 ? "bf16" : "fp32", a->M, a->N,
           a->K, a->c_bf16 ? "->bf16" : "", a->trans_a ? " A^T" : "", a->trans_b ? " B^T" : "",
           a->bias ? " bias" : "", a->relu ? " relu" : "", a->accumulate ? " +=C" : "");
}
