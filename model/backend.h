/* backend.h - where the model runs. The choice is made once, here, from `--device`;
 * layers never test for it. The CUDA backend (issue "GPU backend") plugs in behind the same
 * pai_infer interface; until then `cuda` is refused with a clear message. */
#ifndef PAI_BACKEND_H
#define PAI_BACKEND_H

#include "model/pai.h"

typedef enum { PAI_DEVICE_CPU = 0, PAI_DEVICE_CUDA = 1 } pai_device;

/* Parses "cpu", "cuda" or "auto" and resolves "auto" to what this build and machine offer. */
int pai_device_select(const char *name, pai_device *out) PAI_WUR;
const char *pai_device_name(pai_device d);

/* Sets the CPU thread count (OpenMP and the BLAS); n <= 0 keeps the default. */
void pai_set_threads(int n);
int pai_get_threads(void);

/* Number of CUDA devices visible (0 without a GPU or without the CUDA build). */
int pai_cuda_device_count(void);
/* One line describing the build: BLAS, CUDA toolkit, cuDNN, NCCL versions (where built). */
void pai_build_info(char *out, size_t out_len);

#endif
