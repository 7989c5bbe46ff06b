/* backend.h - where the model runs. The choice is made once, here, from `--device` and
 * `--precision`; layers never test for it. The GPU backend (model/gpu.h) plugs in behind the
 * same pai_infer interface as the CPU. */
#ifndef PAI_BACKEND_H
#define PAI_BACKEND_H

#include "model/pai.h"

typedef enum { PAI_DEVICE_CPU = 0, PAI_DEVICE_CUDA = 1 } pai_device;
typedef enum { PAI_PRECISION_FP32 = 0, PAI_PRECISION_BF16 = 1 } pai_precision;

typedef struct {
  pai_device device;
  pai_precision precision;   /* GPU: the dense layers' operands (the CPU always runs fp32) */
  int gpu_index;             /* GPU: which device, modulo the count (pass the node-local rank) */
} pai_backend;

#define PAI_BACKEND_CPU ((pai_backend){PAI_DEVICE_CPU, PAI_PRECISION_FP32, 0})

/* Parses "cpu", "cuda" or "auto". "auto" is cuda when a GPU is visible and the program has a
 * GPU path (gpu_ok), else cpu; "cuda" without a GPU, or where the program has no GPU path, is
 * a usage error. */
int pai_device_select(const char *name, int gpu_ok, pai_device *out) PAI_WUR;
const char *pai_device_name(pai_device d);
/* A program's --device and --precision values into *out, gpu_index = local_rank (the rank's
 * index on its node). Logs and returns PAI_ERR_USAGE on a bad value. */
int pai_backend_select(const char *device, const char *precision, int gpu_ok, int local_rank,
                       pai_backend *out) PAI_WUR;
/* Parses "fp32" or "bf16". */
int pai_precision_select(const char *name, pai_precision *out) PAI_WUR;
const char *pai_precision_name(pai_precision p);

/* Sets the CPU thread count (OpenMP and the BLAS); n <= 0 keeps the default. */
void pai_set_threads(int n);
int pai_get_threads(void);

/* One line describing the build: BLAS, CUDA toolkit, cuDNN, NCCL versions (where built). */
void pai_build_info(char *out, size_t out_len);

#endif
