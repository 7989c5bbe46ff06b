/* backend.c - see backend.h. */
#include "model/backend.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "model/gpu.h"
#include "mpi/log.h"

/* OpenBLAS's own thread control (the Debian openmp build follows omp_set_num_threads too). */
void openblas_set_num_threads(int n);
char *openblas_get_config(void);

void pai_set_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int pai_get_threads(void) { return omp_get_max_threads(); }

const char *pai_device_name(pai_device d) { return d == PAI_DEVICE_CUDA ? "cuda" : "cpu"; }

int pai_device_select(const char *name, int gpu_ok, pai_device *out) {
  if (!strcmp(name, "cpu")) {
    *out = PAI_DEVICE_CPU;
    return 0;
  }
  if (!strcmp(name, "auto")) {
    *out = gpu_ok && pai_gpu_count() > 0 ? PAI_DEVICE_CUDA : PAI_DEVICE_CPU;
    return 0;
  }
  if (!strcmp(name, "cuda")) {
    if (!gpu_ok) {
      PAI_ERR("--device cuda: this program runs on the CPU in this version; use --device cpu");
      return PAI_ERR_USAGE;
    }
    if (pai_gpu_count() == 0) {
      char info[256];
      pai_gpu_info(info, sizeof info);
      PAI_ERR("--device cuda: no GPU visible (%s); use --device cpu", info);
      return PAI_ERR_USAGE;
    }
    *out = PAI_DEVICE_CUDA;
    return 0;
  }
  PAI_ERR("--device: '%s' is not one of cpu, cuda, auto", name);
  return PAI_ERR_USAGE;
}

const char *pai_precision_name(pai_precision p) { return p == PAI_PRECISION_BF16 ? "bf16" : "fp32"; }

int pai_precision_select(const char *name, pai_precision *out) {
  if (!strcmp(name, "fp32")) {
    *out = PAI_PRECISION_FP32;
    return 0;
  }
  if (!strcmp(name, "bf16")) {
    *out = PAI_PRECISION_BF16;
    return 0;
  }
  PAI_ERR("--precision: '%s' is not one of fp32, bf16", name);
  return PAI_ERR_USAGE;
}

int pai_backend_select(const char *device, const char *precision, int gpu_ok, int local_rank,
                       pai_backend *out) {
  *out = (pai_backend){.gpu_index = local_rank};
  PAI_TRY(pai_device_select(device, gpu_ok, &out->device));
  return pai_precision_select(precision, &out->precision);
}

void pai_build_info(char *out, size_t out_len) {
  char gpu[256];
  pai_gpu_info(gpu, sizeof gpu);
  snprintf(out, out_len, "BLAS: %s; OpenMP threads: %d; %s", openblas_get_config(),
           omp_get_max_threads(), gpu);
}
