/* backend.c - see backend.h. */
#include "model/backend.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "mpi/log.h"

/* OpenBLAS's own thread control (the Debian openmp build follows omp_set_num_threads too). */
void openblas_set_num_threads(int n);
char *openblas_get_config(void);

#ifndef PAI_HAVE_CUDA
int pai_cuda_device_count(void) { return 0; }
static void cuda_info(char *out, size_t n) { snprintf(out, n, "CUDA backend not built"); }
#else
void pai_cuda_info(char *out, size_t n);
static void cuda_info(char *out, size_t n) { pai_cuda_info(out, n); }
#endif

void pai_set_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int pai_get_threads(void) { return omp_get_max_threads(); }

const char *pai_device_name(pai_device d) { return d == PAI_DEVICE_CUDA ? "cuda" : "cpu"; }

int pai_device_select(const char *name, pai_device *out) {
  if (!strcmp(name, "cpu") || !strcmp(name, "auto")) {
    /* auto: the CUDA forward is not implemented yet, so auto is the CPU for now */
    *out = PAI_DEVICE_CPU;
    return 0;
  }
  if (!strcmp(name, "cuda")) {
    PAI_ERR("--device cuda: the GPU backend is not implemented in this version (%d GPU(s) "
            "visible); use --device cpu",
            pai_cuda_device_count());
    return PAI_ERR_USAGE;
  }
  PAI_ERR("--device: '%s' is not one of cpu, cuda, auto", name);
  return PAI_ERR_USAGE;
}

void pai_build_info(char *out, size_t out_len) {
  char cuda[256];
  cuda_info(cuda, sizeof cuda);
  snprintf(out, out_len, "BLAS: %s; OpenMP threads: %d; %s", openblas_get_config(),
           omp_get_max_threads(), cuda);
}
